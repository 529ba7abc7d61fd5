"""Is a pipeline file intact? Checksums every stage records for its outputs, cheap structural checks, and
the quarantine that takes a corrupt file out of the way so that the next run rebuilds it.

Every stage records ``outputs: {name: {sha256, bytes}}`` in its ``<record>.provenance.json``. A stage
verifies each input against the record of the stage that wrote it before using it (full SHA-256); the plan,
before any job starts, checks every existing output cheaply (its size against the record, and its structure:
an ``.npy`` header that matches the file's length, JSON that parses, ...). A corrupt file under the results
folder is never deleted: it is moved to ``<results>/.quarantine/<time>/`` with one line saying so.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from l2h.errors import InputError
from l2h.io import sha256_file

QUARANTINE = ".quarantine"
_PNG = b"\x89PNG\r\n\x1a\n"


def output_record(folder: Path) -> dict[str, dict[str, object]]:
    """``{name: {"sha256": ..., "bytes": ...}}`` of every file in ``folder`` (a job's staged outputs)."""
    return {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir()) if p.is_file()
    }


def recorded(path: Path) -> dict[str, object] | None:
    """What the stage that wrote ``path`` recorded about it (``sha256``, ``bytes``), or None."""
    return _records(str(path.parent.resolve()), _mtimes(path.parent)).get(path.name)


def _mtimes(folder: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.provenance.json")))


@lru_cache(maxsize=256)
def _records(folder: str, _stamp: tuple) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for prov in sorted(Path(folder).glob("*.provenance.json")):
        try:
            outputs = json.loads(prov.read_text(encoding="utf-8")).get("outputs") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(outputs, dict):
            out.update({name: rec for name, rec in outputs.items() if isinstance(rec, dict)})
    return out


def structure_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a complete file of its type (None when it looks complete); reads little."""
    try:
        size = path.stat().st_size
        suffix = path.suffix.lower()
        if suffix == ".npy":
            import numpy as np

            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)  # the header only
                offset = fh.tell()
            if dtype.hasobject:
                return "holds Python objects"
            expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            return None if size == expected else f"{size} bytes where its header needs {expected}"
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            return None if bad is None else f"member {bad} is damaged"
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
            return None
        if suffix == ".png":
            with open(path, "rb") as fh:
                head = fh.read(8)
                fh.seek(max(0, size - 12))
                tail = fh.read()
            return None if head == _PNG and b"IEND" in tail else "not a complete PNG image"
        if suffix == ".nwk":
            return None if path.read_text(encoding="utf-8").rstrip().endswith(";") else "not a complete Newick tree"
        return None if size > 0 else "empty"
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
        return f"unreadable ({' '.join(str(exc).split()) or type(exc).__name__})"


def problem(path: Path, *, full: bool = False) -> str | None:
    """Why ``path`` is corrupt, or None: its size (and with ``full``, its SHA-256) against what the stage that
    wrote it recorded, then its structure."""
    record = recorded(path)
    if record is not None:
        size = path.stat().st_size
        if record.get("bytes") is not None and size != record["bytes"]:
            return f"{size} bytes where the stage that wrote it recorded {record['bytes']}"
        if full and record.get("sha256") and sha256_file(path) != record["sha256"]:
            return "its SHA-256 differs from the one the stage that wrote it recorded"
    return structure_problem(path)


def quarantine(path: Path, results: Path) -> Path | None:
    """Move a corrupt file under ``results`` to ``results/.quarantine/<time>/<its path>``; return where it went
    (None for a file outside ``results``, which is never ours to move)."""
    try:
        rel = path.resolve().relative_to(results.resolve())
    except ValueError:
        return None
    dest = results / QUARANTINE / time.strftime("%Y%m%dT%H%M%S") / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest = dest.with_name(f"{dest.name}.{time.time_ns()}")
    shutil.move(str(path), dest)
    return dest


def verify_inputs(files: Iterable[str], *, results: Path) -> dict[str, str]:
    """Check every input file of a job before use; return ``{path: sha256}``.

    A missing file, or one whose SHA-256 or structure is not what the stage that wrote it recorded, stops
    the job with one line; a corrupt one under ``results`` is first moved to the quarantine, so that the
    same command, run again, rebuilds it.
    """
    out = {}
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise InputError(f"{path}: missing; run the same command again: the pipeline rebuilds missing files")
        record = recorded(path)
        digest = sha256_file(path)
        why = None
        if record is not None and record.get("sha256") and digest != record["sha256"]:
            why = "its SHA-256 differs from the one the stage that wrote it recorded"
        why = why or structure_problem(path)
        if why:
            moved = quarantine(path, results) if record is not None else None
            remedy = (
                f"moved to {moved}; run the same command again to rebuild it"
                if moved
                else "replace or delete it, then run again"
            )
            raise InputError(f"{path}: corrupt ({why}); {remedy}")
        out[str(path)] = digest
    return out


def corrupt_outputs(paths: Iterable[str]) -> list[tuple[Path, str]]:
    """The existing files among ``paths`` that are corrupt (cheap checks), with the reason."""
    out = []
    for name in paths:
        path = Path(name)
        if path.is_file():
            why = problem(path)
            if why:
                out.append((path, why))
    return out
