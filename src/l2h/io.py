"""File I/O shared by every stage: atomic writes, checksums and provenance records."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from l2h.errors import InputError
from l2h.validation import check_labels

PROVENANCE_PACKAGES = (
    "l2h",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "torchvision",
    "open-clip-torch",
    "timm",
    "hydra-core",
    "omegaconf",
    "snakemake",
    "clustpy",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On any exception the temporary file is removed, so ``path`` is either the complete new
    file or untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy scalars and arrays and paths converted) to ``path`` atomically.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.json"
    >>> write_json(path, {"k": np.int64(3), "scores": np.array([0.5, 1.0])})
    >>> json.loads(path.read_text())
    {'k': 3, 'scores': [0.5, 1.0]}
    """
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_npy(path: str | os.PathLike, array: ArrayLike) -> None:
    """Write ``array`` as a ``.npy`` file (no pickles) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (works on files larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """``{"python": version, package: version}`` of the installed ones among ``names``."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def format_run_info(run_info: dict[str, Any]) -> str:
    """One log line for how a run went (``run_info``: timings, resumption), e.g. ``train_time_s=12.3, steps_run=300``;
    such values are logged, never written to outputs that must be identical when a job is re-run."""
    return ", ".join(f"{key}={val:.3g}" if isinstance(val, float) else f"{key}={val}" for key, val in run_info.items())


def provenance(
    config: Any = None,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    checksums: dict[str, str] | None = None,
    **extra: Any,
) -> dict:
    """A deterministic provenance record: resolved config, package versions, input checksums
    (``checksums``: already computed ``{path: sha256}``; else each of ``inputs`` is hashed).

    No timestamps or host names, so the same run twice gives byte-identical records.
    """
    record: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "config": config,
        "packages": package_versions(),
        "inputs": dict(checksums) if checksums is not None else {str(p): sha256_file(p) for p in inputs},
    }
    record.update(extra)
    return record


def write_provenance(
    path: str | os.PathLike, config: Any = None, inputs: Iterable[str | os.PathLike] = (), **extra: Any
) -> None:
    """Write :func:`provenance` of the arguments to ``path`` (JSON, atomically)."""
    write_json(path, provenance(config, inputs, **extra))


ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".csv")


def load_array(path: str | os.PathLike, *, key: str | None = None, mmap: bool = True) -> np.ndarray:
    """Read one numeric array from ``.npy`` (memory-mapped when ``mmap``), ``.npz``, ``.pt``/``.pth``
    (a tensor, or a dict of tensors picked by ``key``) or ``.csv`` (numbers, optional header row).

    ``key`` names the array in a multi-array file; it may be left out when the file holds one.
    Any problem (missing or corrupt file, unknown key or suffix) raises InputError naming the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise InputError(f"{path}: unsupported file type {path.suffix!r} (expected one of {', '.join(ARRAY_SUFFIXES)})")
    if not path.is_file():
        raise InputError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if key is not None and suffix in (".npy", ".csv"):
        raise InputError(f"{path}: a {suffix} file holds one array, so no key can be given (got {key!r})")
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return archive[_pick_key(path, key, archive.files)]
        if suffix == ".csv":
            return _load_csv(path)
        return _load_torch(path, key)
    except InputError:
        raise
    except Exception as exc:  # numpy, zipfile, pickle and torch each raise their own types
        raise InputError(f"{path}: cannot read {suffix} file ({_one_line(exc)})") from exc


def load_labels(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Read a label per point as a 1-D int64 array (a one-column or one-row table is flattened)."""
    path = Path(path)
    labels = np.asarray(load_array(path, key=key, mmap=False))
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise InputError(f"{path}: expected one label per point (a 1-D array), got shape {labels.shape}")
    return check_labels(labels, source=str(path), allow_negative=True)


def _pick_key(path: Path, key: str | None, keys: list[str]) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        raise InputError(f"{path}: holds {len(keys)} arrays, choose one with a key: {', '.join(keys) or '(none)'}")
    if key not in keys:
        raise InputError(f"{path}: no array named {key!r}; available keys: {', '.join(keys) or '(none)'}")
    return key


def _load_csv(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not part of the first field
        first = fh.readline()
    if not first.strip():
        raise InputError(f"{path}: empty CSV file")
    try:
        [float(field) for field in first.split(",")]
        header = 0
    except ValueError:
        header = 1
    try:
        with warnings.catch_warnings():  # an empty table is reported below, not as a warning
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, delimiter=",", skiprows=header, ndmin=2, dtype=np.float64, encoding="utf-8-sig")
    except ValueError as exc:
        raise InputError(f"{path}: not a numeric CSV table ({_one_line(exc)})") from exc
    if table.size == 0:
        raise InputError(f"{path}: CSV file has a header but no rows")
    return table


def _load_torch(path: Path, key: str | None) -> np.ndarray:
    import torch  # heavy; only needed for .pt files

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, torch.Tensor):
        if key is not None:
            raise InputError(f"{path}: holds a single tensor, so no key can be given (got {key!r})")
        tensor = obj
    elif isinstance(obj, dict):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        tensor = tensors[_pick_key(path, key, list(tensors))]
    else:
        raise InputError(f"{path}: expected a tensor or a dict of tensors, got {type(obj).__name__}")
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
