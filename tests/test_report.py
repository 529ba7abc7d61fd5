"""The report: the paper's numbers (checked against the reference notes), the pandas tables (CSV, Markdown,
LaTeX; the demo's table unchanged), the sweep plots, the HTML pages and `l2h tree`'s tree.html. The browser
checks of the pages are in test_report_browser.py."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import linkage

from l2h.hierarchy import Hierarchy
from l2h.report import html, tables
from l2h.report.sweeps import sweep_kinds
from l2h.stages.plan import Plan
from l2h.stages.spec import stages

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
DATA = Path(__file__).resolve().parent / "data" / "report"
PAPER_NOTES = REPO.parent / "shared" / "reference" / "paper.md"
DATASETS = {"CIFAR-10": ("cifar10", 10), "CIFAR-100": ("cifar100", 100), "Food-101": ("food101", 101)}
DEMO_DESCRIPTION = (
    "Digits (sklearn, 540 test images, 10 classes): L2H on k-means (per space) and TURTLE (both "
    "spaces) logits versus Ward agglomerative clustering and DeepECT. Metrics on the test split."
)


# ------------------------------------------------------------------------------------ the paper's numbers
def _section(text: str, number: str) -> str:
    start = text.index(f"### {number} ")
    return text[start : text.index("\n### ", start + 1)]


def _cell_value(cell: str) -> float | None:
    """The value a table cell of the notes gives: its bold number where it names two, '–' for none."""
    bold = re.findall(r"\*\*(\d+\.\d+)\*\*", cell)
    numbers = re.findall(r"\d+\.\d+", cell)
    return float(bold[0]) if bold else (float(numbers[0]) if numbers else None)


def _table_rows(section: str) -> list[list[str]]:
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines() if line.startswith("|")
    ]
    return [r for r in rows[2:]]  # header and separator off


def notes_values() -> dict[tuple, float]:
    """{(file, dataset, method, aggregation, strategy, labels, classes, metric): value} parsed from the notes' §4."""
    text = PAPER_NOTES.read_text(encoding="utf-8")
    out: dict[tuple, float] = {}
    default = ("sum_of_cluster_means", "lowest_score")
    s41 = _section(text, "4.1")
    for dataset, method, *cells in _table_rows(s41):
        name, classes = DATASETS[dataset]
        l2h = method.startswith("L2H")
        # docs/paper.md §3.5: TreeVAE (and DeepECT) on CIFAR-100 are scored against the 20 superclasses
        labels, classes = ("coarse", 20) if name == "cifar100" and not l2h else ("fine", classes)
        agg, strategy = default if l2h else ("", "")
        for metric, cell in zip(("nmi", "ari", "acc", "dp", "lp", "lhd"), cells):
            if _cell_value(cell) is not None:
                out[("table1", name, method, agg, strategy, labels, classes, metric)] = _cell_value(cell)
    m = re.search(r"Agglomerative \(CLIP embeddings\) CIFAR-10 NMI (\d\.\d+)", s41)
    out[("table1", "cifar10", "Agglomerative", "", "", "fine", 10, "nmi")] = float(m.group(1))
    own = s41[s41.index("TreeVAE's own paper numbers") : s41.index("[DTN SEEN]")]
    for segment in own.split(":", 1)[1].split(";"):
        method = "DeepECT" if "DeepECT" in segment else "TreeVAE"
        name, labels, classes = ("cifar100", "coarse", 20) if "CIFAR-20" in segment else ("cifar10", "fine", 10)
        for metric, value in re.findall(r"\b(DP|LP|ACC|NMI) (\d+\.\d+)", segment):
            out[("published_baselines", name, method, "", "", labels, classes, metric.lower())] = round(
                float(value) / 100, 6
            )
    aggregation = {'"Σ_c Σ_x"': "sum_all", '"Σ_c mean_x"': "mean_all", "default": "sum_of_cluster_means"}
    for label, *cells in _table_rows(_section(text, "4.2")):
        agg = next(a for key, a in aggregation.items() if label.startswith(key))
        for (name, classes), metric, cell in zip(
            [("cifar10", 10)] * 2 + [("cifar100", 100)] * 2, ("dp", "lhd") * 2, cells
        ):
            out[("ablation_aggregation", name, "L2H-TURTLE", agg, "lowest_score", "fine", classes, metric)] = (
                _cell_value(cell)
            )
    m = re.search(
        r'CIFAR-100: DP (\d\.\d+), "LHD" (\d\.\d+) \(vs default (\d\.\d+) / (\d\.\d+)\)', _section(text, "4.3")
    )
    for strategy, dp, lhd in (("all_pairs", m.group(1), m.group(2)), ("lowest_score", m.group(3), m.group(4))):
        for metric, value in (("dp", dp), ("lhd", lhd)):
            out[
                ("ablation_strategy", "cifar100", "L2H-TURTLE", "sum_of_cluster_means", strategy, "fine", 100, metric)
            ] = float(value)
    for dataset, dp, lhd in re.findall(r'(CIFAR-10+): DP (\d\.\d+), "LHD" (\d\.\d+)', _section(text, "4.4")):
        name, classes = DATASETS[dataset]
        for metric, value in (("dp", dp), ("lhd", lhd)):
            out[("weak_backbone", name, "L2H-TCL", *default, "fine", classes, metric)] = float(value)
    return out


def test_paper_numbers_match_the_reference_notes():
    """Every value of the notes' result tables is in the package data, on its row, labels and metric, and
    nothing else is."""
    assert PAPER_NOTES.is_file(), f"reference notes not found at {PAPER_NOTES}"
    expected = notes_values()
    assert len(expected) == 64 + 1 + 12 + 12 + 4 + 4  # Table 1 (12 rows, LP on 4), Agglomerative, ...
    names = tables.reference_names()
    assert names == sorted(
        ["table1", "ablation_aggregation", "ablation_strategy", "weak_backbone", "published_baselines"]
    )
    stored = {}
    for name in names:
        ref = tables.load_reference([name])
        for row in ref.itertuples():
            key = (
                name,
                row.dataset,
                row.method,
                row.aggregation,
                row.strategy,
                row.labels,
                int(row.classes),
                row.metric,
            )
            assert key not in stored, key
            stored[key] = row.value
            assert row.source in ("PN", "DTN") or row.source.startswith("TreeVAE paper"), row
            assert row.reference == ("published" if name == "published_baselines" else "paper")
    assert stored == pytest.approx(expected, abs=1e-9)
    # the L2H rows are scored on the fine classes, with their K
    t1 = tables.load_reference(["table1"])
    l2h = t1[t1.method.str.startswith("L2H")]
    assert (l2h.labels == "fine").all() and (l2h.k == l2h.classes).all()
    assert set(t1[(t1.dataset == "cifar100") & (t1.labels == "coarse")].method) == {"DeepECT", "TreeVAE"}


def test_unknown_paper_table_is_refused():
    with pytest.raises(Exception, match="paper table 'table9' does not exist"):
        tables.load_reference(["table9"])


# -------------------------------------------------------------------------------------------- the tables
def record(
    dataset,
    method,
    k,
    classes,
    coarse=None,
    *,
    seed=0,
    value=0.5,
    aggregation="sum_of_cluster_means",
    strategy="lowest_score",
    backbone="b",
):
    l2h = method.startswith("L2H")
    metrics = {m: value for m in tables.METRICS}
    if coarse:
        metrics.update({m: value / 2 for m in tables.COARSE})
    return {
        "run": {
            "method": method,
            "dataset": dataset,
            "backbone": backbone,
            "k": k,
            "seed": seed,
            "aggregation": aggregation if l2h else None,
            "strategy": strategy if l2h else None,
        },
        "labels": {"classes": classes, "coarse": coarse},
        "n_points": 100,
        "metrics": metrics,
    }


@pytest.fixture(scope="module")
def table1():
    """Synthetic table1 runs: (per-run frame, summary), both with the paper's numbers."""
    records = [
        record("cifar10", "L2H-TURTLE", 10, 10, 2, value=0.9),
        record("cifar100", "L2H-TURTLE", 100, 100, 20, value=0.8),
        record("cifar100", "L2H-TURTLE", 100, 100, 20, value=0.7, seed=1),
        record("cifar100", "TreeVAE", 20, 100, 20, value=0.3),
        record("cifar10", "TreeVAE", 10, 10, 2, value=0.4),
        record("cifar10", "Agglomerative (ward)", 10, 10, 2, value=0.6),
        record("food101", "L2H-TURTLE", 101, 101, value=0.85),
    ]
    reference = tables.load_reference(["table1", "published_baselines"])
    frame = tables.runs_frame(records)
    return tables.compare(frame, reference), tables.compare(tables.summarize(frame), reference)


def _row(frame, **where):
    mask = np.ones(len(frame), dtype=bool)
    for key, value in where.items():
        mask &= (frame[key] == value).to_numpy()
    assert mask.sum() >= 1, where
    return frame[mask]


def test_table1_puts_each_paper_number_on_its_row_and_metric(table1):
    frame, summary = table1
    turtle100 = _row(summary, method="L2H-TURTLE", dataset="cifar100").iloc[0]
    assert turtle100["paper_labels"] == "100 classes"
    assert turtle100["nmi_paper"] == 0.917 and turtle100["dp_paper"] == 0.803 and turtle100["lp_paper"] == 0.896
    assert turtle100["dp_paper_delta"] == pytest.approx(0.75 - 0.803)  # mean of the two seeds - paper
    # TreeVAE on CIFAR-100: the paper scored it on the 20 superclasses -> compared with our coarse_* metrics
    treevae100 = _row(summary, method="TreeVAE", dataset="cifar100").iloc[0]
    assert treevae100["paper_labels"] == "coarse: 20"
    assert treevae100["acc_paper"] == 0.228 and treevae100["acc_paper_delta"] == pytest.approx(0.15 - 0.228)
    assert treevae100["acc_published"] == pytest.approx(0.2182)
    assert np.isnan(treevae100["lp_paper"]) and np.isnan(treevae100["lp_published_delta"])  # no coarse LP
    treevae10 = _row(summary, method="TreeVAE", dataset="cifar10").iloc[0]
    assert treevae10["nmi_paper"] == 0.414 and treevae10["nmi_published"] == pytest.approx(0.4144)
    assert treevae10["nmi_paper_delta"] == pytest.approx(0.4 - 0.414)
    agg = _row(summary, method="Agglomerative (ward)").iloc[0]  # "Agglomerative" in the paper
    assert agg["nmi_paper"] == 0.799 and np.isnan(agg["ari_paper"])
    # paper rows with no run of ours are listed with our columns empty
    temi = _row(summary, method="L2H-TEMI", dataset="food101").iloc[0]
    assert temi["seeds"] == 0 and np.isnan(temi["nmi"]) and temi["nmi_paper"] == 0.917
    deepect100 = _row(summary, method="DeepECT", dataset="cifar100").iloc[0]
    assert deepect100["labels"] == "coarse: 20" and deepect100["dp_paper"] == 0.052
    # the per-run CSV: one row per run (the two CIFAR-100 seeds apart), then the paper-only rows
    assert list(_row(frame, method="L2H-TURTLE", dataset="cifar100")["dp_paper_delta"]) == pytest.approx(
        [0.8 - 0.803, 0.7 - 0.803]
    )
    csv = tables.to_csv(frame)
    header = csv.splitlines()[0].split(",")
    assert header[:14] == [*tables.RUN_COLUMNS, *tables.METRICS]
    assert {"nmi_paper", "nmi_paper_delta", "lp_published", "paper_labels"} <= set(header)
    assert not any(c.startswith("_") for c in header)
    assert len(csv.splitlines()) == 1 + 7 + 7  # header, runs, the paper's rows without a run (DeepECT x3, ...)


def test_table1_markdown_shows_ours_paper_and_delta(table1):
    _, summary = table1
    md = tables.to_markdown(summary, title="table1")
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("NMI") : cells.index("NMI") + 3] == ["NMI", "NMI paper", "Δ NMI"]
    food = next(line for line in md.splitlines() if line.startswith("| L2H-TURTLE | food101"))
    # ours, paper and delta for NMI (0.85 vs 0.894); no LP in the paper for Food-101
    assert "| 0.850 | 0.894 | -0.044 |" in food and food.count("| – | – |") >= 1
    treevae = next(line for line in md.splitlines() if line.startswith("| TreeVAE | cifar100"))
    assert "| coarse: 20 |" in treevae and "| 0.228 | -0.078 |" in treevae
    assert "## Compared with the baselines' own publications" in md
    own = md.split("## Compared with")[1]
    assert "| 0.414 | -0.014 |" in own  # TreeVAE's own CIFAR-10 NMI 0.4144 against ours 0.4


def test_demo_table_is_unchanged():
    """The pandas tables reproduce the demo's CSV and Markdown byte for byte (records of a demo run)."""
    records = json.loads((DATA / "demo_metrics.json").read_text())
    frame = tables.runs_frame(records)
    assert tables.to_csv(frame) == (DATA / "demo.csv").read_text()
    md = tables.to_markdown(tables.summarize(frame), title="demo", description=DEMO_DESCRIPTION)
    assert md == (DATA / "demo.md").read_text()


def test_seeds_are_averaged():
    frame = tables.runs_frame([record("d", "L2H-kmeans", 10, 10, 2, seed=s, value=v) for s, v in ((0, 0.5), (1, 0.7))])
    summary = tables.summarize(frame)
    assert len(summary) == 1 and summary["seeds"].iloc[0] == 2
    line = next(row for row in tables.to_markdown(summary, title="t").splitlines() if row.startswith("| L2H-kmeans"))
    assert "| 2 | 0.600 ± 0.141 |" in line and "10 classes; coarse: 2" in line
    assert "coarse NMI" in tables.to_markdown(summary)


def check_latex(tex: str) -> list[list[str]]:
    """A LaTeX-free check of a booktabs table: environments, rules, balanced braces, escaped specials and
    one cell per column on every row. Returns the rows' cells (header first)."""
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    body = tex[tex.index(r"\toprule") : tex.index(r"\bottomrule")]
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule") < tex.index(r"\end{tabular}")
    stripped = re.sub(r"\\[{}]", "", tex)
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    text = re.sub(r"\\(textbf|Delta|pm|_|&|%|#|\$|toprule|midrule|bottomrule)", "", body)
    assert not re.search(r"[_%#^~]", text), "unescaped special character"
    assert text.count("$") % 2 == 0
    rows = []
    for line in body.splitlines():
        if line.strip() in (r"\toprule", r"\midrule", ""):
            continue
        assert line.rstrip().endswith(r"\\"), line
        cells = [c.strip() for c in re.split(r"(?<!\\)&", line.rstrip()[:-2])]
        assert len(cells) == len(spec), (len(cells), spec, line)
        rows.append(cells)
    return rows


def test_demo_latex_table():
    records = json.loads((DATA / "demo_metrics.json").read_text())
    tex = tables.to_latex(tables.summarize(tables.runs_frame(records)), caption="demo: digits", label="tab:demo")
    rows = check_latex(tex)
    header, body = rows[0], rows[1:]
    assert len(body) == 6 and header[0] == "method"
    assert r"\caption{demo: digits (dataset: digits; K: 10; labels: 10 classes; seeds: 1)}" in tex  # constants
    assert "K" not in header and "dataset" not in header
    col = {name: i for i, name in enumerate(header)}
    bold = [r[col["NMI"]] for r in body if r[col["NMI"]].startswith(r"\textbf")]
    assert bold == [r"\textbf{0.762}"]  # Ward on pixels has the best NMI of the demo
    assert sum(r[col["LP"]] == r"\textbf{1.000}" for r in body) == 2
    assert r"sum\_of\_cluster\_means" in tex and "--" in tex


def test_table1_latex_has_paper_and_delta_columns(table1):
    _, summary = table1
    rows = check_latex(tables.to_latex(summary, caption="table1", label="tab:table1"))
    header = rows[0]
    assert header[header.index("NMI") : header.index("NMI") + 3] == ["NMI", "NMI paper", r"$\Delta$ NMI"]
    col = header.index("NMI paper")
    assert [r[col] for r in rows[1:] if r[col].startswith(r"\textbf")] == [r"\textbf{0.985}"]  # best of column


# --------------------------------------------------------------------------------------- plots and plans
def test_sweep_kinds_follow_the_grid():
    base = {
        "kind": "l2h",
        "dataset": "d",
        "backbone": "b",
        "method": "kmeans",
        "k": 10,
        "seed": 0,
        "aggregation": "sum_all",
        "strategy": "lowest_score",
    }
    assert sweep_kinds([base, {**base, "seed": 1}]) == []
    assert sweep_kinds([base, {**base, "k": 20}]) == ["k"]
    assert sweep_kinds([base, {**base, "aggregation": "mean_all"}], levels=True) == ["aggregation", "levels"]
    assert sweep_kinds([base, {**base, "strategy": "all_pairs"}]) == ["strategy"]
    baseline = {**base, "kind": "baseline", "method": "agglomerative", "aggregation": None, "strategy": None}
    assert sweep_kinds([base, baseline]) == []


def test_plan_declares_the_report_outputs():
    demo = Plan(CONF)
    outputs = demo.report_outputs()
    assert {"results/tables/demo.tex", "results/reports/demo.html"} <= set(outputs)
    assert demo.plots() == ["results/figures/demo/levels.png", "results/figures/demo/levels.svg"]  # even/odd
    ksweep = Plan(CONF, overrides="clusterer.k=5,10,20", tag="ksweep")
    assert ksweep.plots() == [
        f"results/figures/demo+ksweep/{stem}.{ext}" for stem in ("sweep_k", "levels") for ext in ("png", "svg")
    ]
    assert "results/reports/demo+ksweep.html" in ksweep.report_outputs()
    report = ksweep.descriptor("report", {"experiment": "demo+ksweep"})
    assert report["plots"] == {
        "k": "results/figures/demo+ksweep/sweep_k",
        "levels": "results/figures/demo+ksweep/levels",
    }
    assert report["paper"] == []
    # the stage names its records after the tagged table, as the rule expects them
    stem = stages()["report"].record_stem.format(**report)
    assert f"results/tables/{stem}.config.yaml" in ksweep.report_outputs() and stem == "demo+ksweep"
    ablation = Plan(CONF, "ablation_aggregation")
    assert set(ablation.plot_stems()) == {"aggregation", "levels"}  # CIFAR has coarse labels
    assert ablation.descriptor("report", {"experiment": "ablation_aggregation"})["paper"] == ["ablation_aggregation"]
    assert set(Plan(CONF, "robustness_k").plot_stems()) == {"k", "levels"}
    inputs = demo.inputs("report", {"experiment": "demo"})["runs"]
    assert "results/data/digits/labels.npz" in inputs
    assert "results/digits/pixels/baseline_agglomerative_k10_s0/indices.npy" in inputs


def test_sweep_plots_are_written_and_reproducible(tmp_path):
    from l2h.report import figures

    records = [
        record("digits", "L2H-kmeans", k, 10, 2, seed=s, value=0.5 + 0.01 * k + 0.02 * s, aggregation=a)
        for k in (5, 10, 20)
        for s in (0, 1)
        for a in ("sum_all", "mean_all")
    ]
    frame = tables.runs_frame(records)
    for name, draw in (
        ("k", lambda stem: figures.plot_k_sweep(frame[list(frame.columns[:14])], stem)),
        ("agg", lambda stem: figures.plot_ablation(frame, "aggregation", stem)),
        ("levels", lambda stem: figures.plot_levels(frame, stem)),
    ):
        png, svg = draw(tmp_path / name)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        ET.fromstring(svg.read_bytes())  # well-formed SVG
    again = figures.plot_k_sweep(frame[list(frame.columns[:14])], tmp_path / "k2")
    assert [p.read_bytes() for p in again] == [(tmp_path / f"k.{ext}").read_bytes() for ext in ("png", "svg")]
    svg = (tmp_path / "k.svg").read_text(encoding="utf-8")
    assert "K (number of clusters)" in svg and "NMI (score, 0–1)" in svg  # axis labels (as SVG comments)
    assert "L2H-kmeans · mean_all" in svg


# ------------------------------------------------------------------------------------------------- HTML
def test_node_stats_match_a_direct_count():
    rng = np.random.default_rng(3)
    k, n = 40, 2000
    tree = Hierarchy.from_linkage(linkage(rng.normal(size=(k, 3)), "average"))
    leaves, labels = rng.integers(0, k - 5, n), rng.integers(0, 7, n)  # five leaves without points
    stats = html.node_stats(tree.children, leaves, labels)
    for node in range(2 * k - 1):
        members = np.isin(leaves, tree.members(node))
        assert stats["points"][node] == members.sum()
        if members.any():
            counts = np.bincount(labels[members], minlength=7)
            assert stats["majority"][node] == counts.argmax()  # smallest class on ties
            assert stats["purity"][node] == pytest.approx(counts.max() / members.sum())
        else:
            assert stats["majority"][node] == -1 and stats["purity"][node] == 0


def _payload(k: int = 12, seed: int = 0, support: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    tree = Hierarchy.from_linkage(linkage(rng.normal(size=(k, 2)), "ward"))
    tree.scores = rng.random((k - 1, 2))
    labels = rng.integers(0, 4, 50 * k)
    leaves = np.where(rng.random(50 * k) < 0.8, labels % k, rng.integers(0, k, 50 * k))
    return html.tree_payload(
        tree,
        leaves=leaves,
        labels=labels,
        class_names=["cat", "dog", "ship", "truck"],
        support=list(np.round(rng.random(k - 1), 2)) if support else None,
    )


def test_tree_payload():
    data = _payload()
    assert data["k"] == 12 and len(data["names"]) == 12 and len(data["points"]) == 23
    assert data["points"][-1] == 600 and data["score_names"] == list(html.L2H_SCORES)
    assert re.fullmatch(r"(cat|dog|ship|truck) \(\d+%\)", data["names"][0])
    assert len(data["support"]) == 11 and len(data["heights"]) == 11  # from_linkage keeps the heights
    json.dumps(data, allow_nan=False)


def assert_self_contained(page: str) -> None:
    """No URL at all (so nothing can be loaded from the network), scripts and styles inline, images inline."""
    assert not re.search(r"https?://", page)
    assert not re.search(r"<script[^>]*(?<![\w-])src=", page) and not re.search(r"<link[^>]*stylesheet", page)
    assert all(src.startswith("data:") for src in re.findall(r'(?<![\w-])src="([^"]*)"', page))
    assert "<style>" in page and "TreeView" in page


def test_report_page_is_self_contained(tmp_path):
    from l2h.report import figures

    frame = tables.runs_frame([record("digits", "L2H-kmeans", k, 10) for k in (5, 10)])
    _, svg = figures.plot_k_sweep(frame, tmp_path / "k")
    page = html.report_page(
        title="demo",
        description="d <b>",
        tables=[("all", tables.to_html(tables.summarize(frame)))],
        plots=[("K", svg.read_bytes())],
        trees=[("a tree", _payload())],
    )
    assert_self_contained(page)
    assert "d &lt;b&gt;" in page and 'class="dataframe sortable"' in page
    assert page.count('<div class="tree-view"') == 1 and "data:image/svg+xml;base64," in page
    assert page == html.report_page(
        title="demo",
        description="d <b>",
        tables=[("all", tables.to_html(tables.summarize(frame)))],
        plots=[("K", svg.read_bytes())],
        trees=[("a tree", _payload())],
    )


def test_l2h_tree_writes_the_interactive_view(tmp_path):
    from l2h.cli import main

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 600)
    logits = rng.normal(size=(600, 8)) + 3 * np.eye(8)[labels]
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    assert (
        main(
            [
                "tree",
                str(tmp_path / "logits.npy"),
                "--labels",
                str(tmp_path / "labels.npy"),
                "--quiet",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    page = (tmp_path / "out" / "tree.html").read_text()
    assert_self_contained(page)
    data = json.loads(re.search(r'<script type="application/json" id="tree-0">(.*?)</script>', page, re.S).group(1))
    tree = Hierarchy.load(tmp_path / "out" / "tree.json")
    assert data["children"] == tree.children.tolist() and data["points"][-1] == 600
    assert all(re.fullmatch(r"\d \(\d+%\)", name) for name in data["names"])  # majority class and share
    assert main(["tree", str(tmp_path / "logits.npy"), "--quiet", "--no-plot", "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "tree.html").exists()


def test_report_stage_with_paper_numbers_and_sweep_plots(tmp_path):
    """The report stage on stored runs of an aggregation ablation on CIFAR-100 (two aggregations, with coarse
    labels): tables with the paper's numbers, the ablation and level plots, and the page."""
    from l2h.io import write_json
    from l2h.stages.app import Job
    from l2h.stages.report import run

    rng = np.random.default_rng(0)
    data = tmp_path / "data" / "cifar100"
    data.mkdir(parents=True)
    labels = rng.integers(0, 100, 2000)
    np.savez(data / "labels.npz", test=labels)
    write_json(data / "classes.json", {"class_names": [f"class{i}" for i in range(100)], "num_classes": 100})
    metrics, leaves_files, label_files = [], [], []
    for i, aggregation in enumerate(("sum_all", "sum_of_cluster_means")):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        tree = Hierarchy.from_linkage(linkage(rng.normal(size=(100, 3)), "average"))
        tree.save(folder / "tree.json")
        leaves = np.where(rng.random(2000) < 0.9, labels, rng.integers(0, 100, 2000))
        np.save(folder / "leaves.npy", leaves)
        write_json(folder / "leaf_names.json", [f"class{i} (90%)" for i in range(100)])
        rec = record("cifar100", "L2H-TURTLE", 100, 100, 20, value=0.8 + 0.01 * i, aggregation=aggregation)
        write_json(folder / "metrics.json", rec)
        metrics.append(str(folder / "metrics.json"))
        leaves_files.append(str(folder / "leaves.npy"))
        label_files.append(str(data / "labels.npz"))
    out = tmp_path / "tables"
    out.mkdir()
    (tmp_path / "figures").mkdir()
    plots = {kind: str(tmp_path / "figures" / kind) for kind in ("aggregation", "levels")}
    job = Job(
        stage="report",
        inputs={"metrics": metrics, "leaves": leaves_files, "labels": label_files},
        output=out,
        folder=out,
        run={
            "experiment": "ablation_aggregation",
            "table": "ablation_aggregation",
            "description": "d",
            "figures": [None, None],
            "plots": plots,
            "report": str(tmp_path / "report.html"),
            "paper": ["ablation_aggregation"],
        },
    )
    assert run(None, job) == {"runs": 2}
    frame = pd.read_csv(out / "ablation_aggregation.csv")
    ours = frame[frame["seed"].notna()]
    assert list(ours["dp_paper"]) == [0.801, 0.803] and list(ours["dp_paper_delta"].round(3)) == [-0.001, 0.007]
    assert len(frame) == 2 + 4  # + the paper's CIFAR-10 rows and its CIFAR-100 mean_all row, not run here
    for stem in plots.values():
        assert Path(f"{stem}.png").is_file() and Path(f"{stem}.svg").is_file()
    page = (tmp_path / "report.html").read_text()
    assert_self_contained(page)
    assert page.count("data:image/svg+xml;base64,") == 2 and page.count('<div class="tree-view"') == 2
    assert "DP paper" in page and "Δ DP" in page
    rows = check_latex((out / "ablation_aggregation.tex").read_text())
    assert "DP paper" in rows[0]
