"""iNaturalist 2021 from the official competition archives, labelled at any taxonomic rank.

Each archive extracts to ``<split>/<class folder>/<image>.jpg`` with class folders named
``NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_epithet``; the taxonomy is read from those names.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from l2h.data.imageset import ImageSet
from l2h.data.source import ArchiveSource, scan_class_folders
from l2h.data.taxonomy import ClassTree
from l2h.errors import InputError

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


def parse_class_folder(name: str) -> tuple[str, ...]:
    """The seven rank names of a class folder; the species is ``"Genus epithet"``."""
    parts = name.split("_")
    if len(parts) != 8 or not parts[0].isdigit() or not all(parts):
        raise InputError(
            f"iNat21 class folder {name!r}: expected NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_epithet"
        )
    return (*parts[1:7], f"{parts[6]} {parts[7]}")


def short_names(paths: Sequence[tuple[str, ...]], sep: str = "/") -> list[str]:
    """For each taxon path, its shortest unique suffix joined by ``sep`` (``"Corvidae"``, or
    ``"Aves/Corvidae"`` where two paths share the last name)."""
    names: list[str | None] = [None] * len(paths)
    for n in range(1, max(map(len, paths), default=0) + 1):
        counts = Counter(p[-n:] for p in paths)
        for i, p in enumerate(paths):
            if names[i] is None and (counts[p[-n:]] == 1 or n == len(p)):
                names[i] = sep.join(p[-n:])
    return names


class INat21Source(ArchiveSource):
    """Labels at ``cfg.label_level`` (default family), coarse labels at ``cfg.coarse_level`` (or none).

    The class list is the union of the class folders of all configured splits, so class indices agree across
    splits. ``info["class_taxonomy"]`` maps each rank down to the label level to the class's name at that rank.
    """

    def archive_entries(self) -> list[tuple[str, dict]]:
        archives, notes = self.cfg.get("archives") or {}, self.cfg.get("annotations") or {}
        names = list(dict.fromkeys(self.split_name(s) for s in self.cfg["splits"]))
        for name in names:
            if name not in archives:
                raise InputError(f"dataset {self.name}: no archive for split {name!r}; have {sorted(archives)}")
            if self.cfg.get("fetch_annotations") and name not in notes:
                raise InputError(f"dataset {self.name}: no annotations archive for split {name!r}")
        entries = [(name, archives[name]) for name in names]
        if self.cfg.get("fetch_annotations"):
            entries += [(f"annotations/{name}", notes[name]) for name in names]
        return entries

    def _level(self, key: str) -> int | None:
        level = self.cfg.get(key)
        if level is None:
            return None
        if level not in RANKS:
            raise InputError(f"dataset {self.name}: {key}={level!r} is not one of {RANKS}")
        return RANKS.index(level)

    def split_key(self, name: str) -> str:
        return name

    def _split_dir(self, root, name: str) -> Path:
        return self.data_dir(root, name)

    def class_paths(self, root: str | os.PathLike) -> list[tuple[str, ...]]:
        """Sorted taxon paths (kingdom .. label level) of the classes, over all configured splits."""
        depth = self._level("label_level")
        if depth is None:
            raise InputError(f"dataset {self.name}: label_level must be set")
        taxa = set()
        for split in self.cfg["splits"]:
            folder = self._split_dir(root, self.split_name(split))
            taxa.update(
                parse_class_folder(e.name)[: depth + 1]
                for e in os.scandir(folder)
                if e.is_dir() and not e.name.startswith(".")
            )
        return sorted(taxa)

    def load(self, root: str | os.PathLike, split: str, *, progress: bool = True) -> ImageSet:
        name = self.split_name(split)
        depth, coarse_depth = self._level("label_level"), self._level("coarse_level")
        classes = self.class_paths(root)
        index = {c: i for i, c in enumerate(classes)}
        paths, labels = [], []
        for folder, files in scan_class_folders(self._split_dir(root, name), progress=progress):
            paths.extend(files)
            labels.extend([index[parse_class_folder(folder)[: depth + 1]]] * len(files))
        labels = np.asarray(labels, dtype=np.int64)
        info = {"class_taxonomy": {RANKS[j]: [c[j] for c in classes] for j in range(depth + 1)}}
        coarse_labels = coarse_names = None
        if coarse_depth is not None:
            if coarse_depth >= depth:
                raise InputError(
                    f"dataset {self.name}: coarse_level {RANKS[coarse_depth]!r} must be above "
                    f"label_level {RANKS[depth]!r}"
                )
            coarse = sorted({c[: coarse_depth + 1] for c in classes})
            coarse_index = {c: i for i, c in enumerate(coarse)}
            class_to_coarse = np.array([coarse_index[c[: coarse_depth + 1]] for c in classes], dtype=np.int64)
            coarse_labels, coarse_names = class_to_coarse[labels], short_names(coarse)
            info["fine_to_coarse"] = class_to_coarse.tolist()
        images = ImageSet(
            labels=labels,
            class_names=short_names(classes),
            paths=paths,
            coarse_labels=coarse_labels,
            coarse_names=coarse_names,
            info=info,
        )
        return self.finish(images, split, root)

    def hierarchy(self, root: str | os.PathLike) -> ClassTree:
        """Root -> kingdom -> ... -> label level (leaf i = class i); node ids are ``/``-joined taxon paths."""
        return ClassTree.from_paths(self.class_paths(root), root=self.name)
