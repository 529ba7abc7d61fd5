"""Stage: a baseline hierarchical clusterer on the test features → the same tree files as L2H, plus
``indices.npy`` (the feature rows that were evaluated: all of them unless the baseline subsampled) and
``info.json``. Several spaces (``a+b``) are L2-normalised and concatenated."""

from __future__ import annotations

import numpy as np

from l2h.stages.app import stage_main
from l2h.stages.layout import BASELINE, EVAL_SPLIT, FEATURES, TREE_FILES
from l2h.stages.spec import StageSpec, per_run


def inputs(plan, fields):
    return {
        "features": [
            plan.path(FEATURES.format(dataset=fields["dataset"], backbone=b), f"{EVAL_SPLIT}.npy")
            for b in fields["backbone"].split("+")
        ]
    }


SPEC = StageSpec(
    "run_baseline",
    groups=("baseline",),
    folder=BASELINE,
    outputs=TREE_FILES + ("indices.npy", "info.json"),
    jobs=per_run("baseline"),
    inputs=inputs,
    threads=4,
    mem_mb=64000,
    runtime=720,
    gpu_groups=("baseline",),
    checkpoints="baseline",
)


def run(cfg, job):
    from l2h.baselines import run_baseline
    from l2h.clusterers.base import l2_normalize

    spaces = [np.load(path) for path in job.input("features")]
    features = spaces[0] if len(spaces) == 1 else np.concatenate([l2_normalize(x) for x in spaces], axis=1)
    result = run_baseline(cfg.baseline, features, k=int(job.run["k"]), seed=int(job.run["seed"]))
    result.write(job.output)
    return {"n_points": int(len(result.leaves)), "tree_leaves": int(result.hierarchy.k)}


if __name__ == "__main__":
    stage_main("run_baseline", run)
