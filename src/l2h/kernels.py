"""Per-row kernels of the first pass and of the exp cache's multi-cluster steps (see :mod:`l2h.algorithm`),
in two builds with one contract each: compiled C (``l2h/_kernels.c``, built at install when a C compiler
is available; the default) and numpy (used when the extension is missing, for inputs the compiled build
does not take, and in the tests against the compiled one).

* :func:`first_maxima`: per row of the logits, the first argmax ``h``, the first argmax without column
  ``h`` and whether the row holds NaN or inf; the two builds agree exactly.
* :func:`gather_shifted`: rows in a given order minus their maximum, ``z − max z`` (one IEEE subtraction
  per value: the two builds agree exactly).
* :func:`masked_estimates`: for each cache row ``e = exp(z − max z)`` and a mask of columns, the first
  masked argmax ``h^m`` of ``e``, the estimate ``g^m = e_{h^m} / Σ_{k kept} e_k`` and whether the row
  needs the exact definition (``doubt``): the second largest kept value within exp's relative error
  ``alpha`` (plus ``tiny`` absolute) of the largest, ``top·(1 − alpha) ≤ second·(1 + alpha) + tiny`` in
  float64 (their order in ``z`` is then uncertain), or a largest kept value below ``floor``. The builds
  agree exactly on ``h^m`` and ``doubt``; ``g^m`` differs by the summation order only, which the bound
  of :meth:`l2h.algorithm._ExpCache.bound` allows to be any.

The compiled kernels release the GIL, so row blocks run in parallel threads.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

try:
    from l2h import _kernels as _compiled
except ImportError:           # no C compiler at install time: the numpy build (slower, same contract)
    _compiled = None


def build() -> str:
    """The kernel build in use: ``"compiled"`` or ``"numpy"``."""
    return "numpy" if _compiled is None else "compiled"


@contextmanager
def numpy_build():
    """Use the numpy build inside the ``with`` block (to compare the builds; not thread-safe)."""
    global _compiled
    saved, _compiled = _compiled, None
    try:
        yield
    finally:
        _compiled = saved


def _native(a) -> bool:
    """Whether the compiled build takes ``a``: a C-contiguous 2-D float32/float64 ndarray, native order."""
    return (isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype in (np.float32, np.float64)
            and a.dtype.isnative and a.flags.c_contiguous)


def first_maxima(block: np.ndarray, h: np.ndarray, second: np.ndarray, bad: np.ndarray) -> None:
    """Fill ``h`` and ``second`` (int64: first argmax, first argmax without column ``h``) and ``bad``
    (bool: the row holds NaN or inf; then the other two are meaningless) for each row of ``block``
    (K ≥ 2)."""
    if _compiled is not None and _native(block):
        _compiled.first_maxima(block, h, second, bad)
        return
    bad[:] = ~(np.isfinite(block.min(axis=1)) & np.isfinite(block.max(axis=1)))
    h[:] = block.argmax(axis=1)
    rest = np.array(block)
    rest[np.arange(rest.shape[0]), h] = -np.inf
    second[:] = rest.argmax(axis=1)


def gather_shifted(x: np.ndarray, rows: np.ndarray, top: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = x[rows[i]] − x[rows[i], top[i]]`` in the dtype of ``out`` (``top[i]``: the row's argmax)."""
    if _compiled is not None and _native(x) and x.dtype == out.dtype:
        _compiled.gather_shifted(x, rows, top, out)
        return
    if isinstance(x, np.ndarray) and x.dtype == out.dtype:
        np.take(x, rows, axis=0, out=out, mode="clip")   # rows are valid; "clip" avoids a buffer
    else:
        out[...] = x[rows]
    out -= out[np.arange(rows.size), top][:, None]


def keep_bits(k: int, members, dtype: np.dtype) -> np.ndarray:
    """Column mask for :func:`masked_estimates`: all ones (kept) or 0 (masked, ``members``), as signed
    integers of the width of ``dtype``."""
    out = np.full(k, -1, dtype=np.int32 if np.dtype(dtype) == np.float32 else np.int64)
    out[np.asarray(members, dtype=np.intp)] = 0
    return out


def masked_estimates(exp: np.ndarray, positions: np.ndarray, keep: np.ndarray, alpha: float, tiny: float,
                     floor: float, hm: np.ndarray, gm: np.ndarray, doubt: np.ndarray) -> None:
    """Fill ``hm`` (int64), ``gm`` (float64) and ``doubt`` (bool) for the cache rows ``exp[positions]``
    and the column mask ``keep`` (:func:`keep_bits`)."""
    if _compiled is not None:
        _compiled.masked_estimates(exp, positions, keep, alpha, tiny, floor, hm, gm, doubt)
        return
    e = exp[positions]
    e[:, keep == 0] = 0
    at = np.arange(positions.size)
    h = e.argmax(axis=1)
    top = e[at, h]
    e[at, h] = 0
    second = e.max(axis=1)
    e[at, h] = top
    total = e.sum(axis=1)
    top64, second64 = top.astype(np.float64), second.astype(np.float64)   # roundings ≪ alpha
    hm[:] = h
    gm[:] = np.divide(top64, total, out=np.zeros_like(top64), where=total > 0)
    doubt[:] = (top64 * (1 - alpha) <= second64 * (1 + alpha) + tiny) | (top64 < floor)
