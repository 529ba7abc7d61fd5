"""Torch helpers shared by the trained clusterers (TURTLE, TEMI): device choice, initialisation,
weight normalisation and resumable checkpoints."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    """Resumable training of TURTLE and TEMI: the state after a unit of work (an outer step, an epoch) in
    ``<directory>/<name>.ckpt.pt``; a no-op when ``directory`` is None.

    A training loop of ``total`` units calls :meth:`resume` once (restores a saved state, returns where to
    start) and :meth:`done` after each unit; the state is saved after every ``every``-th unit and after the
    last, atomically (a killed job leaves the previous checkpoint intact). A checkpoint is only resumed when
    its fingerprint (training data + the parameters that fix the trajectory) matches and it is at most
    ``total`` units in; otherwise it is ignored with a warning and overwritten at the next save. The saved
    state must hold everything the remaining units read (parameters, optimiser moments, the random
    generator), so that a resumed run ends with the same bits as an uninterrupted one; ``directory`` and
    ``every`` never change results.

    Examples
    --------
    >>> ckpt = Checkpointer(None, "demo", [np.zeros((2, 2), np.float32)], {"seed": 0}, every=10, total=30)
    >>> start, state = ckpt.resume()
    >>> (start, state)
    (0, None)
    """

    def __init__(
        self,
        directory: str | os.PathLike | None,
        name: str,
        arrays: Sequence[np.ndarray],
        params: dict[str, Any],
        *,
        every: int,
        total: int,
    ):
        self.path = None if directory is None else Path(directory) / f"{name}.ckpt.pt"
        self.fingerprint = None if self.path is None else fingerprint(arrays, params)
        self.every, self.total = int(every), int(total)

    def resume(self) -> tuple[int, dict[str, Any] | None]:
        """``(units done, saved state)`` of a usable checkpoint, else ``(0, None)``."""
        if self.path is None:
            return 0, None
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # left by a save that was killed
            stale.unlink(missing_ok=True)
        if not self.path.is_file():
            return 0, None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say so, start afresh
            warnings.warn(f"{self.path}: unreadable checkpoint ({exc}); starting from scratch", stacklevel=3)
            return 0, None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            warnings.warn(
                f"{self.path}: checkpoint belongs to other data or parameters; starting from scratch", stacklevel=3
            )
            return 0, None
        if int(state["done"]) > self.total:
            warnings.warn(
                f"{self.path}: checkpoint is {int(state['done'])} units in, beyond this run's "
                f"{self.total}; starting from scratch",
                stacklevel=3,
            )
            return 0, None
        return int(state["done"]), state["state"]

    def done(self, units: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Record that ``units`` units are done; saves ``snapshot()`` (CPU tensors and plain values) when due."""
        if self.path is None or (units % self.every and units != self.total):
            return
        with atomic_path(self.path) as tmp:
            torch.save({"fingerprint": self.fingerprint, "done": units, "state": snapshot()}, tmp)
