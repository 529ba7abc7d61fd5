"""Stage: encode every split of a dataset with one backbone → ``<split>.npy`` (float32 N×d) and
``<split>.meta.json`` for the train and the test split (one job: the backbone is built and loaded once)."""

from __future__ import annotations

from l2h.stages.app import stage_main
from l2h.stages.plan import SPLITS


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
