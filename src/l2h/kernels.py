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
  of :attr:`l2h.expcache.ExpCache.bound` allows to be any. The cache may also be *compact* (uint16
  codes, :func:`encode_compact`): then values are compared as codes and summed as decoded floats.
* :func:`encode_compact`: each ``e`` in [0, 1] as a 16-bit code, the float32 ``e·2⁻⁶⁴`` rounded to 10
  mantissa bits (nearest, ties to even) and shifted right by 13 bits: 6 exponent and 10 mantissa bits,
  so codes are ordered as the values, relative error ≤ 2⁻¹¹ for ``e ≥ 2⁻⁶²`` and absolute error ≤ 2⁻⁷²
  below; :func:`decode_compact` is exact. The two builds agree exactly.

The compiled kernels release the GIL, so row blocks run in parallel threads.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

#: Compact codes: e ∈ [0, 1] is coded as the float32 e·CODE_SCALE with its lowest CODE_SHIFT bits rounded away.
#: e·2⁻⁶⁴ ≤ 2⁻⁶⁴ has a float32 exponent field below 64, so its sign and top two exponent bits are 0 and the rest,
#: 6 exponent and 23 − 13 = 10 mantissa bits, fits 16 bits (e below 2⁻⁶² becomes a subnormal float32).
CODE_SCALE = 2.0**-64
CODE_SHIFT = 13

try:
    from l2h import _kernels as _compiled
except ImportError:  # no C compiler at install time: the numpy build (slower, same contract)
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
    return (
        isinstance(a, np.ndarray)
        and a.ndim == 2
        and a.dtype in (np.float32, np.float64)
        and a.dtype.isnative
        and a.flags.c_contiguous
    )


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
        np.take(x, rows, axis=0, out=out, mode="clip")  # rows are valid; "clip" avoids a buffer
    else:
        out[...] = x[rows]
    out -= out[np.arange(rows.size), top][:, None]


def keep_bits(k: int, members, dtype: np.dtype) -> np.ndarray:
    """Column mask for :func:`masked_estimates`: all ones (kept) or 0 (masked, ``members``), as integers of
    the width of the cache's ``dtype`` (float32: int32, float64: int64, compact codes: uint16)."""
    width = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64, np.dtype(np.uint16): np.uint16}
    out = np.full(k, -1, dtype=np.int64).astype(width[np.dtype(dtype)])
    out[np.asarray(members, dtype=np.intp)] = 0
    return out


def encode_compact(e: np.ndarray, out: np.ndarray) -> None:
    """``out`` (uint16, same shape) = the compact codes of ``e`` (float32/float64, values in [0, 1])."""
    if _compiled is not None and _native(e):
        _compiled.encode_compact(e, out)
        return
    scaled = e * np.float32(CODE_SCALE) if e.dtype == np.float32 else (e * CODE_SCALE).astype(np.float32)
    bits = scaled.view(np.uint32)
    half_down = np.uint32((1 << (CODE_SHIFT - 1)) - 1)  # round to nearest, ties to even
    out[...] = (bits + half_down + ((bits >> CODE_SHIFT) & np.uint32(1))) >> CODE_SHIFT


def decode_compact(codes: np.ndarray) -> np.ndarray:
    """float32 values of compact codes, in the scale 2⁻⁶⁴ (multiply by 2⁶⁴ for ``e``; both exact)."""
    return (codes.astype(np.uint32) << CODE_SHIFT).view(np.float32)


def masked_estimates(
    exp: np.ndarray,
    positions: np.ndarray,
    keep: np.ndarray,
    alpha: float,
    tiny: float,
    floor: float,
    hm: np.ndarray,
    gm: np.ndarray,
    doubt: np.ndarray,
) -> None:
    """Fill ``hm`` (int64), ``gm`` (float64) and ``doubt`` (bool) for the cache rows ``exp[positions]``
    (float32/float64 ``e``, or compact uint16 codes) and the column mask ``keep`` (:func:`keep_bits`);
    ``tiny`` and ``floor`` are in the unit scale of ``e``."""
    if _compiled is not None:
        _compiled.masked_estimates(exp, positions, keep, alpha, tiny, floor, hm, gm, doubt)
        return
    if exp.dtype == np.uint16:  # compact codes: decoded in the scale 2⁻⁶⁴, the unit scale for the test
        e, scale = decode_compact(exp[positions] & keep), 1 / CODE_SCALE
    else:
        e, scale = exp[positions], 1.0
        e[:, keep == 0] = 0
    at = np.arange(positions.size)
    h = e.argmax(axis=1)
    top = e[at, h]
    e[at, h] = 0
    second = e.max(axis=1)
    e[at, h] = top
    total = e.sum(axis=1)
    top64, second64 = top.astype(np.float64), second.astype(np.float64)  # roundings ≪ alpha
    hm[:] = h
    gm[:] = np.divide(top64, total, out=np.zeros_like(top64), where=total > 0)
    top64 *= scale
    second64 *= scale
    doubt[:] = (top64 * (1 - alpha) <= second64 * (1 + alpha) + tiny) | (top64 < floor)
