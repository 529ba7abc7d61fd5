"""The feature cache: ``{out_dir}/{split}.npy`` (float32 N×d) + ``{split}.meta.json``, rebuilt whenever the
meta does not match the backbone config, the images, or the array on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2h.errors import InputError
from l2h.features.backbone import config_dict, config_digest
from l2h.features.extract import extract_features, resolve_device
from l2h.features.registry import build_backbone
from l2h.io import atomic_path, provenance, sha256_file, write_json

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_MATCH_KEYS = ("format", "backbone", "config_digest", "dataset", "dtype")


@dataclass(frozen=True)
class CachedFeatures:
    """Where the features are, their meta record, and whether the cache was reused ('hit'), built anew
    ('miss') or rebuilt because it did not match ('rebuilt')."""

    path: Path
    meta_path: Path
    meta: dict
    status: str

    def load(self, mmap: bool = True) -> np.ndarray:
        return np.load(self.path, mmap_mode="r" if mmap else None)


def images_identity(images: Sequence, dataset: Mapping | None = None) -> dict:
    """What identifies an image set: its size, a SHA-256 over its labels and pixels (or file paths), the
    checksum of the dataset copy it was read from (``info["copy"]``, see ``l2h.data``) and the caller's
    ``dataset`` description (e.g. name and split)."""
    digest = hashlib.sha256()
    labels = getattr(images, "labels", None)
    pixels, paths = getattr(images, "pixels", None), getattr(images, "paths", None)
    if labels is None or (pixels is None and paths is None):
        raise InputError("extract_to_cache: `images` must be an l2h ImageSet (labels plus pixels or paths)")
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    if pixels is not None:
        pixels = np.ascontiguousarray(pixels)
        digest.update(f"{pixels.dtype}{pixels.shape}".encode())
        for start in range(0, len(pixels), 4096):
            digest.update(pixels[start : start + 4096].tobytes())
    else:
        digest.update("\n".join(str(p) for p in paths).encode())
    copy = (getattr(images, "info", None) or {}).get("copy") or {}
    return {
        **(dict(dataset) if dataset else {}),
        **({"copy": copy["checksum"]} if copy.get("checksum") else {}),
        "n": len(labels),
        "content_sha256": digest.hexdigest(),
    }


def _expected(cfg: dict, identity: dict) -> dict:
    return {
        "format": CACHE_FORMAT,
        "backbone": cfg.get("name"),
        "config_digest": config_digest(cfg),
        "dataset": identity,
        "dtype": "float32",
    }


def _mismatch(npy: Path, meta_path: Path, expected: dict) -> str | None:
    """Why the cache cannot be reused, or None if it can."""
    if not npy.is_file() or not meta_path.is_file():
        return "missing"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"unreadable meta ({exc})"
    for key in _MATCH_KEYS:
        if meta.get(key) != expected[key]:
            return f"meta '{key}' differs"
    if sha256_file(npy) != meta.get("sha256"):
        return "array checksum differs from meta"
    arr = np.load(npy, mmap_mode="r")
    if arr.dtype != np.float32 or arr.shape != (meta.get("n"), meta.get("dim")):
        return "array shape/dtype differs from meta"
    return None


def _probe_dim(backbone, image, device) -> int:
    """Feature dimension of a backbone whose dim depends on the input (pixels at native size)."""
    import torch

    with torch.inference_mode():
        return int(backbone.encode(backbone.transform(image)[None].to(device)).shape[1])


def extract_to_cache(
    backbone_cfg: Mapping | Any,
    images: Sequence,
    out_dir: str | os.PathLike,
    split: str,
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str = "auto",
    precision: str | None = None,
    progress: bool = True,
    dataset: Mapping | None = None,
    force: bool = False,
) -> CachedFeatures:
    """Features of ``images`` under ``backbone_cfg``, read from ``{out_dir}/{split}.npy`` when its meta
    matches, else (re)computed and written atomically (array first, then meta with the array's SHA-256).

    ``batch_size``, ``num_workers`` and ``precision`` default to the config's values.
    """
    cfg = config_dict(backbone_cfg)
    out_dir = Path(out_dir)
    npy, meta_path = out_dir / f"{split}.npy", out_dir / f"{split}.meta.json"
    expected = _expected(cfg, images_identity(images, dataset))
    reason = "forced" if force else _mismatch(npy, meta_path, expected)
    if reason is None:
        return CachedFeatures(npy, meta_path, json.loads(meta_path.read_text()), "hit")
    status = "miss" if reason == "missing" else "rebuilt"
    if status == "rebuilt":
        log.warning("feature cache %s is stale (%s): rebuilding", npy, reason)
    meta_path.unlink(missing_ok=True)

    dev = resolve_device(device)
    backbone = build_backbone(cfg, device=str(dev))
    dim = backbone.dim or _probe_dim(backbone, images[0], dev)
    precision = precision or cfg.get("precision", "auto")
    with atomic_path(npy) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(images), dim))
        extract_features(
            backbone,
            images,
            batch_size=int(batch_size or cfg.get("batch_size", 256)),
            num_workers=int(cfg.get("num_workers", 0) if num_workers is None else num_workers),
            device=dev,
            precision=precision,
            progress=progress,
            out=out,
        )
        out.flush()
        del out
    meta = {
        **backbone.meta(),
        **expected,
        "n": len(images),
        "dim": dim,
        "split": split,
        "sha256": sha256_file(npy),
        "device": str(dev),
        "precision": precision,
        "provenance": provenance(cfg),
    }
    write_json(meta_path, meta)
    return CachedFeatures(npy, meta_path, meta, status)
