"""Stage: make a dataset available (download, verify, extract) and record its labels and class names.

Writes ``labels.npz`` (``<split>`` and, where the dataset has them, ``<split>_coarse`` int64 arrays for every
logical split) and ``classes.json`` (class names, coarse names, and per split its size and the identity of the
copy it was read from: ``splits.<split>.copy``, see ``DatasetSource.copy_identity``; and the class hierarchy
where the dataset has one, ``hierarchy: {edges, leaves}`` with leaf i = class i).
"""

from __future__ import annotations

import numpy as np

from l2h.io import atomic_path, write_json
from l2h.stages.app import stage_main
from l2h.stages.layout import DATA, SPLITS
from l2h.stages.spec import StageSpec, no_inputs, per_dataset

SPEC = StageSpec(
    "prepare_data",
    groups=("dataset",),
    folder=DATA,
    outputs=("labels.npz", "classes.json"),
    jobs=per_dataset,
    inputs=no_inputs,
    local=True,
)


def run(cfg, job):
    from l2h.data import get_dataset

    source = get_dataset(cfg.dataset)
    root = str(cfg.paths.data)
    source.prepare(root)
    arrays, splits, first = {}, {}, None
    for split in SPLITS:
        images = source.load(root, split)
        first = first or images
        arrays[split] = images.labels
        if images.coarse_labels is not None:
            arrays[f"{split}_coarse"] = images.coarse_labels
        splits[split] = {"name": source.split_name(split), "n": len(images), "copy": images.info.get("copy")}
    tree = source.hierarchy(root)  # the dataset's class hierarchy (superclasses, WordNet, taxonomy), if any
    with atomic_path(job.output / "labels.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    write_json(
        job.output / "classes.json",
        {
            "dataset": source.name,
            "class_names": list(first.class_names),
            "num_classes": len(first.class_names),
            "coarse_names": None if first.coarse_names is None else list(first.coarse_names),
            "local": source.cfg.get("local"),
            "unofficial": bool(source.cfg.get("unofficial")),
            "splits": splits,
            "hierarchy": None
            if tree is None
            else {"edges": [list(e) for e in tree.edges()], "leaves": list(tree.leaves)},
        },
    )
    return {"splits": splits}


if __name__ == "__main__":
    stage_main("prepare_data", run)
