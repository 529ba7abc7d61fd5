"""Verified, resumable downloads (file:// and loopback HTTP) and safe, atomic extraction."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest
from archive_helpers import RangeServer, digest, write_tar

from l2h.data.download import DownloadError, expected_checksum, extract_archive, fetch, prepare_archive
from l2h.errors import InputError

FAST = {"progress": False, "backoff_s": 0.0, "timeout_s": 10.0}


@pytest.fixture
def archive(tmp_path) -> tuple[Path, bytes]:
    """A small tar.gz of incompressible data (so byte offsets matter), outside the download folder."""
    rng = __import__("numpy").random.default_rng(0)
    files = {"pkg/a.bin": rng.bytes(300_000), "pkg/sub/b.txt": b"hello\n"}
    path = write_tar(tmp_path / "src" / "pkg.tar.gz", files)
    return path, path.read_bytes()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_expected_checksum_forms():
    assert expected_checksum({"md5": "C58F30108F718F92721AF3B95E74349A"}, source="x") == (
        "md5",
        "c58f30108f718f92721af3b95e74349a",
    )
    assert expected_checksum({"sha256": "a" * 64}, source="x") == ("sha256", "a" * 64)
    for bad in ({}, {"md5": "a" * 32, "sha256": "b" * 64}, {"md5": "xyz"}, {"sha256": "a" * 32}):
        with pytest.raises(InputError):
            expected_checksum(bad, source="x")


def test_file_url_download_verified_and_renamed(tmp_path, archive):
    path, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    out = fetch(path.as_uri(), dest, checksum=("md5", digest(data)), **FAST)
    assert out == dest and dest.read_bytes() == data
    assert leftovers(dest.parent) == [".pkg.tar.gz.downloaded", "pkg.tar.gz"]  # the marker: ours to remove


def test_http_download_sha256(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    with RangeServer({"pkg.tar.gz": data}) as server:
        fetch(server.url("pkg.tar.gz"), dest, checksum=("sha256", digest(data, "sha256")), **FAST)
    assert dest.read_bytes() == data
    assert server.log == [("pkg.tar.gz", None, 200, len(data))]


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_checksum_mismatch_leaves_nothing(tmp_path, archive, scheme):
    path, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    with RangeServer({"pkg.tar.gz": data}) as server:
        url = path.as_uri() if scheme == "file" else server.url("pkg.tar.gz")
        with pytest.raises(DownloadError, match="checksum mismatch") as err:
            fetch(url, dest, checksum=("md5", "0" * 32), **FAST)
    assert str(dest) in str(err.value) and "removed" in str(err.value)
    assert leftovers(dest.parent) == []


def test_truncated_archive_is_rejected_and_removed(tmp_path, archive):
    """The server delivers a complete response that is a truncated archive: the published checksum catches it."""
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    with RangeServer({"pkg.tar.gz": data[: len(data) // 2]}) as server:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            prepare_archive({"url": server.url("pkg.tar.gz"), "md5": digest(data)}, dest.parent, "pkg", **FAST)
    assert leftovers(dest.parent) == []


def test_resume_from_partial_file_uses_range(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    dest.parent.mkdir()
    half = len(data) // 2
    (dest.parent / "pkg.tar.gz.part").write_bytes(data[:half])
    with RangeServer({"pkg.tar.gz": data}) as server:
        fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), **FAST)
    assert server.log == [("pkg.tar.gz", f"bytes={half}-", 206, len(data) - half)]
    assert dest.read_bytes() == data and leftovers(dest.parent) == [".pkg.tar.gz.downloaded", "pkg.tar.gz"]


def test_resume_from_partial_file_url(tmp_path, archive):
    path, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    dest.parent.mkdir()
    (dest.parent / "pkg.tar.gz.part").write_bytes(data[:1000])
    fetch(path.as_uri(), dest, checksum=("md5", digest(data)), **FAST)
    assert dest.read_bytes() == data


def test_cut_transfer_is_resumed_automatically(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    with RangeServer({"pkg.tar.gz": data}) as server:
        server.drops["pkg.tar.gz"] = [70_000, 50_000]
        fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), retries=3, **FAST)
    assert [(r, s) for _, r, s, _ in server.log] == [(None, 200), ("bytes=70000-", 206), ("bytes=120000-", 206)]
    assert dest.read_bytes() == data


def test_cut_transfer_keeps_part_then_resumes_on_next_run(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    part = dest.parent / "pkg.tar.gz.part"
    with RangeServer({"pkg.tar.gz": data}) as server:
        server.drops["pkg.tar.gz"] = [40_000, 40_000]
        with pytest.raises(DownloadError, match="run again to resume"):
            fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), retries=1, **FAST)
        assert part.stat().st_size == 80_000 and not dest.exists()
        fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), retries=1, **FAST)
    assert server.log[-1] == ("pkg.tar.gz", "bytes=80000-", 206, len(data) - 80_000)
    assert dest.read_bytes() == data and not part.exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    dest.parent.mkdir()
    (dest.parent / "pkg.tar.gz.part").write_bytes(data[:1000])
    with RangeServer({"pkg.tar.gz": data}) as server:
        server.ignore_range = True
        fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), **FAST)
    assert server.log == [("pkg.tar.gz", "bytes=1000-", 200, len(data))]
    assert dest.read_bytes() == data


def test_complete_part_file_answered_416_is_verified(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    dest.parent.mkdir()
    (dest.parent / "pkg.tar.gz.part").write_bytes(data)
    with RangeServer({"pkg.tar.gz": data}) as server:
        fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), **FAST)
    assert [s for _, _, s, _ in server.log] == [416]
    assert dest.read_bytes() == data


def test_corrupt_part_file_fails_and_is_removed(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    dest.parent.mkdir()
    (dest.parent / "pkg.tar.gz.part").write_bytes(b"\0" * 5000)
    with RangeServer({"pkg.tar.gz": data}) as server:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), **FAST)
    assert leftovers(dest.parent) == []


def test_http_error_is_clear(tmp_path):
    with RangeServer({}) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(server.url("missing.tar.gz"), tmp_path / "x.tar.gz", checksum=("md5", "0" * 32), **FAST)
    with pytest.raises(DownloadError, match="no such file"):
        fetch((tmp_path / "nope.tar.gz").as_uri(), tmp_path / "y.tar.gz", checksum=("md5", "0" * 32), **FAST)


def test_offline_missing_file_fails_without_network(tmp_path, archive):
    _, data = archive
    dest = tmp_path / "dl" / "pkg.tar.gz"
    with RangeServer({"pkg.tar.gz": data}) as server:
        start = time.perf_counter()
        with pytest.raises(DownloadError, match="offline") as err:
            fetch(server.url("pkg.tar.gz"), dest, checksum=("md5", digest(data)), offline=True, **FAST)
        assert time.perf_counter() - start < 1.0
    assert server.log == [] and str(dest) in str(err.value)
    dest.parent.mkdir()
    dest.write_bytes(data)  # a copy placed by hand is verified and used offline
    assert fetch("http://127.0.0.1:9/unreachable", dest, checksum=("md5", digest(data)), offline=True, **FAST) == dest


def test_prepare_archive_extracts_atomically_and_is_idempotent(tmp_path, archive):
    _, data = archive
    root = tmp_path / "data"
    entry = {"sha256": digest(data, "sha256")}
    with RangeServer({"pkg.tar.gz": data}) as server:
        entry["url"] = server.url("pkg.tar.gz")
        target = prepare_archive(entry, root, "pkg", keep_archive=False, **FAST)
        assert (target / "pkg" / "sub" / "b.txt").read_bytes() == b"hello\n"
        assert leftovers(root) == ["pkg"]  # archive removed, no temporary folder left
        start = time.perf_counter()
        assert prepare_archive(entry, root, "pkg", **FAST) == target
        assert time.perf_counter() - start < 0.1
    assert len(server.log) == 1


def test_placed_archive_is_never_removed(tmp_path, archive):
    """An archive someone put where the download goes (no download marker) stays, with keep_archive=False and
    when it cannot be extracted; the same archive downloaded by fetch is removed when it cannot be extracted."""
    _, data = archive
    cut = data[: len(data) // 2]
    placed = tmp_path / "placed" / "pkg.tar.gz"
    placed.parent.mkdir()
    placed.write_bytes(data)
    unreachable = "http://127.0.0.1:9/pkg.tar.gz"
    prepare_archive(
        {"url": unreachable, "md5": digest(data)}, placed.parent, "pkg", keep_archive=False, offline=True, **FAST
    )
    assert placed.read_bytes() == data and (placed.parent / "pkg" / "pkg" / "a.bin").is_file()
    placed.write_bytes(cut)
    with pytest.raises(DownloadError, match=r"damaged or truncated \(the file was left untouched\)$"):
        prepare_archive({"url": unreachable, "md5": digest(cut)}, placed.parent, "other", offline=True, **FAST)
    assert placed.read_bytes() == cut
    with RangeServer({"pkg.tar.gz": cut}) as server:
        with pytest.raises(DownloadError, match=r"\(the archive was removed\)$"):
            prepare_archive({"url": server.url("pkg.tar.gz"), "md5": digest(cut)}, tmp_path / "dl", "pkg", **FAST)
    assert leftovers(tmp_path / "dl") == []


def _tar_with(member: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("pkg/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def _fifo(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return info


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../evil.txt"),
        tarfile.TarInfo("pkg/../../evil.txt"),
        tarfile.TarInfo("/tmp/l2h-evil.txt"),
        _symlink("pkg/link", "../../evil.txt"),
        _symlink("pkg/abs", "/etc/passwd"),
        _hardlink("pkg/hard", "../x"),
        _fifo("pkg/fifo"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out", "fifo"],
)
def test_unsafe_members_are_rejected(tmp_path, member):
    data = _tar_with(member)
    src = tmp_path / "src" / "bad.tar.gz"
    src.parent.mkdir()
    src.write_bytes(data)
    root = tmp_path / "deep" / "data"
    with pytest.raises(DownloadError, match="unsafe member") as err:
        prepare_archive({"url": src.as_uri(), "md5": digest(data)}, root, "bad", **FAST)
    assert member.name in str(err.value)
    assert leftovers(root) == []  # no extracted folder, no temporary folder, archive removed
    assert not (tmp_path / "deep" / "evil.txt").exists() and not Path("/tmp/l2h-evil.txt").exists()


def test_symlink_inside_archive_is_allowed(tmp_path):
    data = _tar_with(_symlink("pkg/alias.txt", "ok.txt"))
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(data)
    out = extract_archive(archive, tmp_path / "out", progress=False)
    assert (out / "pkg" / "alias.txt").read_bytes() == b"ok"


def test_damaged_archive_extraction_leaves_nothing(tmp_path, archive):
    _, data = archive
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match="damaged or truncated"):
        extract_archive(bad, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["cut.tar.gz", "src"]


def test_extract_refuses_existing_target(tmp_path, archive):
    path, _ = archive
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match="already exists"):
        extract_archive(path, tmp_path / "out", progress=False)
    assert os.listdir(tmp_path / "out") == []
