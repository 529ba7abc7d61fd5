"""What every dataset family shares: its config, split names, local copies, integrity checks and folder scanning.

A dataset is either downloaded (archives with published checksums, into ``<data root>/<name>/``) or read from
the user's own copy, ``cfg.local``: an archive in the official format, a folder holding the official archives
under their published file names, or the extracted folder. A local copy is only ever read. An archive whose
checksum is not the published one, or an extracted folder whose split sizes differ from ``cfg.sizes``, is
refused unless ``cfg.unofficial`` is true; every loaded split records the identity of the copy it was read
from (``info["copy"]``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2h.data.download import (
    DownloadError,
    archive_filename,
    cached_checksum,
    expected_checksum,
    extract_archive,
    prepare_archive,
)
from l2h.data.imageset import ImageSet
from l2h.data.taxonomy import ClassTree
from l2h.errors import InputError
from l2h.progress import progress_bar
from l2h.schema import options

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Per dataset folder: checksums of local archives, by resolved path, size and modification time.
CHECKSUM_CACHE = ".local-checksums.json"


class DatasetSource:
    """A dataset family configured by the Hydra ``dataset`` node; subclasses implement ``load``.

    Files live under ``<root>/<name>/``. ``prepare`` makes them available (download + verify + extract,
    idempotent); ``load(root, split)`` returns the split ``"train"`` or ``"test"`` (keys of ``cfg.splits``)
    as an :class:`ImageSet`; ``hierarchy(root)`` returns the ground-truth class tree where the dataset has one.
    The constructor checks the types of the shared keys; :meth:`check_config` also checks the local copy's path.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = options("dataset", cfg)
        for key in ("name", "splits"):
            if key not in self.cfg:
                raise InputError(f"dataset config: missing key {key!r}")
        self.name = str(self.cfg["name"])
        self._check_types()

    def _check_types(self) -> None:
        """What the schema cannot say (types and ranges are checked by ``l2h.schema`` when the config is read)."""
        if self.cfg.get("local") is None and self.cfg.get("unofficial"):
            raise InputError(
                f"dataset {self.name}: dataset.unofficial=true accepts a local copy that differs from "
                f"the official one: set dataset.local=/path/to/your/copy as well"
            )

    def check_config(self) -> None:
        """Raise InputError (one line) unless the config's values are valid and a local copy exists where
        ``cfg.local`` says and has the dataset's layout. Reads no file contents."""
        local = self.local_path()
        if local is not None and not local.exists():
            raise InputError(f"dataset {self.name}: dataset.local={self.cfg['local']}: no such file or folder")

    def verify_local(self, root: str | os.PathLike, *, progress: bool = False) -> None:
        """Raise InputError (one line) when a local archive is not the official one and ``cfg.unofficial`` is
        false. Checksums are remembered in ``<root>/<name>/.local-checksums.json``."""

    def local_path(self) -> Path | None:
        """``cfg.local`` as a path, or None."""
        local = self.cfg.get("local")
        return None if local is None else Path(str(local)).expanduser()

    def directory(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.name

    def prepare(self, root: str | os.PathLike, offline: bool = False, *, progress: bool = True) -> None:
        """Nothing to prepare by default."""
        self.check_config()

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

    def copy_identity(self, root: str | os.PathLike, split: str, images: ImageSet) -> dict | None:
        """What identifies the copy a split was read from (see :meth:`finish`); None when there is one copy."""
        return None

    def finish(self, images: ImageSet, split: str, root: str | os.PathLike) -> ImageSet:
        """Check the loaded split against ``num_classes`` and (unless ``cfg.unofficial``) ``sizes``, record its
        origin and the identity of the copy it came from (``info["copy"]``), return it."""
        expected_k = self.cfg.get("num_classes")
        if expected_k is not None and len(images.class_names) != int(expected_k):
            raise InputError(
                f"dataset {self.name}: found {len(images.class_names)} classes but the config says "
                f"num_classes={expected_k} (set dataset.num_classes={len(images.class_names)} if "
                f"your copy has other classes)"
            )
        name = self.split_name(split)
        expected_n = (self.cfg.get("sizes") or {}).get(name)
        if expected_n is not None and len(images) != int(expected_n) and not self.cfg.get("unofficial"):
            raise InputError(self._size_mismatch(root, name, len(images), int(expected_n)))
        check_label_range(images.labels, len(images.class_names), f"dataset {self.name}, split {name!r}")
        images.info.update({"dataset": self.name, "split": split, "split_name": name})
        identity = self.copy_identity(root, split, images)
        if identity is not None:
            images.info["copy"] = identity
        return images

    def _size_mismatch(self, root, name: str, found: int, expected: int) -> str:
        head = (
            f"dataset {self.name}: split {name!r} has {found} images, the official dataset {expected} "
            f"(dataset.sizes.{name})"
        )
        if self.local_path() is not None:
            return (
                f"{head}: your copy {self.cfg['local']} is not the official one; to use it as it is (its "
                f"sizes then come from the copy), add dataset.unofficial=true"
            )
        return (
            f"{head}: the files under {self.directory(root)} are incomplete or damaged (or dataset.sizes.{name} "
            f"is wrong)"
        )


@dataclass(frozen=True)
class LocalPart:
    """Where one archive's data comes from in a local copy: the archive file (``form="archive"``) or the
    folder holding its extracted data (``form="folder"``)."""

    form: str
    path: Path


def folder_checksum(base: Path, files: Iterable[str | os.PathLike], content: Iterable[Path] = ()) -> str:
    """``"listing-sha256:<hex>"``: a SHA-256 over the bytes of the ``content`` files and over the path
    (relative to ``base``) and size of each of ``files``, in order. Independent of where ``base`` is."""
    digest = hashlib.sha256()
    for path in content:
        with open(path, "rb") as fh:
            digest.update(f"{os.path.relpath(path, base)}\0{hashlib.file_digest(fh, 'sha256').hexdigest()}\n".encode())
    for path in files:
        digest.update(f"{os.path.relpath(path, base)}\0{os.stat(path).st_size}\n".encode())
    return f"listing-sha256:{digest.hexdigest()}"


class ArchiveSource(DatasetSource):
    """A dataset distributed as published archives: ``cfg.archives`` maps a key to ``{url, md5|sha256}``.

    Archive ``key`` is extracted into ``<root>/<name>/<key>/`` and holds the data under ``inner(key)``
    (``cfg.folder`` is ``<key>/<inner>``). A local copy (``cfg.local``) gives, per archive, either the
    extracted data folder (``<local>/<inner>``, or ``<local>`` itself when it holds :meth:`marker`), read in
    place, or the archive (``<local>`` itself, or ``<local>/<published file name>``), verified and extracted
    into ``<root>/<name>/<key>/`` when it is the official one, else into ``<root>/<name>/copy-<checksum>/<key>/``.
    """

    def archive_entries(self) -> list[tuple[str, dict]]:
        """``(key, {url, md5|sha256})`` of every archive ``prepare`` fetches; key = folder it extracts into."""
        return list((self.cfg.get("archives") or {}).items())

    def archive_file(self, entry: Mapping) -> str:
        """The published file name of an archive entry (``file``, else the last part of its ``url``)."""
        return str(entry["file"]) if entry.get("file") else archive_filename(str(entry["url"]))

    def marker(self) -> str | None:
        """A file (relative to the data folder) that identifies the data folder itself; None: no such file."""
        return None

    def inner(self, key: str) -> str:
        """The data folder's path inside archive ``key`` (``cfg.folder`` minus its first part, or ``key``)."""
        first, _, rest = str(self.cfg.get("folder") or "").partition("/")
        return rest if first == key and rest else key

    def split_key(self, name: str) -> str:
        """The key of the archive holding the split named ``name``."""
        return str(self.cfg["folder"]).partition("/")[0]

    def index_files(self, folder: Path, name: str) -> list[Path]:
        """Files in the data folder whose bytes identify split ``name`` in an extracted copy (besides the
        listing of its images)."""
        return []

    def _entry(self, key: str) -> dict:
        entries = dict(self.archive_entries())
        if key not in entries:
            raise InputError(f"dataset {self.name}: no archive {key!r} configured (have {sorted(entries)})")
        return entries[key]

    def locate(self) -> dict[str, LocalPart]:
        """Per archive key, where a local copy holds it; ``{}`` without a local copy."""
        local = self.local_path()
        if local is None:
            return {}
        entries = self.archive_entries()
        if local.is_file():
            if len(entries) != 1:
                files = ", ".join(self.archive_file(e) for _, e in entries)
                raise InputError(
                    f"dataset {self.name}: dataset.local={local} is one file but this dataset needs "
                    f"{len(entries)} archives ({files}): point dataset.local at the folder holding "
                    f"them or their extracted folders"
                )
            return {entries[0][0]: LocalPart("archive", local)}
        parts, missing = {}, []
        marker = self.marker()
        for key, entry in entries:
            inner, filename = self.inner(key), self.archive_file(entry)
            if (local / inner).is_dir() and (marker is None or (local / inner / marker).exists()):
                parts[key] = LocalPart("folder", local / inner)
            elif len(entries) == 1 and marker is not None and (local / marker).exists():
                parts[key] = LocalPart("folder", local)
            elif (local / filename).is_file():
                parts[key] = LocalPart("archive", local / filename)
            else:
                missing.append(f"{inner}/" + (f" (with {marker})" if marker else "") + f" or {filename}")
        if missing:
            raise InputError(
                f"dataset {self.name}: dataset.local={local} holds neither the extracted data nor the "
                f"archive: expected {'; '.join(missing)} in it"
            )
        return parts

    def check_config(self) -> None:
        super().check_config()
        self.locate()

    def _verified(self, root, key: str, path: Path, *, progress: bool = False) -> tuple[bool, str, str]:
        """``(official, algorithm, digest)`` of the local archive ``path`` for ``key``; raises when it is not
        the official archive and ``cfg.unofficial`` is false. The file is only read."""
        algo, want = expected_checksum(self._entry(key), source=f"dataset {self.name}, archive {key!r}")
        got = cached_checksum(path, algo, self.directory(root) / CHECKSUM_CACHE, progress=progress)
        if got != want and not self.cfg.get("unofficial"):
            raise DownloadError(
                f"{path}: {algo} is {got}, the official {self.archive_file(self._entry(key))} "
                f"has {want} (dataset {self.name}); the file was left untouched: if it is a copy "
                f"you made on purpose (a subset, re-encoded, other split sizes), accept it with "
                f"dataset.unofficial=true"
            )
        return got == want, algo, got

    def verify_local(self, root: str | os.PathLike, *, progress: bool = False) -> None:
        for key, part in self.locate().items():
            if part.form == "archive":
                self._verified(root, key, part.path, progress=progress)

    def _extraction(self, root, key: str, official: bool, digest: str) -> Path:
        """Where a local archive is extracted: beside the downloads when official, else by its checksum."""
        return self.directory(root) / (key if official else f"copy-{digest[:12]}/{key}")

    def prepare(self, root: str | os.PathLike, offline: bool = False, *, progress: bool = True) -> None:
        self.check_config()
        parts = self.locate()
        for key, entry in self.archive_entries():
            part = parts.get(key)
            if part is None:
                prepare_archive(
                    entry,
                    self.directory(root),
                    key,
                    offline=self.is_offline(offline),
                    progress=progress,
                    keep_archive=bool(self.cfg.get("keep_archives", True)),
                    **(self.cfg.get("download") or {}),
                )
            elif part.form == "archive":
                official, _, digest = self._verified(root, key, part.path, progress=progress)
                target = self._extraction(root, key, official, digest)
                if not target.is_dir():
                    extract_archive(part.path, target, progress=progress)

    def data_dir(self, root: str | os.PathLike, key: str) -> Path:
        """The folder holding archive ``key``'s data: in the local copy, or where ``prepare`` extracted it."""
        part = self.locate().get(key)
        if part is not None and part.form == "folder":
            return part.path
        base = self.directory(root) / key
        if part is not None:
            official, _, digest = self._verified(root, key, part.path)
            base = self._extraction(root, key, official, digest)
        path = base / self.inner(key)
        if not path.exists():
            raise InputError(f"dataset {self.name}: {path} not found; run prepare (the prepare_data stage) first")
        return path

    def copy_identity(self, root: str | os.PathLike, split: str, images: ImageSet) -> dict:
        """``{form, path, checksum, matches_official}`` of the copy split ``split`` came from: the archive's
        checksum (``form`` "download" or "archive"), or for an extracted folder (``form`` "folder") a
        :func:`folder_checksum` of its images' names and sizes and its index files (``matches_official`` is
        then None: no published checksum exists for folders)."""
        name = self.split_name(split)
        key = self.split_key(name)
        part = self.locate().get(key)
        if part is None:
            algo, want = expected_checksum(self._entry(key), source=f"dataset {self.name}, archive {key!r}")
            return {
                "form": "download",
                "path": self._entry(key)["url"],
                "checksum": f"{algo}:{want}",
                "matches_official": True,
            }
        if part.form == "archive":
            official, algo, digest = self._verified(root, key, part.path)
            return {
                "form": "archive",
                "path": str(part.path.resolve()),
                "checksum": f"{algo}:{digest}",
                "matches_official": official,
            }
        checksum = folder_checksum(part.path, images.paths or (), self.index_files(part.path, name))
        return {"form": "folder", "path": str(part.path.resolve()), "checksum": checksum, "matches_official": None}


def group_mapping(groups: Mapping[str, Any], class_names: Sequence[str], dataset: str) -> np.ndarray:
    """``fine_to_coarse`` (int64, one coarse index per class) of a config's ``coarse_groups`` (coarse name ->
    its class names): every class in exactly one group."""
    index = {n: i for i, n in enumerate(class_names)}
    mapping = np.full(len(class_names), -1, dtype=np.int64)
    for g, members in enumerate(groups.values()):
        for member in members:
            if member not in index:
                raise InputError(
                    f"dataset {dataset}: coarse_groups names {member!r}, not a class ({list(class_names)})"
                )
            if mapping[index[member]] != -1:
                raise InputError(f"dataset {dataset}: class {member!r} is in two coarse_groups")
            mapping[index[member]] = g
    if (mapping < 0).any():
        missing = [class_names[i] for i in np.flatnonzero(mapping < 0)]
        raise InputError(f"dataset {dataset}: coarse_groups leave out classes {missing}")
    return mapping


def check_label_range(labels, k: int, where: str) -> None:
    """Raise InputError unless every label is in 0..k-1."""
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise InputError(f"{where}: labels outside 0..{k - 1} (min {labels.min()}, max {labels.max()})")


def scan_class_folders(split_dir: Path, *, progress: bool = True) -> list[tuple[str, list[str]]]:
    """``[(folder name, sorted image paths)]`` for every sub-folder of ``split_dir``, sorted by name.

    Hidden entries are ignored; a folder without images is an InputError.
    """
    if not split_dir.is_dir():
        raise InputError(f"{split_dir}: folder not found")
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    result = []
    for name in progress_bar(folders, desc=f"scan {split_dir.name}", unit="class", disable=not progress, leave=False):
        files = sorted(
            e.path for e in os.scandir(split_dir / name) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            raise InputError(f"{split_dir / name}: no images ({', '.join(IMAGE_SUFFIXES)})")
        result.append((name, files))
    return result
