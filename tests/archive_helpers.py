"""Test helpers: tiny archives in real on-disk formats and a loopback HTTP server with Range support."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import tarfile
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@lru_cache(maxsize=4)
def cifar_jpegs(tar_path: Path, per_class: int) -> dict[str, list[tuple[bytes, np.ndarray]]]:
    """The first ``per_class`` JPEGs of each class of the shared CIFAR-10 test images: (JPEG bytes, RGB pixels)."""
    out: dict[str, list[tuple[bytes, np.ndarray]]] = {c: [] for c in CIFAR10_CLASSES}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
            cls = member.name.split("/")[1]
            if len(out[cls]) < per_class:
                raw = tar.extractfile(member).read()
                pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
                out[cls].append((raw, pixels))
    assert all(len(v) == per_class for v in out.values()), "shared CIFAR-10 JPEGs incomplete"
    return out


def cifar_rows(pixels: list[np.ndarray]) -> np.ndarray:
    """CIFAR's row layout: 1024 red, then green, then blue values per image."""
    return np.stack([p.transpose(2, 0, 1).reshape(-1) for p in pixels]).astype(np.uint8)


def build_cifar10(jpegs, folder: Path, *, train_per_class: int = 5, test_per_class: int = 2) -> tuple[Path, dict]:
    """cifar-10-python.tar.gz in the official python format, from ``jpegs`` (see :func:`cifar_jpegs`): image j
    < ``train_per_class`` of each class goes into training batch j % 5, the next ``test_per_class`` of each
    class (class-major) into the test batch. Keys and strings are bytes, as the original Python-2 pickles give
    them. Returns the archive and ``{split: (pixels, labels)}`` in file order."""
    expect = {"train": ([], []), "test": ([], [])}
    files = {}
    for b in range(5):
        rows = [(j, c) for j in range(b, train_per_class, 5) for c in range(10)]
        pix = [jpegs[CIFAR10_CLASSES[c]][j][1] for j, c in rows]
        labels = [c for _, c in rows]
        expect["train"][0].extend(pix)
        expect["train"][1].extend(labels)
        batch = {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": labels,
            b"data": cifar_rows(pix),
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(len(rows))],
        }
        files[f"cifar-10-batches-py/data_batch_{b + 1}"] = pickle.dumps(batch, protocol=2)
    labels = [c for c in range(10) for _ in range(test_per_class)]
    pix = [jpegs[CIFAR10_CLASSES[c]][train_per_class + k][1] for c in range(10) for k in range(test_per_class)]
    expect["test"] = (pix, labels)
    files["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": labels,
            b"data": cifar_rows(pix),
            b"filenames": [f"t{i}.png".encode() for i in range(len(labels))],
        },
        protocol=2,
    )
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"num_cases_per_batch": 10, b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072},
        protocol=2,
    )
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return write_tar(folder / "cifar-10-python.tar.gz", files), expect


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    """A tar archive of ``{member name: bytes}`` (directories implied), with fixed metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def digest(path_or_bytes, algorithm: str = "md5") -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.new(algorithm, data).hexdigest()


class RangeServer:
    """Serves ``files`` ({name: bytes}) on 127.0.0.1 with HTTP Range support, in a thread.

    ``drops[name]`` is a list of byte counts: each of the next requests for ``name`` announces the full
    length but sends only that many bytes, then closes the connection (a cut transfer). ``log`` records
    ``(name, Range header or None, status, bytes sent)`` per request; ``ignore_range`` makes it answer 200.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.drops, self.log = dict(files), {}, []
        self.ignore_range = False  # True: answer every request with the whole file (200), as some servers do

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    def __enter__(self) -> "RangeServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                data = owner.files.get(name)
                if data is None:
                    owner.log.append((name, rng, 404, 0))
                    self.send_error(404)
                    return
                start, status = 0, 200
                if rng and not owner.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        owner.log.append((name, rng, 416, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                drops = owner.drops.get(name)
                if drops:
                    body = body[: drops.pop(0)]
                    self.close_connection = True
                owner.log.append((name, rng, status, len(body)))
                self.wfile.write(body)
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
