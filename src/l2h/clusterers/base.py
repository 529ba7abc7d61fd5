"""What every flat clusterer shares: input checks, the logits contract, and the on-disk model format.

A clusterer is fitted on one array per representation space (train split) and turns the same spaces of
any split into float32 N×K logits for L2H. Models are saved as a pickle-free ``.npz``: named float/int
arrays plus a JSON header (class, parameters, fit info), so a model file can be read without executing code.

``info()`` holds only what the config and seed determine (it is saved with the model and written by the
pipeline, whose outputs must be identical when a job is re-run); how a particular fit ran (wall-clock seconds,
resumption from a checkpoint) is in ``run_info_`` and logged, never saved.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from l2h.errors import InputError
from l2h.io import atomic_path, format_run_info

FORMAT_VERSION = 1
_HEADER_KEY = "__header__"

log = logging.getLogger(__name__)


def check_spaces(
    spaces: Sequence[np.ndarray], *, dims: Sequence[int] | None = None, source: str = "spaces"
) -> list[np.ndarray]:
    """Validate a list of N×d_s feature arrays (same N, finite) and return them as float32 arrays.

    ``dims`` (when given) are the per-space dimensions the model was fitted on.
    """
    if isinstance(spaces, np.ndarray):
        raise InputError(f"{source}: expected a list of arrays (one per representation space), got one array")
    spaces = list(spaces)
    if not spaces:
        raise InputError(f"{source}: no representation space given")
    out = []
    for s, x in enumerate(spaces):
        x = np.asarray(x)
        name = f"{source}[{s}]"
        if x.ndim != 2:
            raise InputError(f"{name}: expected a 2-D array (N, d), got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise InputError(f"{name}: empty array of shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise InputError(f"{name}: expected real numbers, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InputError(f"{name}: contains NaN or infinite values")
        out.append(x)
    n = {x.shape[0] for x in out}
    if len(n) != 1:
        raise InputError(f"{source}: spaces have different numbers of rows {[x.shape[0] for x in out]}")
    if dims is not None:
        got = [x.shape[1] for x in out]
        if got != list(dims):
            raise InputError(f"{source}: the model was fitted on spaces of dimensions {list(dims)}, got {got}")
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


class Clusterer:
    """Base class: subclasses set ``name``, implement ``_fit``, ``_logits``, ``_state``/``_set_state``."""

    name: ClassVar[str] = ""
    #: constructor parameters that never change results (checkpointing, progress bars): not saved with a model
    runtime_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, k: int, seed: int = 0, **options: Any):
        """``options``: the subclass's own constructor arguments, checked with ``k`` and ``seed`` against its
        schema (``l2h/schemas/clusterer/<name>.yaml``, the one validator of every option)."""
        from l2h import schema

        schema.validate("clusterer", {"kind": self.name, "k": k, "seed": seed, **options}, complete=False)
        self.k = int(k)
        self.seed = int(seed)
        self.dims_: list[int] | None = None
        self.info_: dict[str, Any] = {}
        self.run_info_: dict[str, Any] = {}  # how the last fit ran (timings, resumption): logged, not saved

    # -- public API -------------------------------------------------------------------------------
    def fit(self, spaces: Sequence[np.ndarray]) -> "Clusterer":
        """Fit on the train split: one (N, d_s) array per representation space."""
        spaces = check_spaces(spaces, source=f"{self.name}.fit spaces")
        if spaces[0].shape[0] < self.k:
            raise InputError(f"{self.name}.fit: {spaces[0].shape[0]} points is fewer than k={self.k} clusters")
        self.dims_ = [x.shape[1] for x in spaces]
        self.run_info_ = {}
        self.info_ = {"n_train": spaces[0].shape[0], "dims": list(self.dims_), **self._fit(spaces)}
        train_logits = self._logits(spaces)
        if not np.isfinite(train_logits).all():
            raise FloatingPointError(f"{self.name}: non-finite logits on the train split (training diverged)")
        sizes = np.bincount(np.argmax(train_logits, axis=1), minlength=self.k)
        self.info_["empty_clusters"] = int((sizes == 0).sum())
        self.info_["cluster_sizes"] = sizes.tolist()
        if self.run_info_:
            log.info("%s fit: %s", self.name, format_run_info(self.run_info_))
        return self

    def logits(self, spaces: Sequence[np.ndarray]) -> np.ndarray:
        """float32 (N, K) logits for L2H (softmax of a row = the model's cluster probabilities)."""
        self._check_fitted()
        spaces = check_spaces(spaces, dims=self.dims_, source=f"{self.name}.logits spaces")
        out = np.asarray(self._logits(spaces), dtype=np.float32)
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{self.name}: non-finite logits (model diverged?)")
        return out

    def predict(self, spaces: Sequence[np.ndarray]) -> np.ndarray:
        """int64 hard assignments = argmax of the logits."""
        return np.argmax(self.logits(spaces), axis=1).astype(np.int64)

    def info(self) -> dict[str, Any]:
        """Fit diagnostics fixed by the config and seed; always contains ``empty_clusters`` (clusters with no
        argmax point on train). Wall-clock timings are in ``run_info_``."""
        self._check_fitted()
        return dict(self.info_)

    def params(self) -> dict[str, Any]:
        """The constructor parameters (JSON-able), as from the config."""
        return {"k": self.k, "seed": self.seed, **self._params()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` (.npz, no pickle) atomically; the same model gives the same bytes
        (``runtime_keys`` are left out: a model reads back with their defaults)."""
        self._check_fitted()
        params = {key: val for key, val in self.params().items() if key not in self.runtime_keys}
        header = {
            "format_version": FORMAT_VERSION,
            "clusterer": self.name,
            "params": params,
            "dims": self.dims_,
            "info": self.info_,
        }
        arrays = {key: np.asarray(val) for key, val in self._state().items()}
        if _HEADER_KEY in arrays:
            raise AssertionError(f"state key {_HEADER_KEY} is reserved")
        arrays[_HEADER_KEY] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Clusterer":
        """Read a model written by ``save`` (any clusterer when called on the base class)."""
        from l2h import schema

        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable clusterer model ({exc})") from exc
        if _HEADER_KEY not in arrays:
            raise InputError(f"{path}: not a clusterer model (no header)")
        header = json.loads(arrays.pop(_HEADER_KEY).tobytes().decode("utf-8"))
        if header.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path}: unsupported model format version {header.get('format_version')}")
        kind = header.get("clusterer")
        klass = schema.implementation("clusterer", kind) if kind in schema.kinds("clusterer") else None
        if klass is None or (cls is not Clusterer and klass is not cls):
            raise InputError(f"{path}: holds a {header['clusterer']!r} model, cannot load it as {cls.name!r}")
        model = klass(**header["params"])
        model.dims_ = header["dims"]
        model.info_ = header["info"]
        model._set_state(arrays)
        return model

    # -- for subclasses ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.dims_ is None:
            raise RuntimeError(f"{self.name}: call fit() first")

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _fit(self, spaces: list[np.ndarray]) -> dict[str, Any]:
        """Fit; return fit diagnostics for ``info``."""
        raise NotImplementedError

    def _logits(self, spaces: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError
