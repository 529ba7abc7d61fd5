"""Datasets: ``get_dataset(cfg)`` returns a source with ``prepare(root, offline=False)`` (download, verify,
extract; idempotent) and ``load(root, split) -> ImageSet``. Files live under ``<root>/<cfg.name>/``."""

from __future__ import annotations

from typing import Any

from l2h.data.cifar import CifarSource
from l2h.data.digits import DigitsSource
from l2h.data.download import DownloadError
from l2h.data.food101 import Food101Source
from l2h.data.imagenet import ImageNetSource
from l2h.data.imageset import ImageSet
from l2h.data.inat import INat21Source
from l2h.data.source import DatasetSource
from l2h.data.taxonomy import ClassTree, load_wordnet_edges, wordnet_tree
from l2h.errors import InputError
from l2h.schema import options

FAMILIES: dict[str, type[DatasetSource]] = {
    "digits": DigitsSource,
    "cifar": CifarSource,
    "food101": Food101Source,
    "imagenet": ImageNetSource,
    "inat21": INat21Source,
}

__all__ = ["get_dataset", "FAMILIES", "DatasetSource", "DownloadError", "ImageSet", "ClassTree",
           "load_wordnet_edges", "wordnet_tree"]


def get_dataset(cfg: Any) -> DatasetSource:
    """The source for a Hydra ``dataset`` node; ``cfg.family`` picks the loader."""
    node = options("dataset", cfg)
    family = node.get("family")
    if family not in FAMILIES:
        raise InputError(f"dataset config {node.get('name')!r}: family {family!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[family](node)
