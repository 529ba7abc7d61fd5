"""Torch helpers shared by the trained clusterers (TURTLE, TEMI): device choice, initialisation,
weight normalisation and resumable checkpoints."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from l2h.errors import InputError
from l2h.io import atomic_path


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; otherwise the named torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available")
    return device


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float array as a tensor on ``device`` (read-only arrays, e.g. memory-mapped features, are copied)."""
    return torch.from_numpy(np.require(x, requirements=["C", "W"])).to(device)


def linear_init(n_out: int, n_in: int, gen: torch.Generator, *, bias: bool = True):
    """PyTorch's default ``nn.Linear`` initialisation, U(−1/√n_in, 1/√n_in) for weight and bias,
    drawn from ``gen`` (on CPU, so the same seed gives the same weights on every device)."""
    bound = 1.0 / math.sqrt(n_in)
    w = (torch.rand(n_out, n_in, generator=gen) * 2 - 1) * bound
    b = (torch.rand(n_out, generator=gen) * 2 - 1) * bound if bias else None
    return w, b


def weight_normed(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Weight normalisation (Salimans & Kingma): rows of ``v`` rescaled to norm ``g`` (shape (..., out, 1))."""
    return g * v / v.norm(dim=-1, keepdim=True)


def fingerprint(arrays: Sequence[np.ndarray], params: dict[str, Any]) -> str:
    """SHA-256 over the training arrays and the parameters that change the result."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8"))
    for x in arrays:
        digest.update(str(x.shape).encode("ascii"))
        digest.update(np.ascontiguousarray(x).view(np.uint8).data)
    return digest.hexdigest()


class Checkpointer:
    """Resumable training state in ``<directory>/<name>.ckpt.pt`` (no-op when ``directory`` is None).

    A checkpoint is only resumed when its fingerprint (data + result-relevant parameters) matches;
    a stale one is ignored with a warning and overwritten at the next save.
    """

    def __init__(self, directory: str | os.PathLike | None, name: str, arrays: Sequence[np.ndarray],
                 params: dict[str, Any]):
        self.path = None if directory is None else Path(directory) / f"{name}.ckpt.pt"
        self.fingerprint = None if self.path is None else fingerprint(arrays, params)

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say so, start afresh
            warnings.warn(f"{self.path}: unreadable checkpoint ({exc}); starting from scratch", stacklevel=3)
            return None
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"{self.path}: checkpoint belongs to other data or parameters; starting from scratch",
                          stacklevel=3)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:
            torch.save({**state, "fingerprint": self.fingerprint}, tmp)
