"""Per-row kernel of the exp cache's multi-cluster steps (see :mod:`l2h.algorithm`), in two builds with
one contract: compiled C (``l2h/_kernels.c``, built at install when a C compiler is available; the
default) and numpy (used when the extension is missing, and in the tests against the compiled one).

For each requested cache row ``e = exp(z − max z)`` and a mask of columns: the first masked argmax
``h^m`` of ``e``, the estimate ``g^m = e_{h^m} / Σ_{k kept} e_k`` and whether the row needs the exact
definition (``doubt``): the second largest kept value within exp's relative error ``alpha`` (plus
``tiny`` absolute) of the largest, ``top·(1 − alpha) ≤ second·(1 + alpha) + tiny`` in float64 (their
order in ``z`` is then uncertain), or a largest kept value below ``floor``. The two builds agree
exactly on ``h^m`` and ``doubt``; ``g^m`` differs by the summation order only, which the bound of
:meth:`l2h.algorithm._ExpCache.bound` allows to be any.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

try:
    from l2h._kernels import masked_estimates as _compiled
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


def keep_bits(k: int, members, dtype: np.dtype) -> np.ndarray:
    """Column mask for :func:`masked_estimates`: all ones (kept) or 0 (masked, ``members``), as signed
    integers of the width of ``dtype``."""
    out = np.full(k, -1, dtype=np.int32 if np.dtype(dtype) == np.float32 else np.int64)
    out[np.asarray(members, dtype=np.intp)] = 0
    return out


def masked_estimates(exp: np.ndarray, positions: np.ndarray, keep: np.ndarray, alpha: float, tiny: float,
                     floor: float, hm: np.ndarray, gm: np.ndarray, doubt: np.ndarray) -> None:
    """Fill ``hm`` (int64), ``gm`` (float64) and ``doubt`` (bool) for the cache rows ``exp[positions]``
    and the column mask ``keep`` (:func:`keep_bits`); releases the GIL (compiled build)."""
    if _compiled is not None:
        _compiled(exp, positions, keep, alpha, tiny, floor, hm, gm, doubt)
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
