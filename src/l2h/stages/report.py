"""Stage: the experiment's table (``tables/<experiment>.csv`` and ``.md``) from every run's ``metrics.json``,
and a dendrogram of every L2H tree with its leaves named by their majority class (``figures/<experiment>/``)."""

from __future__ import annotations

import json
from pathlib import Path

from l2h.io import write_text
from l2h.stages.app import stage_main
from l2h.stages.layout import TABLES
from l2h.stages.spec import StageSpec, once


def inputs(plan, fields):
    return {"runs": [plan.path(run.folder, name) for run in plan.runs
                     for name in ("metrics.json", "leaf_names.json", "tree.json")]}


SPEC = StageSpec("report", groups=("experiment",), folder=TABLES, outputs=("{experiment}.csv", "{experiment}.md"),
                 jobs=once, inputs=inputs, record="{experiment}", local=True)


def run(cfg, job):
    from l2h.hierarchy import Hierarchy
    from l2h.report.figures import plot_dendrogram
    from l2h.report.tables import markdown_table, table_rows, to_csv

    paths = [Path(p) for p in job.input("metrics")]
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    rows = table_rows(records)
    name = job.run["table"]
    write_text(job.output / f"{name}.csv", to_csv(rows))
    write_text(job.output / f"{name}.md", markdown_table(rows, title=f"{job.run['experiment']}",
                                                         description=job.run.get("description", "")))
    for path, record, figure in zip(paths, records, job.run["figures"]):
        if figure is None:
            continue
        names = json.loads((path.parent / "leaf_names.json").read_text(encoding="utf-8"))
        r = record["run"]
        title = (f"{r['method']} on {r['dataset']} / {r['backbone']} (K={r['k']}, seed {r['seed']}, "
                 f"{r['aggregation']}, {r['strategy']})")
        plot_dendrogram(Hierarchy.load(path.parent / "tree.json"), figure, names=names, title=title)
    return {"runs": len(records)}


if __name__ == "__main__":
    stage_main("report", run)
