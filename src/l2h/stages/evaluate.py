"""Stage: score a run's tree against the test labels → ``metrics.json`` (nmi, ari, acc, dp, lp; coarse_* when the
dataset has coarse labels; ``support``, the median bootstrap support of the tree's merges when it has them;
``ref_cophenetic`` and ``ref_rf`` when it is compared with the dataset's class hierarchy), ``leaf_names.json``
(each leaf's majority class and its share) and ``comparison.json``: the tree against the dataset's class
hierarchy (:func:`l2h.compare.compare`, every value with its chance level), or why there is no comparison.

The comparison needs a tree whose leaves are the classes: when its K leaves are as many as the classes, leaf
i is named by the class the Hungarian matching of leaves to classes gives it (the matching ACC uses)."""

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


SPEC = StageSpec(
    "evaluate",
    groups=(),
    folder="{run}",
    outputs=("metrics.json", "leaf_names.json", "comparison.json"),
    jobs=per_run(None),
    inputs=inputs,
    mem_mb=8000,
    runtime=60,
)


def leaf_names(leaves: np.ndarray, labels: np.ndarray, k: int, class_names: list[str]) -> list[str]:
    """``"<majority class> (<share>%)"`` per leaf; ``"(empty)"`` for a leaf no point hangs on."""
    counts = np.bincount(leaves * len(class_names) + labels, minlength=k * len(class_names))
    counts = counts.reshape(k, len(class_names))
    sizes = counts.sum(axis=1)
    top = counts.argmax(axis=1)
    return [f"{class_names[c]} ({counts[i, c] / sizes[i]:.0%})" if sizes[i] else "(empty)" for i, c in enumerate(top)]


def compare_with_classes(
    tree, leaves: np.ndarray, labels: np.ndarray, classes: dict, *, n_random: int = 100, seed: int = 0
) -> dict:
    """The tree against the dataset's class hierarchy (``classes["hierarchy"]``), its leaves named by the
    classes matched to them one to one; ``{"reference": None, "reason": ...}`` where that does not apply."""
    from scipy.optimize import linear_sum_assignment

    from l2h.compare import Reference, compare
    from l2h.data.taxonomy import ClassTree

    hierarchy, names = classes.get("hierarchy"), classes["class_names"]
    if not hierarchy:
        return {"reference": None, "reason": f"dataset {classes.get('dataset')} has no class hierarchy"}
    if tree.k != len(names):
        return {
            "reference": None,
            "reason": f"the tree has {tree.k} leaves for {len(names)} classes; the comparison needs one leaf per class",
        }
    table = np.zeros((tree.k, len(names)), dtype=np.int64)
    np.add.at(table, (leaves, labels), 1)
    rows, cols = linear_sum_assignment(-table)
    leaf_class = np.empty(tree.k, dtype=np.int64)
    leaf_class[rows] = cols
    reference = ClassTree.from_edges([tuple(e) for e in hierarchy["edges"]], source="classes.json hierarchy")
    ordered = reference.reorder([hierarchy["leaves"][c] for c in leaf_class])  # leaf i of both = the same class
    result = compare(tree, Reference(ordered, source="dataset class hierarchy"), n_random=n_random, seed=seed)
    return {
        "reference": "dataset class hierarchy",
        "leaf_classes": [names[c] for c in leaf_class],
        "matched_points": int(table[rows, cols].sum()),
        "n_points": int(len(labels)),
        **result,
    }


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
    if tree.support is not None:
        metrics["support"] = float(np.median(tree.support[:-1] if tree.k > 2 else tree.support))
    comparison = compare_with_classes(tree, leaves, labels, classes)
    if comparison.get("reference") is not None:
        metrics["ref_cophenetic"] = comparison["cophenetic_correlation"]["value"]
        metrics["ref_rf"] = comparison["robinson_foulds"]["value"]
    record = {
        "run": job.run,
        "split": EVAL_SPLIT,
        "n_points": int(len(labels)),
        "tree_leaves": int(tree.k),
        "labels": {
            "classes": classes["num_classes"],
            "coarse": None if coarse is None else len(classes["coarse_names"] or np.unique(coarse)),
        },
        "metrics": metrics,
    }
    write_json(job.output / "metrics.json", record)
    write_json(job.output / "leaf_names.json", leaf_names(leaves, labels, tree.k, classes["class_names"]))
    write_json(job.output / "comparison.json", comparison)
    return {"metrics": metrics}


if __name__ == "__main__":
    stage_main("evaluate", run)
