"""Batched, mixed-precision feature extraction through a DataLoader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from l2h.errors import InputError
from l2h.features.backbone import Backbone
from l2h.progress import progress_bar

if TYPE_CHECKING:  # torch is imported inside the functions: `import l2h.features` stays fast
    import torch
    from torch.utils.data import DataLoader

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class TransformedImages:
    """Map-style dataset: ``images[i]`` (a PIL image) passed through ``transform``; picklable for DataLoader
    workers."""

    def __init__(self, images: Sequence, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None = plain fp32.

    'auto' = bf16/fp16 on CUDA, fp32 on CPU."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if precision == "fp16" else torch.bfloat16


def make_loader(
    backbone: Backbone, images: Sequence, *, batch_size: int, num_workers: int, device: torch.device
) -> DataLoader:
    """The DataLoader used by :func:`extract_features` (ordered; pinned memory on CUDA)."""
    from torch.utils.data import DataLoader

    return DataLoader(
        TransformedImages(images, backbone.transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=stack_images,
    )


def stack_images(batch: list[torch.Tensor]) -> torch.Tensor:
    """PyTorch's default collation (in shared memory inside workers), after checking that the transformed
    images have one shape: images whose tensors differ in shape are an InputError."""
    from torch.utils.data import default_collate

    _check_shape(batch[0].shape, {tuple(t.shape) for t in batch})
    return default_collate(batch)


def _check_shape(first: Sequence[int], shapes: set[tuple[int, ...]]) -> None:
    others = sorted(s for s in shapes if s != tuple(first))
    if others:
        raise InputError(
            f"extract_features: the preprocessed images differ in shape ({tuple(first)} and "
            f"{others[0]}): images of different sizes need a fixed size (set backbone.image_size)"
        )


def extract_features(
    backbone: Backbone,
    images: Sequence,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    precision: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Encode every image of ``images`` (a sequence of PIL images, e.g. an ImageSet) → float32 (N, d).

    Runs under ``torch.inference_mode`` with autocast on CUDA (``precision``); rows are in input order.
    ``out`` (e.g. a ``np.memmap`` of shape (N, d)) receives the rows instead of a new array.
    """
    import torch

    n = len(images)
    if n == 0:
        raise InputError("extract_features: the image set is empty")
    if batch_size < 1 or num_workers < 0:
        raise InputError(
            f"extract_features: batch_size must be ≥ 1 and num_workers ≥ 0 (got {batch_size}, {num_workers})"
        )
    dev = resolve_device(device)
    amp = autocast_dtype(precision, dev)
    loader = make_loader(backbone, images, batch_size=batch_size, num_workers=num_workers, device=dev)
    backbone.to(dev)
    pos, shape = 0, None
    with (
        torch.inference_mode(),
        progress_bar(total=n, unit="img", desc=f"features[{backbone.name}]", disable=not progress) as bar,
    ):
        for batch in loader:
            shape = shape or tuple(batch.shape[1:])
            _check_shape(shape, {tuple(batch.shape[1:])})
            batch = batch.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                feats = backbone.encode(batch)
            feats = feats.float().cpu().numpy()
            if pos == 0:
                out = _output(out, n, feats.shape[1])
            out[pos : pos + len(feats)] = feats
            pos += len(feats)
            bar.update(len(feats))
    return out


def _output(out: Any, n: int, dim: int) -> np.ndarray:
    """A new float32 (n, dim) array, or the caller's ``out`` once checked to be one."""
    if out is None:
        return np.empty((n, dim), dtype=np.float32)
    if out.shape != (n, dim) or out.dtype != np.float32:
        raise InputError(
            f"extract_features: `out` must be float32 of shape ({n}, {dim}), got {out.dtype} {tuple(out.shape)}"
        )
    return out
