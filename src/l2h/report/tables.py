"""Result tables, built with pandas from the ``metrics.json`` records the evaluate stage writes.

``runs_frame`` holds one row per run (the CSV); ``summarize`` averages it over seeds (the Markdown, LaTeX
and HTML tables); ``compare`` puts the paper's numbers (``l2h/report/paper/*.csv``, see ``load_reference``)
and the difference beside ours. ``to_csv``, ``to_markdown``, ``to_latex`` and ``to_html`` write them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2h.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = ("method", "dataset", "backbone", "k", "seed", "aggregation", "strategy", "labels", "n_points")
#: The columns that identify one setting: the Markdown/LaTeX tables average the runs that share them.
GROUP_KEYS = ("method", "dataset", "backbone", "k", "aggregation", "strategy", "labels")
METRICS = ("nmi", "ari", "acc", "dp", "lp")
COARSE = ("coarse_nmi", "coarse_ari", "coarse_acc", "coarse_dp")
#: Beyond the paper, where a run has them: the median bootstrap support of the tree's merges, and the tree
#: against the dataset's class hierarchy (cophenetic correlation, normalised Robinson-Foulds distance).
ANALYSIS = ("support", "ref_cophenetic", "ref_rf")
#: Column titles of the metrics in the Markdown, LaTeX and HTML tables.
TITLES = {"support": "support", "ref_cophenetic": "ref. coph.", "ref_rf": "ref. RF"}
#: The reference tables' ``reference`` values, in column order; the first is the one Markdown and LaTeX show
#: in the main table (the others get a section of their own).
REFERENCES = {
    "paper": "the L2H paper (ICML 2025)",
    "published": "the baselines' own publications (TreeVAE, NeurIPS 2023)",
}
PAPER_DIR = Path(__file__).with_name("paper")
#: Hidden columns: the number of classes (and coarse classes) each row is scored on, for matching the paper.
_CLASSES, _COARSE = "_classes", "_coarse"
DASH = "–"


def _labels_used(labels: Mapping[str, Any]) -> str:
    text = f"{labels['classes']} classes"
    return text + (f"; coarse: {labels['coarse']}" if labels.get("coarse") else "")


def metric_columns(frame: "pd.DataFrame") -> list[str]:
    """The metric columns ``frame`` has, in table order."""
    return [m for m in (*METRICS, *COARSE, *ANALYSIS) if m in frame.columns]


def runs_frame(records: Sequence[Mapping[str, Any]]) -> "pd.DataFrame":
    """One row per evaluate record: the run columns, then the metrics (coarse ones when any run has them).

    Examples
    --------
    >>> rec = {"run": {"method": "L2H-kmeans", "dataset": "digits", "backbone": "pixels", "k": 10, "seed": 0,
    ...                "aggregation": "sum_all", "strategy": "lowest_score"}, "n_points": 540,
    ...        "labels": {"classes": 10, "coarse": None},
    ...        "metrics": {"nmi": 0.7, "ari": 0.6, "acc": 0.8, "dp": 0.6, "lp": 0.8}}
    >>> runs_frame([rec])[["method", "k", "nmi"]].to_dict("records")
    [{'method': 'L2H-kmeans', 'k': 10, 'nmi': 0.7}]
    """
    import pandas as pd

    with_coarse = any("coarse_nmi" in r["metrics"] for r in records)
    analysis = [m for m in ANALYSIS if any(m in r["metrics"] for r in records)]
    rows = []
    for rec in records:
        run = rec["run"]
        row = {
            "method": run["method"],
            "dataset": run["dataset"],
            "backbone": run["backbone"],
            "k": run["k"],
            "seed": run["seed"],
            "aggregation": run.get("aggregation") or "",
            "strategy": run.get("strategy") or "",
            "labels": _labels_used(rec["labels"]),
            "n_points": rec["n_points"],
        }
        row.update({m: rec["metrics"][m] for m in METRICS})
        if with_coarse:
            row.update({m: rec["metrics"].get(m) for m in COARSE})
        row.update({m: rec["metrics"].get(m) for m in analysis})
        row[_CLASSES], row[_COARSE] = rec["labels"]["classes"], rec["labels"].get("coarse")
        rows.append(row)
    columns = [*RUN_COLUMNS, *METRICS, *(COARSE if with_coarse else ()), *analysis, _CLASSES, _COARSE]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("k", "seed", "n_points", _CLASSES, _COARSE):
        frame[col] = frame[col].astype("Int64")
    for col in metric_columns(frame):
        frame[col] = frame[col].astype("float64")
    return frame


def summarize(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Average ``frame`` over seeds: one row per setting (:data:`GROUP_KEYS`, first-appearance order) with
    ``seeds`` (runs averaged), and per metric its mean, ``<metric>_std`` (ddof 1) and ``<metric>_n``.

    Examples
    --------
    >>> rec = lambda seed, v: {"run": {"method": "L2H-kmeans", "dataset": "d", "backbone": "b", "k": 10,
    ...     "seed": seed}, "n_points": 5, "labels": {"classes": 10}, "metrics": dict.fromkeys(METRICS, v)}
    >>> summarize(runs_frame([rec(0, 0.5), rec(1, 0.7)]))[["seeds", "nmi", "nmi_std"]].round(3).values.tolist()
    [[2, 0.6, 0.141]]
    """
    keys = [*GROUP_KEYS, _CLASSES, _COARSE]
    metrics = metric_columns(frame)
    groups = frame.groupby(keys, sort=False, dropna=False)
    out = groups.size().rename("seeds").to_frame()
    out = out.join(groups[metrics].mean())
    out = out.join(groups[metrics].std(ddof=1).add_suffix("_std"))
    out = out.join(groups[metrics].count().add_suffix("_n"))
    out = out.reset_index()
    columns = [*GROUP_KEYS, "seeds", *(c for m in metrics for c in (m, f"{m}_std", f"{m}_n")), _CLASSES, _COARSE]
    return out[columns].astype({"seeds": "Int64", _CLASSES: "Int64", _COARSE: "Int64"})


# ------------------------------------------------------------------------------------------- the paper's numbers
_REF_KEYS = ("dataset", "method", "k", "aggregation", "strategy", "labels", "classes")


def reference_names() -> list[str]:
    """The reference tables shipped with the package (``l2h/report/paper/<name>.csv``)."""
    return sorted(p.stem for p in PAPER_DIR.glob("*.csv"))


def load_reference(names: Sequence[str]) -> "pd.DataFrame":
    """The reported numbers of the reference tables ``names``, one row per value.

    Columns: dataset, method, k (the paper's K; empty = any), aggregation and strategy (empty for baselines),
    labels (``fine`` or ``coarse``) and classes (how many classes the row is scored on), metric, value,
    reference (a key of :data:`REFERENCES`), source (a tag of docs/paper.md §0) and note.

    Examples
    --------
    >>> ref = load_reference(["ablation_strategy"])
    >>> ref.loc[ref.metric == "dp", ["strategy", "value"]].to_dict("records")
    [{'strategy': 'all_pairs', 'value': 0.797}, {'strategy': 'lowest_score', 'value': 0.803}]
    """
    import pandas as pd

    known = reference_names()
    frames = []
    for name in names:
        if name not in known:
            raise InputError(f"experiment: paper table {name!r} does not exist; available: {', '.join(known)}")
        frames.append(
            pd.read_csv(
                PAPER_DIR / f"{name}.csv",
                dtype={"k": "Int64", "classes": "Int64"},
                keep_default_na=False,
                na_values={"k": [""], "value": [""]},
            )
        )
    if not frames:
        return pd.DataFrame(columns=[*_REF_KEYS, "metric", "value", "reference", "source", "note"])
    ref = pd.concat(frames, ignore_index=True)
    unknown = sorted(set(ref["reference"]) - set(REFERENCES))
    if unknown:
        raise InputError(f"{PAPER_DIR}: unknown reference {unknown}; use one of {sorted(REFERENCES)}")
    return ref


def _base_method(name: str) -> str:
    """``Agglomerative (ward)`` → ``Agglomerative``: the paper names methods without their variant."""
    return re.sub(r"\s*\(.*\)$", "", name)


def _labels_text(kind: str, classes: int) -> str:
    return f"coarse: {classes}" if kind == "coarse" else f"{classes} classes"


def compare(frame: "pd.DataFrame", reference: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` (from :func:`runs_frame` or :func:`summarize`) with the reference numbers beside ours.

    A reference row applies to our rows of its dataset and method (``Agglomerative`` covers every linkage),
    with its K, aggregation and strategy where it gives them, and scored on as many classes as it was: our
    fine labels, or else our coarse labels (then Δ uses the ``coarse_*`` metrics). Adds ``paper_labels`` and,
    per reference and metric it reports, ``<metric>_<reference>`` and ``<metric>_<reference>_delta`` (ours −
    theirs). Reference rows that apply to none of ours are appended, with our columns empty.

    Examples
    --------
    >>> rec = {"run": {"method": "L2H-TURTLE", "dataset": "cifar100", "backbone": "b", "k": 100, "seed": 0,
    ...                "aggregation": "sum_of_cluster_means", "strategy": "all_pairs"}, "n_points": 10000,
    ...        "labels": {"classes": 100, "coarse": 20},
    ...        "metrics": {"nmi": 0.9, "ari": 0.8, "acc": 0.9, "dp": 0.8, "lp": 0.9}}
    >>> out = compare(runs_frame([rec]), load_reference(["ablation_strategy"]))
    >>> out.loc[0, ["dp_paper", "dp_paper_delta"]].round(3).tolist(), len(out)  # + the lowest-score row
    ([0.797, 0.003], 2)
    """
    import numpy as np
    import pandas as pd

    metrics = [m for m in METRICS if m in set(reference["metric"])]
    if not metrics:
        return frame
    reported = reference[reference["metric"].isin(metrics)]
    pairs = [
        (r, m) for r in REFERENCES for m in metrics if ((reported["reference"] == r) & (reported["metric"] == m)).any()
    ]
    out = frame.copy()
    out["paper_labels"] = ""
    for r, m in pairs:
        out[f"{m}_{r}"] = np.nan
        out[f"{m}_{r}_delta"] = np.nan
    base = out["method"].map(_base_method)
    extra = []
    for key, group in reported.groupby(list(_REF_KEYS), sort=False, dropna=False):
        spec = dict(zip(_REF_KEYS, key))
        values = {(r, m): v for r, m, v in zip(group["reference"], group["metric"], group["value"])}
        hit = (out["dataset"] == spec["dataset"]) & ((out["method"] == spec["method"]) | (base == spec["method"]))
        if not pd.isna(spec["k"]):
            hit &= out["k"] == spec["k"]
        hit &= (out["aggregation"] == spec["aggregation"]) & (out["strategy"] == spec["strategy"])
        fine = hit & (out[_CLASSES] == spec["classes"]).fillna(False)
        coarse = hit & ~fine & (out[_COARSE] == spec["classes"]).fillna(False)
        text = _labels_text(spec["labels"], spec["classes"])
        if not (fine | coarse).any():
            row = {
                "method": spec["method"],
                "dataset": spec["dataset"],
                "backbone": "",
                "k": spec["k"],
                "aggregation": spec["aggregation"],
                "strategy": spec["strategy"],
                "labels": text,
                "paper_labels": text,
                "seeds": 0,
            }
            row.update({f"{m}_{r}": v for (r, m), v in values.items()})
            row.update({f"{m}_n": 0 for m in metric_columns(out)})
            extra.append(row)
            continue
        for rows, prefix in ((fine, ""), (coarse, "coarse_")):
            out.loc[rows, "paper_labels"] = text
            for (r, m), value in values.items():
                out.loc[rows, f"{m}_{r}"] = value
                if prefix + m in out.columns:
                    out.loc[rows, f"{m}_{r}_delta"] = out.loc[rows, prefix + m] - value
    if extra:
        added = pd.DataFrame(extra).reindex(columns=out.columns)
        out = pd.concat([out, added], ignore_index=True).astype(
            {c: t for c, t in out.dtypes.items() if str(t) in ("Int64", "int64", "object")}
        )
    return out


def reference_columns(frame: "pd.DataFrame", reference: str) -> list[str]:
    """The metrics that ``reference`` reports in ``frame`` (columns ``<metric>_<reference>``)."""
    return [m for m in METRICS if f"{m}_{reference}" in frame.columns]


def reference_rows(frame: "pd.DataFrame", reference: str) -> "pd.DataFrame":
    """The rows of ``frame`` for which ``reference`` reports a number."""
    metrics = reference_columns(frame, reference)
    if not metrics:
        return frame.iloc[:0]
    return frame[frame[[f"{m}_{reference}" for m in metrics]].notna().any(axis=1)]


# -------------------------------------------------------------------------------------------------- writers
def to_csv(frame: "pd.DataFrame") -> str:
    """The per-run table as CSV text: metrics with 6 decimals, empty cells where there is no value."""
    if frame.empty:
        return ""
    visible = [c for c in frame.columns if not c.startswith("_")]
    return frame[visible].to_csv(index=False, float_format="%.6f", lineterminator="\n")


def _mean_std(mean: float, std: float, n: int, *, pm: str = " ± ") -> str:
    if n == 0:
        return DASH
    if n == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f}{pm}{std:.3f}"


def _number(value: float, *, signed: bool = False) -> str:
    import pandas as pd

    if pd.isna(value):
        return DASH
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def display_frame(summary: "pd.DataFrame", reference: str | None = "paper") -> "pd.DataFrame":
    """``summary`` as the strings the Markdown, LaTeX and HTML tables show: per metric ``mean ± std`` over
    seeds, then (where ``reference`` reports it) its number and Δ; "–" where there is no value."""
    import pandas as pd

    metrics = [m for m in metric_columns(summary)]
    refs = reference_columns(summary, reference) if reference else []
    out = pd.DataFrame(index=summary.index)
    headers = {
        "method": "method",
        "dataset": "dataset",
        "backbone": "backbone",
        "k": "K",
        "aggregation": "aggregation",
        "strategy": "strategy",
        "labels": "labels",
    }
    for col, head in headers.items():
        out[head] = [DASH if (pd.isna(v) or v == "") else str(v) for v in summary[col]]
    if refs:
        out["paper labels"] = [v or DASH for v in summary["paper_labels"]]
    out["seeds"] = [str(v) for v in summary["seeds"]]
    for m in metrics:
        name = TITLES.get(m) or m.upper().replace("COARSE_", "coarse ")
        out[name] = [_mean_std(a, s, n) for a, s, n in zip(summary[m], summary[f"{m}_std"], summary[f"{m}_n"])]
        if m in refs:
            out[f"{name} {reference}"] = [_number(v) for v in summary[f"{m}_{reference}"]]
            out[f"Δ {name}"] = [_number(v, signed=True) for v in summary[f"{m}_{reference}_delta"]]
    return out


def to_markdown(summary: "pd.DataFrame", *, title: str = "", description: str = "") -> str:
    """A Markdown page: the table averaged over seeds (with the paper's numbers and Δ where it has them),
    then a section per further reference (e.g. the baselines' own publications)."""
    lines = [f"# {title}", ""]
    if summary.empty:
        return "\n".join(lines + ["No runs.", ""])
    if description:
        lines += [description.strip(), ""]
    lines += _markdown_rows(display_frame(summary, "paper"))
    for ref, text in list(REFERENCES.items())[1:]:
        rows = reference_rows(summary, ref)
        if rows.empty:
            continue
        metrics = reference_columns(summary, ref)
        table = display_frame(rows, ref)
        keep = ["method", "dataset", "backbone", "K", "labels", "paper labels", "seeds"]
        keep += [c for m in metrics for c in table.columns if m.upper() in c.split()]
        lines += ["", f"## Compared with {text}", ""] + _markdown_rows(table[keep])
    return "\n".join(lines) + "\n"


def _markdown_rows(table: "pd.DataFrame") -> list[str]:
    rows = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    rows += ["| " + " | ".join(cells) + " |" for cells in table.itertuples(index=False)]
    return rows


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    DASH: "--",
    "Δ": r"$\Delta$",
    "±": r"$\pm$",
    "†": r"$\dagger$",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and –, Δ, ±, † as LaTeX)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(summary: "pd.DataFrame", *, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table of ``summary`` (needs ``\\usepackage{booktabs}``): mean ± std over seeds, the
    paper's numbers and Δ where they exist, the best of each metric column in bold. Columns with one value
    in every row are named in the caption instead."""
    import pandas as pd

    if summary.empty:
        return f"% {latex_escape(caption)}: no runs\n"
    table = display_frame(summary, "paper")
    metrics = metric_columns(summary)
    refs = reference_columns(summary, "paper")
    best: dict[str, pd.Series] = {}
    for m in metrics:
        name = TITLES.get(m) or m.upper().replace("COARSE_", "coarse ")
        best[name] = summary[m] == summary[m].max()
        if m in refs:
            best[f"{name} paper"] = summary[f"{m}_paper"] == summary[f"{m}_paper"].max()
    keys = [
        c
        for c in ("method", "dataset", "backbone", "K", "aggregation", "strategy", "labels", "paper labels", "seeds")
        if c in table.columns
    ]
    constant = [c for c in keys if c != "method" and table[c].nunique() == 1 and len(table) > 1]
    cells = table.drop(columns=constant)
    body = pd.DataFrame(index=cells.index)
    for col in cells.columns:
        values = cells[col].map(latex_escape)
        if col in best:
            values = values.where(~best[col].fillna(False).to_numpy(), "\\textbf{" + values + "}")
        body[latex_escape(col)] = values
    fixed = "; ".join(f"{latex_escape(c)}: {latex_escape(table[c].iloc[0])}" for c in constant)
    text = latex_escape(caption) + (f" ({fixed})" if fixed else "")
    align = "".join("l" if c in keys else "r" for c in cells.columns)
    styler = body.style.hide(axis="index")
    return styler.to_latex(
        column_format=align,
        hrules=True,
        caption=text or None,
        label=label or None,
        position_float="centering",
        environment="table",
    )


def to_html(summary: "pd.DataFrame", reference: str = "paper") -> str:
    """The table of :func:`display_frame` as an HTML ``<table class="sortable">`` (the report page sorts it)."""
    return display_frame(summary, reference).to_html(index=False, border=0, classes="sortable", escape=True)


def runs_html(frame: "pd.DataFrame") -> str:
    """The per-run table (:func:`runs_frame`, possibly with :func:`compare`'s columns) as a sortable HTML table."""
    visible = [c for c in frame.columns if not c.startswith("_")]
    return frame[visible].to_html(
        index=False, border=0, classes="sortable", na_rep=DASH, float_format=lambda v: f"{v:.3f}"
    )
