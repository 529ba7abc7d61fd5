"""Exact sums of floats for :mod:`l2h.algorithm`: cluster sums of ``g``, group scores and affinities.

Every sum over points or clusters in L2H is the exactly rounded value of the exact sum (what ``math.fsum``
returns for the same numbers in any order), so results do not depend on the summation order, the blocking or
the number of threads. Sums that are merged step after step (group statistics) are kept as exact Python
integers counting units of ``2**-UNIT``; :func:`exact_sums` computes many per-label sums at once with
``np.bincount`` on integer limbs, and :func:`to_float` rounds one back to a float.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_WEIGHT", "exact_int", "exact_sums", "to_float"]

#: float64: significand bits, and the exponent of the smallest subnormal (every finite float64 is a multiple
#: of 2**FLOAT64_MIN_EXPONENT).
FLOAT64_BITS = 53
FLOAT64_MIN_EXPONENT = -1074
#: Bits per limb. A limb is an integer < 2**LIMB_BITS; ``np.bincount`` adds them in float64, which is exact while
#: the total stays below 2**53, i.e. for up to 2**(53 − LIMB_BITS) = 2**27 limbs per sum.
LIMB_BITS = 26
#: Exact sums are Python ints counting units of 2**-UNIT. The lowest limb of :func:`exact_sums` lies at most one
#: limb below the smallest subnormal, so every limb is a whole number of units (Python ints have no upper limit).
UNIT = -FLOAT64_MIN_EXPONENT + LIMB_BITS
SCALE = 1 << UNIT
#: Values summed per ``np.bincount`` call: ≤ 2**26 limbs per sum (< 2**27, see LIMB_BITS); with weights, a
#: chunk holds at most this much total weight.
BINCOUNT_CHUNK = 1 << 26
#: Largest row weight (``l2h(weights=...)``): a limb times a weight stays below 2**52, so weighted chunks sum
#: exactly too.
MAX_WEIGHT = 1 << 26


def exact_int(value: float) -> int:
    """``value`` (a finite float) as an exact count of units 2**-UNIT."""
    num, den = float(value).as_integer_ratio()
    return num * (SCALE // den)


def to_float(exact: int) -> float:
    """The correctly rounded float of an exact sum (Python's int division rounds correctly)."""
    return exact / SCALE


def exact_sums(values, labels, n_labels: int, weights=None) -> dict[int, int]:
    """Exact per-label sums of non-negative finite floats: {label: sum in units of 2**-UNIT}.

    Only labels that occur are returned. Each value is split into LIMB_BITS-bit limbs on a common grid
    (exact), and each limb's per-label ``np.bincount`` is a sum of integers below 2**53, hence exact.
    With ``weights`` (integers in 0..MAX_WEIGHT), the sums are of ``weight · value``: a limb times a weight is
    below 2**52, and chunks hold at most BINCOUNT_CHUNK in total weight, so the sums stay exact.

    >>> sums = exact_sums([0.1, 0.2, 0.5], [0, 0, 1], 2)
    >>> to_float(sums[0]), to_float(sums[1])
    (0.30000000000000004, 0.5)
    """
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.intp)
    present = np.flatnonzero(np.bincount(labels, minlength=n_labels)).tolist()
    out = dict.fromkeys(present, 0)
    positive = values[values > 0]
    if positive.size == 0:
        return out
    top = int(np.frexp(positive.max())[1])  # all values < 2**top
    low = max(int(np.frexp(positive.min())[1]) - FLOAT64_BITS, FLOAT64_MIN_EXPONENT)  # multiples of 2**low
    n_limbs = -(-(top - low) // LIMB_BITS)
    chunk = BINCOUNT_CHUNK
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        chunk = max(1, BINCOUNT_CHUNK // max(int(weights.max(initial=1)), 1))
    for start in range(0, values.size, chunk):
        rest = values[start : start + chunk].copy()
        lab = labels[start : start + chunk]
        w = None if weights is None else weights[start : start + chunk]
        for i in range(n_limbs):
            q = top - LIMB_BITS * (i + 1)
            limb = np.floor(np.ldexp(rest, -q))
            rest -= np.ldexp(limb, q)
            sums = np.bincount(lab, weights=limb if w is None else limb * w, minlength=n_labels)[present]
            shift = q + UNIT
            for c, s in zip(present, sums.astype(np.int64).tolist()):
                if s:
                    out[c] += s << shift
    return out
