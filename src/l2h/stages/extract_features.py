"""Stage: encode one split of a dataset with one backbone → ``<split>.npy`` (float32 N×d) + ``<split>.meta.json``."""

from __future__ import annotations

from l2h.stages.app import stage_main


def run(cfg, job):
    from l2h.data import get_dataset
    from l2h.features import extract_to_cache

    split = job.run["split"]
    images = get_dataset(cfg.dataset).load(str(cfg.paths.data), split)
    cached = extract_to_cache(cfg.backbone, images, job.output, split,
                              dataset={"name": str(cfg.dataset.name), "split": split})
    return {"n": cached.meta["n"], "dim": cached.meta["dim"], "device": cached.meta["device"]}


if __name__ == "__main__":
    stage_main("extract_features", run)
