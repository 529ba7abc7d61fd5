"""Stage: score a run's tree against the test labels → ``metrics.json`` (nmi, ari, acc, dp, lp and, when the
dataset has coarse labels, coarse_*) and ``leaf_names.json`` (each leaf's majority class and its share)."""

from __future__ import annotations

import json

import numpy as np

from l2h.io import write_json
from l2h.stages.app import stage_main
from l2h.stages.layout import DATA, EVAL_SPLIT
from l2h.stages.spec import StageSpec, per_run


def inputs(plan, fields):
    run = plan.run_of(fields["run"])
    folder = plan.path(run.folder)
    data = plan.path(DATA.format(dataset=run.dataset))
    out = {name.split(".")[0]: f"{folder}/{name}" for name in ("tree.json", "leaves.npy", "clusters.npy")}
    if run.kind == "baseline":
        out["indices"] = f"{folder}/indices.npy"
    out.update(labels=f"{data}/labels.npz", classes=f"{data}/classes.json")
    return out


SPEC = StageSpec("evaluate", groups=(), folder="{run}", outputs=("metrics.json", "leaf_names.json"),
                 jobs=per_run(None), inputs=inputs, mem_mb=8000, runtime=60)


def leaf_names(leaves: np.ndarray, labels: np.ndarray, k: int, class_names: list[str]) -> list[str]:
    """``"<majority class> (<share>%)"`` per leaf; ``"(empty)"`` for a leaf no point hangs on."""
    counts = np.bincount(leaves * len(class_names) + labels, minlength=k * len(class_names))
    counts = counts.reshape(k, len(class_names))
    sizes = counts.sum(axis=1)
    top = counts.argmax(axis=1)
    return [f"{class_names[c]} ({counts[i, c] / sizes[i]:.0%})" if sizes[i] else "(empty)"
            for i, c in enumerate(top)]


def run(cfg, job):
    from l2h.hierarchy import Hierarchy
    from l2h.metrics import evaluate

    tree = Hierarchy.load(job.input("tree"))
    leaves = np.load(job.input("leaves"))
    clusters = np.load(job.input("clusters"))
    with np.load(job.input("labels")) as data:
        labels = data[EVAL_SPLIT]
        coarse = data[f"{EVAL_SPLIT}_coarse"] if f"{EVAL_SPLIT}_coarse" in data.files else None
    if "indices" in job.inputs:
        rows = np.load(job.input("indices"))
        labels = labels[rows]
        coarse = None if coarse is None else coarse[rows]
    classes = json.loads(open(job.input("classes"), encoding="utf-8").read())
    metrics = evaluate(tree, leaves, labels, clusters=clusters, coarse=coarse)
    record = {"run": job.run, "split": EVAL_SPLIT, "n_points": int(len(labels)), "tree_leaves": int(tree.k),
              "labels": {"classes": classes["num_classes"],
                         "coarse": None if coarse is None else len(classes["coarse_names"] or np.unique(coarse))},
              "metrics": metrics}
    write_json(job.output / "metrics.json", record)
    write_json(job.output / "leaf_names.json", leaf_names(leaves, labels, tree.k, classes["class_names"]))
    return {"metrics": metrics}


if __name__ == "__main__":
    stage_main("evaluate", run)
