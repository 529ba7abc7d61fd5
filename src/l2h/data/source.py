"""What every dataset family shares: its config, split names, integrity checks and folder scanning."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from l2h.data.download import prepare_archive
from l2h.data.imageset import ImageSet
from l2h.data.taxonomy import ClassTree
from l2h.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def as_dict(cfg: Any) -> dict:
    """A plain, resolved dict from an OmegaConf node or any mapping."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise InputError(f"dataset config: expected a mapping, got {type(cfg).__name__}")
    return dict(cfg)


class DatasetSource:
    """A dataset family configured by the Hydra ``dataset`` node; subclasses implement ``load``.

    Files live under ``<root>/<name>/``. ``prepare`` makes them available (download + verify + extract,
    idempotent); ``load(root, split)`` returns the split ``"train"`` or ``"test"`` (keys of ``cfg.splits``)
    as an :class:`ImageSet`; ``hierarchy(root)`` returns the ground-truth class tree where the dataset has one.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = as_dict(cfg)
        for key in ("name", "splits"):
            if key not in self.cfg:
                raise InputError(f"dataset config: missing key {key!r}")
        self.name = str(self.cfg["name"])

    def directory(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.name

    def prepare(self, root: str | os.PathLike, offline: bool = False, *, progress: bool = True) -> None:
        """Nothing to prepare by default."""

    def load(self, root: str | os.PathLike, split: str, *, progress: bool = True) -> ImageSet:
        raise NotImplementedError

    def hierarchy(self, root: str | os.PathLike) -> ClassTree | None:
        """The ground-truth :class:`~l2h.data.taxonomy.ClassTree` over the classes (leaf i = class i), or None."""
        return None

    def split_name(self, split: str) -> str:
        """The dataset's own name for the logical split ``split``."""
        splits = self.cfg["splits"]
        if split not in splits:
            raise InputError(f"dataset {self.name}: unknown split {split!r}; configured: {sorted(splits)}")
        return str(splits[split])

    def is_offline(self, offline: bool) -> bool:
        """True when the call or the config (``cfg.offline``) forbids downloading."""
        return bool(offline or self.cfg.get("offline", False))

    def finish(self, images: ImageSet, split: str) -> ImageSet:
        """Check the loaded split against ``num_classes`` and ``sizes``, record its origin, return it."""
        expected_k = self.cfg.get("num_classes")
        if expected_k is not None and len(images.class_names) != int(expected_k):
            raise InputError(f"dataset {self.name}: found {len(images.class_names)} classes but the config says "
                             f"num_classes={expected_k}")
        name = self.split_name(split)
        expected_n = (self.cfg.get("sizes") or {}).get(name)
        if expected_n is not None and len(images) != int(expected_n):
            raise InputError(f"dataset {self.name}: split {name!r} has {len(images)} images but the config says "
                             f"sizes.{name}={expected_n}: the copy is incomplete or damaged (set "
                             f"sizes.{name}=null to accept it)")
        check_label_range(images.labels, len(images.class_names), f"dataset {self.name}, split {name!r}")
        images.info.update({"dataset": self.name, "split": split, "split_name": name})
        return images


def check_label_range(labels, k: int, where: str) -> None:
    """Raise InputError unless every label is in 0..k-1."""
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise InputError(f"{where}: labels outside 0..{k - 1} (min {labels.min()}, max {labels.max()})")


class ArchiveSource(DatasetSource):
    """A dataset distributed as published archives: ``cfg.archives`` maps a key to ``{url, md5|sha256}``."""

    def archive_entries(self) -> list[tuple[str, dict]]:
        """``(key, {url, md5|sha256})`` of every archive ``prepare`` fetches; key = folder it extracts into."""
        return list((self.cfg.get("archives") or {}).items())

    def prepare(self, root: str | os.PathLike, offline: bool = False, *, progress: bool = True) -> None:
        for key, entry in self.archive_entries():
            prepare_archive(entry, self.directory(root), key, offline=self.is_offline(offline), progress=progress,
                            keep_archive=bool(self.cfg.get("keep_archives", True)),
                            **(self.cfg.get("download") or {}))

    def extracted(self, root: str | os.PathLike, relative: str) -> Path:
        """``<root>/<name>/<relative>``, which must exist (else: run prepare)."""
        path = self.directory(root) / relative
        if not path.exists():
            raise InputError(f"dataset {self.name}: {path} not found; run prepare (download) first")
        return path


def scan_class_folders(split_dir: Path, *, progress: bool = True) -> list[tuple[str, list[str]]]:
    """``[(folder name, sorted image paths)]`` for every sub-folder of ``split_dir``, sorted by name.

    Hidden entries are ignored; a folder without images is an InputError.
    """
    if not split_dir.is_dir():
        raise InputError(f"{split_dir}: folder not found")
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    result = []
    for name in tqdm(folders, desc=f"scan {split_dir.name}", unit="class", disable=not progress, leave=False):
        files = sorted(e.path for e in os.scandir(split_dir / name)
                       if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise InputError(f"{split_dir / name}: no images ({', '.join(IMAGE_SUFFIXES)})")
        result.append((name, files))
    return result
