"""Datasets: ``get_dataset(cfg)`` returns a source with ``prepare(root, offline=False)`` (download, verify,
extract; idempotent) and ``load(root, split) -> ImageSet``. Files live under ``<root>/<cfg.name>/``, or in the
user's own copy (``cfg.local``). ``check_dataset_config`` and ``verify_local_copy`` validate a config before
any job runs."""

from __future__ import annotations

import os
from typing import Any

from l2h.data.download import DownloadError
from l2h.data.imageset import ImageSet
from l2h.data.source import DatasetSource
from l2h.data.taxonomy import ClassTree, load_wordnet_edges, wordnet_tree
from l2h.schema import implementation, options

__all__ = [
    "get_dataset",
    "check_dataset_config",
    "verify_local_copy",
    "DatasetSource",
    "DownloadError",
    "ImageSet",
    "ClassTree",
    "load_wordnet_edges",
    "wordnet_tree",
]


def get_dataset(cfg: Any) -> DatasetSource:
    """The source for a Hydra ``dataset`` node; its ``kind`` picks the loader (its schema's target)."""
    node = options("dataset", cfg)
    return implementation("dataset", node["kind"])(node)


def check_dataset_config(cfg: Any) -> None:
    """Raise :class:`~l2h.errors.InputError` (one line naming the key) unless a ``dataset`` config is valid.

    Checks what the config alone decides, without reading any file's contents: the family, the types of the
    shared keys (``offline``, ``local``, ``unofficial``, ``sizes``), that ``unofficial`` comes with ``local``,
    and that the local copy exists and holds, per archive, either its extracted folder or the archive under
    its published file name.

    Examples
    --------
    >>> check_dataset_config({"name": "digits", "kind": "digits", "splits": {"train": "train", "test": "test"},
    ...                       "local": None})
    >>> check_dataset_config({"name": "digits", "kind": "digits", "splits": {}, "offline": "maybe"})
    Traceback (most recent call last):
    ...
    l2h.errors.InputError: dataset digits: dataset.offline='maybe' must be true or false
    """
    get_dataset(cfg).check_config()


def verify_local_copy(cfg: Any, root: str | os.PathLike, *, progress: bool = False) -> None:
    """Raise :class:`~l2h.errors.InputError` (one line: the file, the official and the found checksum, and the
    switch ``dataset.unofficial=true``) when a local archive of the ``dataset`` config is not the official one.

    Reads the local archives once; their checksums are remembered (by path, size and modification time) in
    ``<root>/<name>/.local-checksums.json`` so that later calls, and ``prepare``, do not read them again.
    The copy itself is never modified. Call :func:`check_dataset_config` first.
    """
    get_dataset(cfg).verify_local(root, progress=progress)
