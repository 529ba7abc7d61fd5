"""Stage: L2H on a clusterer's test logits → tree.json, linkage.npy, tree.nwk (with ``l2h.bootstrap``, each merge's
support), leaves.npy (point → its argmax cluster = leaf), clusters.npy (the flat partition at K, the same
clusters) and levels.json (the numbers of groups at which the tree is best cut, :func:`l2h.levels.suggest_levels`)."""

from __future__ import annotations

import numpy as np

from l2h.io import sha256_file, write_json, write_npy
from l2h.stages.app import stage_main
from l2h.stages.layout import CLUSTERER, L2H, TREE_FILES
from l2h.stages.spec import StageSpec, per_run


def inputs(plan, fields):
    return {"logits": plan.path(CLUSTERER.format(**fields), "logits.npy")}


SPEC = StageSpec(
    "build_tree",
    groups=("l2h",),
    folder=L2H,
    outputs=(*TREE_FILES, "levels.json"),
    jobs=per_run("l2h"),
    inputs=inputs,
    mem_mb=4000,
    mem_per_input=3,
    runtime=120,
)


def run(cfg, job):
    from l2h.algorithm import l2h
    from l2h.levels import suggest_levels, tree_supports

    path = job.input("logits")
    scores = np.load(path, mmap_mode="r")
    tree, leaves = l2h(
        scores,
        aggregation=str(cfg.l2h.aggregation),
        strategy=str(cfg.l2h.strategy),
        input=str(cfg.l2h.input),
        block_rows=int(cfg.l2h.block_rows),
        progress=True,
        source=str(path),
        return_assignment=True,
        bootstrap=int(cfg.l2h.bootstrap),
        seed=int(cfg.l2h.bootstrap_seed),
    )
    tree.info["source_sha256"] = sha256_file(path)
    tree.write(job.output)
    write_npy(job.output / "leaves.npy", leaves)
    write_npy(job.output / "clusters.npy", leaves)
    write_json(
        job.output / "levels.json",
        suggest_levels(tree, scores, leaves=leaves, input=str(cfg.l2h.input), supports=tree_supports(tree)),
    )
    return {"k": tree.k, "n_points": int(scores.shape[0]), "empty_clusters": tree.info.get("empty_clusters")}


if __name__ == "__main__":
    stage_main("build_tree", run)
