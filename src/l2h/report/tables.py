"""Result tables: one row per run from the ``metrics.json`` records the evaluate stage writes.

``table_rows`` flattens records into rows; ``to_csv`` writes every row; ``markdown_table`` averages over
seeds (mean ± std when there are several) so that the Markdown table reads like the paper's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np

RUN_COLUMNS = ("method", "dataset", "backbone", "k", "seed", "aggregation", "strategy", "labels", "n_points")
METRICS = ("nmi", "ari", "acc", "dp", "lp")
COARSE = ("coarse_nmi", "coarse_ari", "coarse_acc", "coarse_dp")


def _labels_used(labels: Mapping[str, Any]) -> str:
    text = f"{labels['classes']} classes"
    return text + (f"; coarse: {labels['coarse']}" if labels.get("coarse") else "")


def table_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per evaluate record: run columns, then the metrics (coarse ones when any run has them)."""
    with_coarse = any("coarse_nmi" in r["metrics"] for r in records)
    rows = []
    for rec in records:
        run = rec["run"]
        row = {"method": run["method"], "dataset": run["dataset"], "backbone": run["backbone"], "k": run["k"],
               "seed": run["seed"], "aggregation": run.get("aggregation") or "", "strategy": run.get("strategy") or "",
               "labels": _labels_used(rec["labels"]), "n_points": rec["n_points"]}
        row.update({m: rec["metrics"][m] for m in METRICS})
        if with_coarse:
            row.update({m: rec["metrics"].get(m) for m in COARSE})
        rows.append(row)
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """All rows as CSV text (metrics with 6 decimals)."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{val:.6f}" if isinstance(val, float) else ("" if val is None else val))
                         for key, val in row.items()})
    return buf.getvalue()


def _summary(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], *, title: str = "", description: str = "") -> str:
    """A Markdown table with one line per method setting; metrics averaged over seeds."""
    if not rows:
        return f"# {title}\n\nNo runs.\n"
    metrics = [m for m in (*METRICS, *COARSE) if m in rows[0]]
    keys = ("method", "dataset", "backbone", "k", "aggregation", "strategy", "labels")
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    header = ["method", "dataset", "backbone", "K", "aggregation", "strategy", "labels", "seeds",
              *(m.upper().replace("COARSE_", "coarse ") for m in metrics)]
    lines = [f"# {title}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, members in groups.items():
        cells = [str(v) if v != "" else "–" for v in key] + [str(len(members))]
        cells += [_summary([m[metric] for m in members]) for metric in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
