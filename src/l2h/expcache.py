"""The exp cache of :mod:`l2h.algorithm`: G† chosen from stored ``exp(z − max z)``, without a second read of the input.

The first pass keeps ``e = exp(z − max z)`` of every row (in input order, written in the same pass that
finds ``h``), and a step *estimates* ``g^m = e_{h^m} / Σ_{k∉G} e_k`` from it with no ``exp`` (the costliest
per-value operation) and no second read of the input. Each estimate is within a proven relative bound of
the exact ``g^m`` (:attr:`ExpCache.bound`), so G† is chosen exactly: a group whose estimated affinity cannot
reach the best one's lower end is ruled out, and only if several remain do their rows get the exact
definition (:func:`l2h.algorithm._best_affinity_estimated`). ``h^m`` is taken from ``e`` only where its order
is certain (the largest kept ``e`` beats the next by more than the stored values' error), else from ``z``.

Kinds (:func:`cache_kind`): ``"full"`` stores ``e`` in the compute dtype while that takes at most
:data:`FULL_CACHE_MAX_GIB`; ``"compact"`` stores 16-bit codes (:func:`l2h.kernels.encode_compact`: 6 exponent
and 10 mantissa bits, relative error ≤ 2⁻¹¹, so the bound grows from ~2e-4 to ~1.2e-3 at K = 1,000 and a few
more steps need exact rows); at ImageNet scale (1.28M × 1,000) that is 2.4 GiB instead of 4.8. The cache is
used for the default strategy on logits when it fits the budget (``cache_gib``, by default half the available
memory).

A singleton G* = {c} (most steps: low-confidence clusters go first) masks exactly the rows' own argmax, so
the first pass also estimates every row's ``g^m`` for the mask {h} (:meth:`ExpCache.fill`); those steps read
no rows at all. A multi-cluster step reads its rows (scattered, prefetched) with one compiled pass per row
(:func:`l2h.kernels.masked_estimates`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from l2h import kernels

__all__ = ["ExpCache", "available_memory", "cache_kind"]

GIB = 2**30
#: numpy's SIMD ``exp`` and libm's are within this many ulp, i.e. a relative error of 2·EXP_ULPS·u (u: the unit
#: roundoff of the compute dtype).
EXP_ULPS = 4
#: Padding of the error terms (1 %), for the roundings in evaluating the bound itself.
PAD = 1.01
#: A row's g^m is estimated only if its masked maximum's ``e_{h^m}`` is at least EXP_FLOOR (the masked maximum
#: m within 40 of the row's maximum M; else the exact definition). With the rounding of the stored e, estimated
#: rows have ``M − m ≤ ESTIMATE_RANGE``, which bounds how far the roundings of ``z − M`` move the terms.
EXP_FLOOR = math.exp(-40)
ESTIMATE_RANGE = 41
#: Absolute error of an underflowed ``exp`` (a stored 0 or subnormal e).
EXP_TINY = 2.0**-120
#: Padding of the bound's underflow term (k terms below the smallest normal float, against a sum ≥ e^-41).
UNDERFLOW_PAD = 8
#: Absolute slack added to the bound.
BOUND_SLACK = 2.0**-40
#: Compact codes (:func:`l2h.kernels.encode_compact`): relative error of a code, 10 mantissa bits rounded to
#: nearest (2⁻¹¹), padded; absolute error of a code of e below 2⁻⁶² (subnormal float32 codes); and the floor of
#: ``e_{h^m}`` for an estimate from codes (2⁻⁴⁵ ≈ e^-31.2: the codes' absolute error stays ≤ 2⁻²⁷ relative).
CODE_ALPHA = PAD * 2.0**-11
CODE_TINY = 2.0**-72
CODE_FLOOR = 2.0**-45
#: Largest "full" cache (GiB). Above it the cache is compact even when the budget allows: half the memory (the
#: fresh memory of a multi-GiB cache is slow to provide) and half the bytes a step reads; below it the full
#: cache's smaller bound leaves fewer rows and steps to the exact definition.
FULL_CACHE_MAX_GIB = 1.0
#: Default budget: this fraction of the available memory, or UNKNOWN_BUDGET_GIB where that is unknown.
AUTO_BUDGET_FRACTION = 0.5
UNKNOWN_BUDGET_GIB = 2
#: A multi-cluster step splits its rows over the threads in parts of at least this many rows (most steps have
#: a few hundred rows; smaller parts cost more in thread hand-offs than they save).
MIN_ROWS_PER_PART = 256


def available_memory() -> int | None:
    """Bytes this process may still use: Linux's MemAvailable, capped by the limit of its cgroup (v2 or v1,
    e.g. a SLURM job's) less the cgroup's usage; None where unknown."""
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2
                folder, files = Path("/sys/fs/cgroup") / path.lstrip("/"), ("memory.max", "memory.current")
            elif "memory" in controllers.split(","):  # cgroup v1
                folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            else:
                continue
            limit, usage = ((folder / name).read_text().strip() for name in files)
            if limit.isdigit() and usage.isdigit():
                available = min(available, max(int(limit) - int(usage), 0))
    except (OSError, ValueError):
        pass
    return available


def cache_kind(n: int, k: int, work: type, input: str, strategy: str, cache_gib: float | None) -> str | None:
    """The exp cache to build for an N×K matrix in compute dtype ``work``: "full" while it fits the budget and
    :data:`FULL_CACHE_MAX_GIB`, else "compact" if that fits, else None (also for probabilities and the
    all-pairs strategy). The budget is ``cache_gib`` GiB, or :data:`AUTO_BUDGET_FRACTION` of the available
    memory (:data:`UNKNOWN_BUDGET_GIB` where that is unknown)."""
    if input != "logits" or strategy != "lowest_score":
        return None
    if cache_gib is None:
        available = available_memory()
        budget = UNKNOWN_BUDGET_GIB * GIB if available is None else available * AUTO_BUDGET_FRACTION
    else:
        budget = float(cache_gib) * GIB
    if ExpCache.nbytes(n, k, work, "full") <= min(budget, FULL_CACHE_MAX_GIB * GIB):
        return "full"
    if ExpCache.nbytes(n, k, work, "compact") <= budget:
        return "compact"
    return None


def _fresh_array(shape: tuple[int, int], dtype) -> np.ndarray:
    """An uninitialised array in an anonymous memory mapping of its own. Unlike ``np.empty`` it carries no
    transparent-huge-page hint, whose synchronous compaction made first writes to a multi-GiB cache ~5×
    slower on this project's (virtual) machines."""
    import mmap

    size = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if size == 0:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype).reshape(shape)


class ExpCache:
    """The first pass's ``e = exp(z − max z)`` of every row (position = input row), and each row's estimate
    for the mask {h} (see :meth:`fill`).

    ``kind="full"`` stores ``e`` in the compute dtype ``work``; ``kind="compact"`` stores 16-bit codes of ``e``
    (:func:`l2h.kernels.encode_compact`: relative error ≤ 2⁻¹¹, a quarter of float64's size). With it a step
    estimates ``g^m(x; G) = e_{h^m} / Σ_{k∉G} e_k`` from stored values (:meth:`estimates`): no ``exp`` per step
    and no second read of the input.
    """

    def __init__(self, n: int, k: int, work: type, kind: str = "full"):
        self.kind, self.work = kind, work
        self.values = _fresh_array((n, k), work if kind == "full" else np.uint16)
        self.second = np.empty(n, dtype=np.int64)  # h^m of the row for the mask {h}
        self.alone = np.empty(n, dtype=np.float64)  # its estimated g^m (NaN: needs the exact one)
        self.u = float(np.finfo(work).eps) / 2  # unit roundoff of the compute dtype
        compact = kind == "compact"
        self.alpha = PAD * 2 * EXP_ULPS * self.u + (CODE_ALPHA if compact else 0.0)  # relative error of a stored e
        self.tiny = EXP_TINY + (CODE_TINY if compact else 0.0)  # absolute error of a stored e
        self.floor = CODE_FLOOR if compact else EXP_FLOOR  # smallest e_{h^m} estimated

    @staticmethod
    def nbytes(n: int, k: int, work: type, kind: str) -> int:
        return n * k * (np.dtype(work).itemsize if kind == "full" else 2)

    def fill(self, part: slice, e: np.ndarray, h: np.ndarray) -> None:
        """Store ``e = exp(z − max z)`` of the rows ``part`` (compute dtype, C-contiguous; for the full cache,
        ``e`` is ``values[part]`` itself; briefly modified) and estimate each row's ``g^m`` for the mask {h}, the
        one its singleton cluster uses as G*: ``h^m`` is ``second[part]`` (set before: the first argmax of ``z``
        without column h, exact), ``g^m ≈ e_{h^m} / Σ_{k≠h} e_k`` from the compute dtype's ``e`` (NaN where
        ``e_{h^m} <`` :data:`EXP_FLOOR`: the exact definition is needed).
        """
        at = np.arange(e.shape[0])
        e[at, h] = 0
        rest = e.sum(axis=1)
        e[at, h] = 1  # exp(0)
        top = e[at, self.second[part]]
        with np.errstate(invalid="ignore"):  # 0/0 where every other exp underflowed
            self.alone[part] = np.where(top >= EXP_FLOOR, top / rest, np.nan)
        if self.kind == "compact":
            kernels.encode_compact(e, self.values[part])

    def estimates(self, rows: np.ndarray, members: list[int], blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``h^m`` (exact where not in doubt), the estimated ``g^m`` and ``doubt`` (the row needs the exact
        definition: the order of its largest kept values is not certain, or its masked maximum is below
        :attr:`floor`) of the cache rows ``rows`` for the mask G = ``members``.

        A single cluster takes the first pass's estimates (:meth:`fill`); otherwise
        :func:`l2h.kernels.masked_estimates` reads the rows (ascending, for address order) in parts run by
        ``blocks`` (``.n_threads``, ``.run(fn, starts)``: :class:`l2h.algorithm._Blocks`).
        """
        if len(members) == 1:
            gm = self.alone[rows]
            return self.second[rows], gm, np.isnan(gm)
        hm = np.empty(rows.size, dtype=np.int64)
        gm = np.empty(rows.size, dtype=np.float64)
        doubt = np.empty(rows.size, dtype=bool)
        keep = kernels.keep_bits(self.values.shape[1], members, self.values.dtype)
        step = max(MIN_ROWS_PER_PART, -(-rows.size // blocks.n_threads))

        def one(start: int) -> None:
            part = slice(start, start + step)
            kernels.masked_estimates(
                self.values, rows[part], keep, self.alpha, self.tiny, self.floor, hm[part], gm[part], doubt[part]
            )

        blocks.run(one, range(0, rows.size, step))
        return hm, gm, doubt

    @functools.cached_property
    def bound(self) -> float:
        """Relative distance between the estimate and the exact ``g^m`` of a row of K logits whose
        masked maximum ``m`` is within :data:`ESTIMATE_RANGE` (41) of its maximum ``M`` (other rows get the
        exact definition).

        Both sum K terms in the compute dtype, in any order (γ_{K−1} each); ``exp`` is taken to be within
        :data:`EXP_ULPS` (4) ulp (numpy's SIMD and libm ``exp`` are). The roundings of ``z_j − M``, ``m − M`` and
        ``z_j − m`` move the exponent of term ``t_j = exp(z_j − m)`` by at most ``u·(2|z_j − m| + 82)``; as
        ``t·|log t| ≤ 1/e``, all terms together move by at most ``u·(2K/e + 82)`` against a sum ≥ 1.
        One division each. Underflowed terms differ by less than the smallest normal float each,
        against a sum ≥ exp(−41) (estimate) or ≥ 1 (exact).

        Compact cache: each stored term is also within 2⁻¹¹ (relative, :data:`CODE_ALPHA`) or 2⁻⁷² (absolute,
        terms below 2⁻⁶², :data:`CODE_TINY`) of ``e``; ``e_{h^m} ≥ 2⁻⁴⁵`` (:data:`CODE_FLOOR`), so ratio and sum
        move by at most ``(2α + K·2⁻⁷²/2⁻⁴⁵)/(1 − α)`` on top of the bound above (the singleton estimates,
        from ``e`` itself, are within the smaller one).
        """
        u, k = self.u, self.values.shape[1]
        exp_error = 2 * EXP_ULPS * u  # relative error of one exp
        gamma = (k - 1) * u / (1 - (k - 1) * u)  # γ_{K−1}: a sum of K terms
        shifts = u * (2 * k / math.e + 2 * ESTIMATE_RANGE)  # the roundings of z_j − M, m − M, z_j − m
        underflow = k * float(np.finfo(self.work).tiny) * UNDERFLOW_PAD * math.exp(ESTIMATE_RANGE)
        total = 2 * gamma + shifts + 6 * exp_error + 4 * u + underflow  # 4u: the divisions
        bound = PAD * total / (1 - total) + BOUND_SLACK
        if self.kind == "compact":
            code = PAD * (2 * CODE_ALPHA + k * CODE_TINY / CODE_FLOOR) / (1 - CODE_ALPHA)
            bound = bound + code + bound * code
        return bound
