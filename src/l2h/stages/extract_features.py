"""Stage: encode every split of a dataset with one backbone → ``<split>.npy`` (float32 N×d) and
``<split>.meta.json`` for the train and the test split (one job: the backbone is built and loaded once).

The dataset copy each split is read from must be the one ``prepare_data`` recorded in ``classes.json``; its
checksum goes into the features' meta (``dataset.copy``), so features of another copy are never reused."""

from __future__ import annotations

import json
from pathlib import Path

from l2h.errors import InputError
from l2h.stages.app import stage_main
from l2h.stages.layout import DATA, FEATURES, SPLITS, WEIGHTS
from l2h.stages.spec import StageSpec, per_dataset_space


def inputs(plan, fields):
    return {
        "classes": plan.path(DATA.format(**fields), "classes.json"),
        "weights": plan.path(WEIGHTS, f"{fields['backbone']}.json"),
    }


SPEC = StageSpec(
    "extract_features",
    groups=("dataset", "backbone"),
    folder=FEATURES,
    outputs=tuple(f"{split}{ext}" for split in SPLITS for ext in (".npy", ".meta.json")),
    jobs=per_dataset_space,
    inputs=inputs,
    threads=4,
    mem_mb=32000,
    runtime=720,
    gpu_groups=("backbone",),
)


def check_same_copy(recorded: dict | None, found: dict | None, classes: str, split: str) -> None:
    """Raise InputError when the copy a split was read from is not the one ``prepare_data`` recorded."""
    want = (recorded or {}).get("checksum")
    got = (found or {}).get("checksum")
    if want != got:
        raise InputError(
            f"{classes}: split {split!r} was prepared from a copy with checksum {want}, but the copy "
            f"read now has {got}: the dataset copy changed; run prepare_data again "
            f"(snakemake --forcerun prepare_data)"
        )


def run(cfg, job):
    from l2h.data import get_dataset
    from l2h.features import extract_to_cache

    source = get_dataset(cfg.dataset)
    classes = job.inputs.get("classes")
    recorded = json.loads(Path(classes).read_text(encoding="utf-8"))["splits"] if classes else {}
    shapes = {}
    for split in SPLITS:
        images = source.load(str(cfg.paths.data), split)
        if classes and "copy" in images.info:
            check_same_copy(recorded.get(split, {}).get("copy"), images.info["copy"], classes, split)
        cached = extract_to_cache(
            cfg.backbone, images, job.output, split, dataset={"name": str(cfg.dataset.name), "split": split}
        )
        shapes[split] = [cached.meta["n"], cached.meta["dim"]]
    return {"shapes": shapes, "device": cached.meta["device"]}


if __name__ == "__main__":
    stage_main("extract_features", run)
