"""Checksum-verified, resumable downloads and safe, atomic archive extraction.

A download is written to ``<dest>.part`` (resumed with an HTTP ``Range`` request when a previous transfer was cut
short), verified against the published md5/sha256 and only then renamed onto ``<dest>``, beside a marker file
``.<name>.downloaded`` that says this module wrote it. Only such files (and ``.part`` files) are ever removed
(when they fail verification or extraction, or once extracted with ``keep_archive=False``); a file someone else
placed is never modified or deleted. An archive is extracted member by member into a temporary folder beside
its target, refusing absolute paths, ``..`` components, links that leave the folder and special files; the
folder is renamed onto the target only when extraction completed, so the target either is complete or does
not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Mapping
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, url2pathname, urlopen

from l2h import __version__
from l2h.errors import InputError
from l2h.io import write_json
from l2h.progress import progress_bar

CHECKSUM_ALGORITHMS = {"md5": 32, "sha256": 64}  # algorithm -> hex digest length
CHUNK = 1 << 20
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class DownloadError(InputError):
    """A download, verification or extraction failed; the message says what to do."""


class _Interrupted(Exception):
    """A transfer ended early (network error or short body); the ``.part`` file is kept for a resume."""


def expected_checksum(entry: Mapping, *, source: str) -> tuple[str, str]:
    """``(algorithm, hex digest)`` from a mapping holding exactly one of the keys ``md5`` or ``sha256``."""
    found = [(algo, str(entry[algo]).strip().lower()) for algo in CHECKSUM_ALGORITHMS if entry.get(algo)]
    if len(found) != 1:
        raise InputError(f"{source}: give exactly one published checksum (md5 or sha256), found {len(found)}")
    algo, digest = found[0]
    if not re.fullmatch(f"[0-9a-f]{{{CHECKSUM_ALGORITHMS[algo]}}}", digest):
        raise InputError(f"{source}: {algo} {digest!r} is not a {CHECKSUM_ALGORITHMS[algo]}-digit hex digest")
    return algo, digest


def _bytes_bar(total: int | None, desc: str, show: bool, initial: int = 0):
    """A progress bar over ``total`` bytes (a download, or one read of a file)."""
    return progress_bar(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=not show,
        leave=False,
    )


def file_checksum(path: str | os.PathLike, algorithm: str, *, progress: bool = False) -> str:
    """Hex digest of a file, read in chunks."""
    path = Path(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh, _bytes_bar(path.stat().st_size, f"verify {path.name}", progress) as bar:
        while block := fh.read(CHUNK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def cached_checksum(
    path: str | os.PathLike, algorithm: str, cache: str | os.PathLike, *, progress: bool = False
) -> str:
    """Hex digest of a file, remembered in the JSON file ``cache`` under the file's resolved path, size and
    modification time (a file that keeps all three is not read again). The cache is best effort: when it
    cannot be written the digest is still returned."""
    path, cache = Path(path), Path(cache)
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        entries = json.loads(cache.read_text())
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    key = str(path.resolve())
    entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
    if {k: entry.get(k) for k in stamp} == stamp and isinstance(entry.get(algorithm), str):
        return entry[algorithm]
    digest = file_checksum(path, algorithm, progress=progress)
    entries[key] = {**(entry if {k: entry.get(k) for k in stamp} == stamp else {}), **stamp, algorithm: digest}
    try:
        write_json(cache, entries)
    except OSError:
        pass
    return digest


def download_marker(path: str | os.PathLike) -> Path:
    """The marker file that says ``path`` was downloaded by :func:`fetch` (so it may be removed)."""
    path = Path(path)
    return path.with_name(f".{path.name}.downloaded")


def remove_download(path: Path) -> bool:
    """Remove ``path`` if :func:`fetch` downloaded it (and its marker); a file placed by someone else stays.
    True when it was removed."""
    marker = download_marker(path)
    if not marker.is_file():
        return False
    path.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    return True


def verify_file(
    path: Path, checksum: tuple[str, str], *, progress: bool = False, remove: bool = False, offline: bool = False
) -> None:
    """Check ``path`` against ``(algorithm, digest)`` and raise DownloadError on a mismatch, removing the file
    first only when ``remove`` is true (a transfer's own ``.part`` file). ``offline`` adapts the advice."""
    algo, want = checksum
    got = file_checksum(path, algo, progress=progress)
    if got == want:
        return
    if remove:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{path}: {algo} checksum mismatch (expected {want}, got {got}); the download was "
            f"damaged or truncated and has been removed: run again to download it afresh"
        )
    fix = "replace it by the official file" if offline else "remove it to download it afresh"
    raise DownloadError(
        f"{path}: {algo} checksum mismatch (expected {want}, found {got}); the file was left "
        f"untouched: {fix}, or, if it is a copy you made on purpose, use it as it is with "
        f"dataset.local={path} dataset.unofficial=true"
    )


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    checksum: tuple[str, str],
    offline: bool = False,
    progress: bool = True,
    retries: int = 3,
    timeout_s: float = 60.0,
    backoff_s: float = 1.0,
) -> Path:
    """Make ``dest`` a verified copy of ``url`` (http, https or file) and return its path.

    An existing ``dest`` is verified, not downloaded again, and never removed (a mismatch is a DownloadError).
    ``offline=True`` turns a missing ``dest`` into an immediate DownloadError. A transfer cut short is resumed
    from its ``.part`` file up to ``retries`` times (waiting ``backoff_s * 2**attempt`` seconds); after that the
    ``.part`` file stays for a later resume. A completed download gets a marker (:func:`download_marker`).
    """
    dest = Path(dest)
    if dest.is_file():
        verify_file(dest, checksum, progress=progress, offline=offline)
        return dest
    if offline:
        raise DownloadError(
            f"{dest} is missing and offline mode forbids downloading it from {url}; point "
            f"dataset.local at your copy of {dest.name} ({checksum[0]} {checksum[1]}) or run "
            f"with dataset.offline=false"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, desc=dest.name, progress=progress, timeout_s=timeout_s)
            break
        except _Interrupted as exc:
            if attempt == retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"download of {url} failed {retries + 1} times (last: {exc}); {kept} bytes kept "
                    f"in {part}: run again to resume"
                ) from exc
            time.sleep(backoff_s * 2**attempt)
    verify_file(part, checksum, progress=progress, remove=True)
    download_marker(dest).touch()
    os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, *, desc: str, progress: bool, timeout_s: float) -> None:
    """Append the rest of ``url`` to ``part``; raise _Interrupted when the body ends before its announced size."""
    offset = part.stat().st_size if part.exists() else 0
    stream, start, total = _open(url, offset, timeout_s)
    if stream is None:  # the server says the range starts past the end: ``part`` already holds everything
        return
    try:
        with (
            stream,
            open(part, "ab" if start else "wb") as out,
            _bytes_bar(total, desc, progress, initial=start) as bar,
        ):
            while block := stream.read(CHUNK):
                out.write(block)
                bar.update(len(block))
    except (OSError, HTTPException) as exc:
        raise _Interrupted(f"{type(exc).__name__}: {exc}") from exc
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"received {size} of {total} bytes")
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(f"{url}: received {size} bytes but the server announced {total}; partial file removed")


def _open(url: str, offset: int, timeout_s: float) -> tuple[BinaryIO | None, int, int | None]:
    """Open ``url`` at byte ``offset``: ``(stream, start, total size or None)``; ``start`` is 0 when the source
    cannot resume (the caller then starts the file afresh); ``stream`` is None when nothing is left to read."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(url2pathname(parsed.path))
        if not path.is_file():
            raise DownloadError(f"{url}: no such file")
        size = path.stat().st_size
        start = offset if offset <= size else 0
        fh = open(path, "rb")
        fh.seek(start)
        return fh, start, size
    if parsed.scheme not in ("http", "https"):
        raise DownloadError(f"{url}: unsupported URL scheme {parsed.scheme!r} (use http, https or file)")
    headers = {"User-Agent": f"l2h/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout_s)
    except HTTPError as exc:
        if exc.code == 416 and offset:
            return None, offset, offset
        if exc.code >= 500:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (URLError, OSError, HTTPException) as exc:
        raise _Interrupted(f"{type(exc).__name__}: {exc}") from exc
    length = response.headers.get("Content-Length")
    length = int(length) if length is not None else None
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            response.close()
            raise DownloadError(
                f"{url}: the server answered the range request for byte {offset} with "
                f"Content-Range {response.headers.get('Content-Range')!r}"
            )
        total = int(match.group(3)) if match.group(3) != "*" else None
        return response, offset, total
    return response, 0, length  # 200: the whole file, from the start


class _ProgressReader:
    """A read-only file wrapper that advances a progress bar by the bytes read."""

    def __init__(self, fh: BinaryIO, bar) -> None:
        self._fh, self._bar = fh, bar

    def read(self, size: int = -1) -> bytes:
        block = self._fh.read(size)
        self._bar.update(len(block))
        return block


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "'..' in path"
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            return f"link to absolute path {member.linkname!r}"
        base = PurePosixPath(*parts[:-1]) if member.issym() else PurePosixPath()
        if os.path.normpath(str(base / link)).split(os.sep)[0] == "..":
            return f"link {member.linkname!r} leaves the archive folder"
    elif not (member.isfile() or member.isdir()):
        return "special file (device, fifo)"
    return None


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True) -> Path:
    """Extract a tar archive (any compression) into the new folder ``dest``, safely and atomically.

    Raises DownloadError, leaving nothing behind, on an unsafe member or a damaged or truncated archive.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise DownloadError(f"{dest}: already exists; remove it to extract {archive.name} again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        with open(archive, "rb") as raw, _bytes_bar(archive.stat().st_size, f"extract {archive.name}", progress) as bar:
            with tarfile.open(fileobj=_ProgressReader(raw, bar), mode="r|*") as tar:
                for member in tar:
                    reason = _unsafe_reason(member)
                    if reason is not None:
                        raise DownloadError(f"{archive}: unsafe member {member.name!r} ({reason}); refusing to extract")
                    tar.extract(member, tmp, **_TAR_FILTER)
        os.replace(tmp, dest)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DownloadError(
            f"{archive}: cannot extract ({type(exc).__name__}: {exc}); the archive is damaged or truncated"
        ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def archive_filename(url: str) -> str:
    """The file name of an archive URL (its last path component)."""
    name = PurePosixPath(urlparse(url).path).name
    if not name:
        raise InputError(f"{url}: the URL does not end in a file name")
    return name


def prepare_archive(
    entry: Mapping,
    directory: str | os.PathLike,
    key: str,
    *,
    offline: bool = False,
    progress: bool = True,
    keep_archive: bool = True,
    **download: float,
) -> Path:
    """Download, verify and extract one archive ``entry`` (``url`` + ``md5``/``sha256``) into ``directory/key``.

    A fast no-op when ``directory/key`` exists (extraction is atomic, so it is complete). The archive is kept
    beside it unless ``keep_archive`` is false; an archive that fails extraction is removed. Only archives
    that :func:`fetch` downloaded are ever removed: one placed there by hand stays. ``download`` passes
    ``retries``, ``timeout_s`` and ``backoff_s`` to :func:`fetch`.
    """
    directory = Path(directory)
    target = directory / key
    if target.is_dir():
        return target
    if not entry.get("url"):
        raise InputError(f"archive {key!r}: no url given")
    url = str(entry["url"])
    archive = directory / archive_filename(url)
    fetch(
        url,
        archive,
        checksum=expected_checksum(entry, source=f"archive {key!r}"),
        offline=offline,
        progress=progress,
        **download,
    )
    try:
        extract_archive(archive, target, progress=progress)
    except DownloadError as exc:
        removed = remove_download(archive)
        raise DownloadError(
            f"{exc} ({'the archive was removed' if removed else 'the file was left untouched'})"
        ) from exc
    if not keep_archive:
        remove_download(archive)
    return target
