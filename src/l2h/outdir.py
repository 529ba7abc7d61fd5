"""The output folder of ``l2h tree``: checked before any work, replaced as a whole, never losing a user's file.

``--out`` must be new, empty, or an earlier ``l2h tree`` output, recognised by the marker file
:data:`MARKER` that every run writes. The new outputs are written into a temporary sibling folder, which is
then exchanged with the old folder in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two
renames), so an interrupted run leaves either the old set of outputs or the new one. Files of the user's in
an earlier output folder are kept: hard-linked into the new folder before the exchange. Only files that l2h
writes (:data:`OWN_FILES`) are ever deleted.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from l2h import __version__
from l2h.errors import InputError
from l2h.io import write_json

MARKER = ".l2h-tree"
# files that l2h writes into a tree folder: l2h tree's outputs, l2h compare's result and the marker
OWN_FILES = frozenset(
    {
        "tree.json",
        "linkage.npy",
        "tree.nwk",
        "metrics.json",
        "levels.json",
        "dendrogram.png",
        "provenance.json",
        "tree.html",
        "comparison.json",
        MARKER,
    }
)


def check_out_dir(out: str | os.PathLike) -> Path:
    """``out`` as a Path if it may receive l2h tree's outputs, else InputError (one line).

    Allowed: a path that does not exist yet (below existing folders), an empty folder, or an earlier output
    (holds :data:`MARKER`) whose other entries are regular files.
    """
    text = os.fspath(out)
    if not text.strip():
        raise InputError("--out: the output folder name is empty; name a new or empty folder")
    path = Path(text)
    if path.is_symlink() and path.is_dir():
        path = Path(os.path.realpath(path))
    if not path.exists():
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise InputError(
                        f"{parent}: is not a directory, so the output folder {path} cannot be created there"
                    )
                break
        return path
    if not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory")
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the output folder ({exc.strerror})") from None
    if entries and MARKER not in entries:
        raise InputError(
            f"{path}: the folder is not empty and is not an l2h tree output (no {MARKER} file); "
            "choose a new or empty folder, so that none of your files is replaced"
        )
    others = [name for name in entries if name not in OWN_FILES and not _regular(path / name)]
    if others:
        raise InputError(
            f"{path / others[0]}: not a regular file, and l2h tree replaces its output folder as a "
            "whole; move it elsewhere or choose another --out"
        )
    return path


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def replace_outputs(out: Path, write_all: Callable[[Path], None]) -> Path | None:
    """Run ``write_all(folder)`` on a new temporary folder beside ``out``, then make it ``out``.

    Any OSError (read-only or full disk, missing permissions) becomes a one-line InputError, and the
    old outputs stay as they were. Returns None, or the hidden folder that still holds the old outputs
    when a file of unknown origin appeared in ``out`` during the run (it is never deleted).
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({_reason(exc)})") from None
    swapped = False
    try:
        write_all(tmp)
        written = sorted(os.listdir(tmp))
        write_json(tmp / MARKER, {"written_by": "l2h tree", "version": __version__, "outputs": written})
        os.chmod(tmp, 0o755)
        if not out.exists():
            os.rename(tmp, out)
            return None
        kept = [name for name in os.listdir(out) if name not in OWN_FILES]
        for name in kept:  # the user's files: a second link in the new folder, nothing moves
            os.link(out / name, tmp / name, follow_symlinks=False)
        _exchange(tmp, out)
        swapped = True
    except OSError as exc:
        raise InputError(
            f"{out}: cannot write the outputs ({_reason(exc)}); the previous outputs are unchanged"
        ) from None
    finally:
        if not swapped:
            shutil.rmtree(tmp, ignore_errors=True)  # only our new files and second links of the user's
    # ``tmp`` now holds the old folder: remove what l2h wrote there and the links kept in ``out``
    for name in os.listdir(tmp):
        if name in OWN_FILES or name in kept:
            (tmp / name).unlink()
    try:
        tmp.rmdir()
    except OSError:
        return tmp
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _exchange(new: Path, old: Path) -> None:
    """Swap two folders: atomically with renameat2(RENAME_EXCHANGE) where the kernel and libc have it,
    else by two renames (a crash between them leaves the old folder at ``new``'s name)."""
    rename_exchange, at_fdcwd = 2, -100
    call = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if call is not None:
        if call(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(old), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(old))
    parked = new.with_name(new.name + ".old")
    os.rename(old, parked)
    os.rename(new, old)
    os.rename(parked, new)
