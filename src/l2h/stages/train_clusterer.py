"""Stage: fit a flat clusterer on the train features of every representation space, and write its logits
on the test split (``logits.npy``, float32 N×K), the model (``model.npz``) and its fit details (``info.json``).

A clusterer with per-space logits (TURTLE's ``space_logits``: one N×K array per space; ``logits.npy`` is
``log(mean over spaces of softmax)``) also writes ``logits_<space>.npy`` for every space of the job's backbone
(``pixels+efficientnet_lite0`` → ``logits_pixels.npy``, ``logits_efficientnet_lite0.npy``). They are extra
files of the job's folder, not declared outputs, so the rule stays the same for every clusterer; they are
written before the declared outputs, so a job that finished has them complete."""

from __future__ import annotations

import logging

import numpy as np

from l2h.errors import InputError
from l2h.io import write_json, write_npy
from l2h.stages.app import stage_main
from l2h.stages.layout import CLUSTERER, EVAL_SPLIT, FEATURES, FIT_SPLIT
from l2h.stages.spec import StageSpec, per_clusterer

log = logging.getLogger(__name__)


def inputs(plan, fields):
    folders = [plan.path(FEATURES.format(dataset=fields["dataset"], backbone=b)) for b in fields["backbone"].split("+")]
    return {"train": [f"{f}/{FIT_SPLIT}.npy" for f in folders], "test": [f"{f}/{EVAL_SPLIT}.npy" for f in folders]}


SPEC = StageSpec(
    "train_clusterer",
    groups=("clusterer",),
    folder=CLUSTERER,
    outputs=("model.npz", "logits.npy", "info.json"),
    jobs=per_clusterer,
    inputs=inputs,
    threads=4,
    mem_mb=16000,
    mem_per_input=4,
    runtime=480,
    gpu_groups=("clusterer",),
    checkpoints="clusterer",
    priority=1,
)


def space_logit_files(backbone: str | None, n_spaces: int) -> list[str]:
    """The per-space logit file names: ``logits_<space>.npy`` for the spaces of ``backbone`` (joined by ``+``),
    or ``logits_space<i>.npy`` when the stage is run by hand without ``stage.run.backbone``."""
    spaces = backbone.split("+") if backbone else [f"space{s}" for s in range(n_spaces)]
    if len(spaces) != n_spaces:
        raise InputError(
            f"train_clusterer: stage.run.backbone {backbone!r} names {len(spaces)} spaces, but "
            f"{n_spaces} test feature files were given"
        )
    return [f"logits_{space}.npy" for space in spaces]


def run(cfg, job):
    from l2h.clusterers import build_clusterer

    train = [np.load(path, mmap_mode="r") for path in job.input("train")]
    test = [np.load(path, mmap_mode="r") for path in job.input("test")]
    names = space_logit_files(job.run.get("backbone"), len(test))  # checked before the (long) fit
    model = build_clusterer(cfg.clusterer).fit(train)
    logits = model.logits(test)
    info = model.info()  # fixed by config and seed: clusterers keep timings out of it (run_info_)
    if info["empty_clusters"]:
        log.warning("%d of %d clusters are empty on the train split", info["empty_clusters"], model.k)
    extra = {}
    if hasattr(model, "space_logits"):
        for name, space in zip(names, model.space_logits(test)):
            write_npy(job.output / name, space)
        extra["space_logits"] = names
    model.save(job.output / "model.npz")
    write_npy(job.output / "logits.npy", logits)
    write_json(job.output / "info.json", info)
    return {"empty_clusters": info["empty_clusters"], **extra}


if __name__ == "__main__":
    stage_main("train_clusterer", run)
