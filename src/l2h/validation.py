"""Input checks for score matrices (logits / probabilities) and label vectors.

Checks run over row blocks, so a memory-mapped matrix larger than memory is never loaded whole and no
N×K temporary is created. Every error is an :class:`~l2h.errors.InputError` whose message starts with the
name of the checked file or array (``source``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from l2h.errors import InputError
from l2h.options import INPUTS

PROBS_ATOL = 1e-3


def check_input_kind(input: str) -> None:
    """Raise InputError unless ``input`` is one of :data:`INPUTS` (``"logits"``, ``"probs"``)."""
    if input not in INPUTS:
        raise InputError(f"input must be one of {INPUTS}, got {input!r}")


def check_shape(x: np.ndarray, *, source: str = "array") -> tuple[int, int]:
    """Check dtype and shape of a score matrix without reading its values; return ``(N, K)``."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.kind not in "fiu":
        raise InputError(f"{source}: expected a real-valued numeric array, got dtype {dtype}")
    if x.ndim != 2:
        raise InputError(f"{source}: expected a 2-D (N points x K clusters) array, got shape {x.shape}")
    n, k = x.shape
    if n == 0:
        raise InputError(f"{source}: the array has no rows (N == 0)")
    if k < 2:
        raise InputError(f"{source}: at least 2 columns (clusters) are needed, got K = {k}")
    return n, k


def check_block(block: np.ndarray, row0: int, *, input: str = "logits", source: str = "array") -> None:
    """Check the values of rows ``row0 .. row0 + len(block)`` of a score matrix (already loaded)."""
    low = block.min(axis=1)
    if block.dtype.kind == "f":
        high = block.max(axis=1)  # min and max propagate NaN; together they catch both infinities
        bad = np.flatnonzero(~(np.isfinite(low) & np.isfinite(high)))
        if bad.size:
            r = bad[0]
            kind = "NaN" if np.isnan(block[r]).any() else "inf"
            raise InputError(f"{source}: row {row0 + r} contains {kind}")
    if input == "probs":
        neg = np.flatnonzero(low < 0)
        if neg.size:
            r = neg[0]
            raise InputError(
                f"{source}: row {row0 + r} has a negative probability ({low[r]:.6g}); pass input='logits' for logits"
            )
        sums = block.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > PROBS_ATOL)
        if off.size:
            r = off[0]
            raise InputError(
                f"{source}: row {row0 + r} sums to {float(sums[r]):.6g}, not 1 (tolerance "
                f"{PROBS_ATOL:g}); probabilities must sum to 1 per row, or pass "
                "input='logits'"
            )


def check_scores(x: ArrayLike, *, input: str = "logits", source: str = "array", block_rows: int = 65536) -> None:
    """Validate an N×K score matrix (ndarray or ``np.memmap``) block by block.

    Raises :class:`InputError` for: a non-numeric dtype, ``ndim != 2``, ``N == 0``, ``K < 2``, NaN or
    infinite entries and, with ``input="probs"``, negative entries or rows not summing to 1 within
    an absolute tolerance of 1e-3.
    """
    check_input_kind(input)
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    n, _ = check_shape(x, source=source)
    block_rows = max(1, int(block_rows))
    for start in range(0, n, block_rows):
        check_block(np.asarray(x[start : start + block_rows]), start, input=input, source=source)


def check_labels(
    labels: ArrayLike,
    n: int | None = None,
    *,
    source: str = "labels",
    allow_negative: bool = False,
    allow_empty: bool = True,
) -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array (of ``n`` entries when ``n`` is given), or raise InputError.

    Integer-valued floats are accepted; booleans, strings and other values are not. The metrics pass
    ``allow_negative=True`` (any integer class ids) and ``allow_empty=False``.

    Examples
    --------
    >>> check_labels([3.0, 0.0, 2.0], 3).tolist()
    [3, 0, 2]
    >>> check_labels([0, -1], 2, source="y.npy")
    Traceback (most recent call last):
    ...
    l2h.errors.InputError: y.npy: label 1 is negative (-1); labels must be non-negative
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InputError(f"{source}: expected a 1-D array of labels, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{source}: {arr.shape[0]} labels given for {n} points")
    if not allow_empty and arr.size == 0:
        raise InputError(f"{source}: empty (no labels)")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "fiu":
        raise InputError(f"{source}: labels must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise InputError(f"{source}: labels must be integers; label {bad[0]} is not an integer ({arr[bad[0]]!r})")
    if not allow_negative and arr.size and arr.min() < 0:
        raise InputError(
            f"{source}: label {int(np.argmax(arr < 0))} is negative ({arr.min()}); labels must be non-negative"
        )
    if arr.size and arr.max() >= 2**63:
        raise InputError(f"{source}: label {int(np.argmax(arr))} is too large ({arr.max()})")
    return arr.astype(np.int64)


def looks_like_probabilities(x: np.ndarray, *, block_values: int = 1 << 22) -> bool:
    """True when every row of an N×K score matrix is non-negative and sums to 1 (within ``PROBS_ATOL``).

    Reads 256 rows first and the rest (in blocks of about ``block_values`` values) only if those look like
    probabilities, so logits cost one small read.
    """
    n, k = x.shape
    step = max(1, int(block_values) // k)
    starts = [0, *range(min(256, step), n, step)]
    for start, stop in zip(starts, [*starts[1:], n]):
        block = np.asarray(x[start:stop], dtype=np.float64)
        if block.size and (block.min() < 0 or np.abs(block.sum(axis=1) - 1.0).max() > PROBS_ATOL):
            return False
    return True
