"""scikit-learn's bundled 8×8 handwritten digits: the dataset that needs no download."""

from __future__ import annotations

import os

import numpy as np

from l2h.data.imageset import ImageSet
from l2h.data.source import DatasetSource, group_mapping
from l2h.data.taxonomy import ClassTree
from l2h.errors import InputError


class DigitsSource(DatasetSource):
    """1,797 grey 8×8 images; pixel values 0..16 scaled to uint8 0..255; a fixed stratified split
    (``cfg.test_fraction``, ``cfg.split_seed``); class names ``"0"``..``"9"``; coarse labels and a class hierarchy
    from ``cfg.coarse_groups`` (name -> digits) when set. Nothing to prepare, and no local copy: the images ship
    with scikit-learn."""

    def _check_types(self) -> None:
        super()._check_types()
        if self.cfg.get("local") is not None:
            raise InputError(
                f"dataset {self.name}: the digits ship with scikit-learn, there is no copy to point "
                f"at: remove dataset.local={self.cfg['local']}"
            )

    def load(self, root: str | os.PathLike, split: str, *, progress: bool = True) -> ImageSet:
        from sklearn.datasets import load_digits  # imported here: scikit-learn takes seconds to import
        from sklearn.model_selection import train_test_split

        name = self.split_name(split)
        bunch = load_digits()
        pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
        train, test = train_test_split(
            np.arange(len(pixels)),
            test_size=float(self.cfg["test_fraction"]),
            random_state=int(self.cfg["split_seed"]),
            stratify=bunch.target,
        )
        parts = {"train": train, "test": test}
        if name not in parts:
            raise InputError(f"dataset {self.name}: split name {name!r} must be 'train' or 'test'")
        rows = np.sort(parts[name])
        class_names = [str(n) for n in bunch.target_names]
        labels, info = bunch.target[rows], {"indices": rows.tolist(), "source": "sklearn load_digits"}
        coarse_labels = coarse_names = None
        groups = self.cfg.get("coarse_groups")
        if groups:
            mapping = group_mapping(groups, class_names, self.name)
            coarse_labels, coarse_names = mapping[labels], list(groups)
            info["fine_to_coarse"] = mapping.tolist()
        images = ImageSet(
            labels=labels,
            class_names=class_names,
            pixels=pixels[rows],
            coarse_labels=coarse_labels,
            coarse_names=coarse_names,
            info=info,
        )
        return self.finish(images, split, root)

    def hierarchy(self, root: str | os.PathLike) -> ClassTree | None:
        """Root -> ``coarse_groups`` -> digits (leaf i = digit i); None without coarse groups."""
        groups = self.cfg.get("coarse_groups")
        if not groups:
            return None
        names = [str(d) for d in range(10)]
        mapping = group_mapping(groups, names, self.name)
        return ClassTree.from_paths([(list(groups)[g], c) for g, c in zip(mapping, names)], root=self.name)
