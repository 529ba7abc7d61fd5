"""Stage: an experiment's report from every run's ``metrics.json`` and tree.

Writes ``tables/<experiment>.csv`` (one row per run), ``.md`` and ``.tex`` (averaged over seeds; the paper's
numbers and Δ beside ours for the paper tables the experiment names in ``paper``), the sweep plots the runs
call for and a dendrogram PNG of every L2H tree (``figures/<experiment>/``), and ``reports/<experiment>.html``:
the tables, plots and an interactive dendrogram of every tree in one self-contained page.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from l2h.io import write_text
from l2h.stages.app import stage_main
from l2h.stages.layout import DATA, EVAL_SPLIT, TABLES
from l2h.stages.spec import StageSpec, once


def inputs(plan, fields):
    files = []
    for run in plan.runs:
        names = ("metrics.json", "leaf_names.json", "tree.json", "leaves.npy")
        names += ("indices.npy",) if run.kind == "baseline" else ()
        data = plan.path(DATA.format(dataset=run.dataset))
        files += [plan.path(run.folder, name) for name in names]
        files += [f"{data}/labels.npz", f"{data}/classes.json"]
    return {"runs": list(dict.fromkeys(files))}


# The tables are the stage's folder; its figures, sweep plots and HTML page (other folders) are written in
# place, each file atomically (Plan.report_outputs lists them all).
SPEC = StageSpec(
    "report",
    groups=("experiment",),
    folder=TABLES,
    outputs=("{table}.csv", "{table}.md", "{table}.tex"),
    jobs=once,
    inputs=inputs,
    record="{table}",
    local=True,
)

PLOT_CAPTIONS = {
    "k": "Every metric against the number of clusters K (mean ± std over seeds; dots: single seeds).",
    "aggregation": "L2H with each aggregation function (mean ± std over seeds).",
    "strategy": "L2H with each merging strategy (mean ± std over seeds).",
    "levels": "Agreement with the classes and with the coarse labels (the tree cut at their number).",
}


def _run_title(record: dict) -> str:
    r = record["run"]
    extra = f", {r['aggregation']}, {r['strategy']}" if r.get("aggregation") else ""
    return f"{r['method']} on {r['dataset']} / {r['backbone']} (K={r['k']}, seed {r['seed']}{extra})"


def tree_view(folder: Path, labels_path: Path) -> dict:
    """The dendrogram data of the run in ``folder`` (its tree, leaf names and per-node class statistics)."""
    from l2h.hierarchy import Hierarchy
    from l2h.report.html import merge_support, tree_payload

    raw = json.loads((folder / "tree.json").read_text(encoding="utf-8"))
    tree = Hierarchy.from_dict(raw, source=str(folder / "tree.json"))
    with np.load(labels_path) as data:
        labels = data[EVAL_SPLIT]
    if (folder / "indices.npy").is_file():
        labels = labels[np.load(folder / "indices.npy")]
    classes = json.loads((labels_path.parent / "classes.json").read_text(encoding="utf-8"))["class_names"]
    names = json.loads((folder / "leaf_names.json").read_text(encoding="utf-8"))
    return tree_payload(
        tree,
        names=names,
        leaves=np.load(folder / "leaves.npy"),
        labels=labels,
        class_names=classes,
        support=merge_support(tree, raw),
    )


def run(cfg, job):
    from l2h.hierarchy import Hierarchy
    from l2h.report import figures, html, tables

    paths = [Path(p) for p in job.input("metrics")]
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    name = job.run["table"]  # the experiment's name, with its tag (demo+ksweep)
    description = job.run.get("description", "")
    runs = tables.runs_frame(records)
    frame, summary = runs, tables.summarize(runs)
    paper = list(job.run.get("paper") or [])
    if paper:  # the paper's numbers beside ours, and its rows that we have not run
        reference = tables.load_reference(paper)
        frame, summary = tables.compare(runs, reference), tables.compare(summary, reference)
    write_text(job.output / f"{name}.csv", tables.to_csv(frame))
    write_text(job.output / f"{name}.md", tables.to_markdown(summary, title=name, description=description))
    write_text(
        job.output / f"{name}.tex",
        tables.to_latex(summary, caption=f"{name}: {description}".strip(), label=f"tab:{name}"),
    )
    for path, record, figure in zip(paths, records, job.run["figures"]):
        if figure is not None:
            names = json.loads((path.parent / "leaf_names.json").read_text(encoding="utf-8"))
            figures.plot_dendrogram(
                Hierarchy.load(path.parent / "tree.json"), figure, names=names, title=_run_title(record)
            )
    plots = []
    for kind, stem in job.run["plots"].items():
        if kind in ("aggregation", "strategy"):
            written = figures.plot_ablation(runs, kind, stem)
        else:
            written = {"k": figures.plot_k_sweep, "levels": figures.plot_levels}[kind](runs, stem)
        plots.append((PLOT_CAPTIONS[kind], written[-1].read_bytes()))
    trees = [
        (_run_title(record), tree_view(path.parent, Path(labels)))
        for path, record, labels in zip(paths, records, job.input("labels"))
    ]
    page_tables = [
        (
            "Averaged over seeds" + (" (the paper's numbers and Δ = ours − paper)" if paper else ""),
            tables.to_html(summary),
        )
    ]
    for ref, text in list(tables.REFERENCES.items())[1:]:
        rows = tables.reference_rows(summary, ref)
        if not rows.empty:
            page_tables.append((f"Compared with {text}", tables.to_html(rows, ref)))
    page_tables.append(("One row per run", tables.runs_html(frame)))
    notes = (
        [
            f"Paper numbers: l2h/report/paper/{{{','.join(paper)}}}.csv (sources tagged there); each is compared on "
            'the labels the paper scored that row on ("paper labels").'
        ]
        if paper
        else []
    )
    write_text(
        job.run["report"],
        html.report_page(
            title=name, description=description, tables=page_tables, plots=plots, trees=trees, notes=notes
        ),
    )
    return {"runs": len(records)}


if __name__ == "__main__":
    stage_main("report", run)
