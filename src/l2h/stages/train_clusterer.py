"""Stage: fit a flat clusterer on the train features of every representation space, and write its logits
on the test split (``logits.npy``, float32 N×K), the model (``model.npz``) and its fit details (``info.json``)."""

from __future__ import annotations

import logging

import numpy as np

from l2h.io import write_json, write_npy
from l2h.stages.app import stage_main, without_timings

log = logging.getLogger(__name__)


def run(cfg, job):
    from l2h.clusterers import build_clusterer

    train = [np.load(path, mmap_mode="r") for path in job.input("train")]
    test = [np.load(path, mmap_mode="r") for path in job.input("test")]
    model = build_clusterer(cfg.clusterer).fit(train)
    logits = model.logits(test)
    model.info_ = info = without_timings(model.info(), model.name)
    if info["empty_clusters"]:
        log.warning("%d of %d clusters are empty on the train split", info["empty_clusters"], model.k)
    model.save(job.output / "model.npz")
    write_npy(job.output / "logits.npy", logits)
    write_json(job.output / "info.json", info)
    return {"empty_clusters": info["empty_clusters"]}


if __name__ == "__main__":
    stage_main("train_clusterer", run)
