"""Stage: encode every split of a dataset with one backbone → ``<split>.npy`` (float32 N×d) and
``<split>.meta.json`` for the train and the test split (one job: the backbone is built and loaded once)."""

from __future__ import annotations

from l2h.stages.app import stage_main
from l2h.stages.layout import DATA, FEATURES, SPLITS, WEIGHTS
from l2h.stages.spec import StageSpec, per_dataset_space


def inputs(plan, fields):
    return {"classes": plan.path(DATA.format(**fields), "classes.json"),
            "weights": plan.path(WEIGHTS, f"{fields['backbone']}.json")}


SPEC = StageSpec("extract_features", groups=("dataset", "backbone"), folder=FEATURES,
                 outputs=tuple(f"{split}{ext}" for split in SPLITS for ext in (".npy", ".meta.json")),
                 jobs=per_dataset_space, inputs=inputs, threads=4, mem_mb=32000, runtime=720,
                 gpu_groups=("backbone",))


def run(cfg, job):
    from l2h.data import get_dataset
    from l2h.features import extract_to_cache

    source = get_dataset(cfg.dataset)
    shapes = {}
    for split in SPLITS:
        images = source.load(str(cfg.paths.data), split)
        cached = extract_to_cache(cfg.backbone, images, job.output, split,
                                  dataset={"name": str(cfg.dataset.name), "split": split})
        shapes[split] = [cached.meta["n"], cached.meta["dim"]]
    return {"shapes": shapes, "device": cached.meta["device"]}


if __name__ == "__main__":
    stage_main("extract_features", run)
