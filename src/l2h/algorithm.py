"""L2H: a hierarchy over the K clusters of a flat model, from its N×K logits alone.

Implements the merge loop of "From Logits to Hierarchies" (Palumbo et al., ICML 2025), see
``paper.md`` §1.3. Per step, the group with the lowest score ``G*`` (least confident) is merged into
the group ``G†`` that its points would join if ``G*``'s clusters did not exist (masked softmax).

Efficiency: ``h`` (argmax) and ``g`` (max softmax) are computed once, in row blocks; the row indices
are grouped by cluster once (CSR layout); group scores are additive statistics, so a merge updates
them in O(1) and a heap yields ``G*``; per step the masked softmax runs only on the rows of
``D_{G*}`` (gathered in blocks, so memory-mapped inputs are never loaded whole; blocks run in
``n_jobs`` threads). Cost: O(N·K) + Σ_t |D_{G*_t}|·K; no N×K temporary is ever created, except the
optional exp cache below, which is bounded by ``cache_gib``.

Exp cache (default strategy, logits, when N·K values fit ``cache_gib``): the first pass keeps
``e = exp(z − max z)`` of every row, and a step *estimates* ``g^m = e_{h^m} / Σ_{k∉G} e_k`` from it with
no ``exp`` (the costliest per-value operation) and no second read of the input. Each estimate is within
a proven relative bound of the exact ``g^m`` (:meth:`_ExpCache.bound`), so G† is chosen exactly: a
group whose estimated affinity cannot reach the best one's lower end is ruled out, and only if
several remain do their rows get the exact definition. ``h^m`` is taken from ``e`` only where its
order is certain (the largest kept ``e`` beats the next by more than ``exp``'s error), else from ``z``.
The cache stores the rows grouped by cluster (a group's rows are whole segments, read in order), so
the first pass reads the input twice: per row the argmax, the argmax without it and a NaN/inf check,
then, in cluster order, ``exp(z − max z)`` into the cache. A multi-cluster step reads its rows with one
pass per row. These per-row kernels are in :mod:`l2h.kernels` (compiled C when built, else numpy).
A singleton G* = {c} (most steps: low-confidence clusters go first) masks exactly the rows' own argmax,
so the first pass also estimates every row's ``g^m`` for the mask {h}; those steps read no rows at all.
Merges and G* scores are therefore those of the exact definition; recorded affinities are the
estimates, within ``info["affinity_bound"]`` (relative; 0.0 when the cache is off).

Exactness and determinism (why the results do not depend on summation order):

* Per-row quantities (``h``, ``g``, ``h^m``, ``g^m``) are computed row-locally with fixed numpy
  operations on a C-contiguous copy of the row in the *compute dtype* (float32 for float16/float32
  input, float64 otherwise): ``g = 1 / Σ_k exp(z_k − max z)`` and, for a mask G,
  ``g^m = 1 / Σ_{k∉G} exp(z_k − max_{j∉G} z_j)``; with ``input="probs"``: ``g = max_k p_k`` and
  ``g^m = max_{k∉G} p_k / Σ_{k∉G} p_k`` (0 when that sum is 0). ``h``/``h^m`` are first argmaxes.
* Every sum over points (cluster sums of ``g``, affinities) and over clusters (group scores) is the
  exactly rounded value of the exact sum, i.e. what ``math.fsum`` returns for the same numbers in
  any order. Group statistics are kept as exact Python integers in units of ``2**-1100`` (float64
  values split into 26-bit limbs whose ``np.bincount`` sums are exact), so they stay exact under
  merging; for ``G†`` a float ``np.bincount`` with a rigorous error bound shortlists the candidates,
  which then get ``math.fsum``. Hence ties (duplicated rows, identical clusters) are exact ties,
  broken by position, and the tests compare merges and G* scores with a literal loop for equality,
  not closeness (affinities too when the exp cache is off, and within its bound when it is on).

Definitions used (ties → earliest group in list order: singletons 0..K−1, then merged groups in
creation order; an empty cluster's mean confidence is 0):

* cluster mean ``m_c = fsum(g over D_c) / |D_c|`` (0 if ``D_c`` is empty);
* scores: ``sum_of_cluster_means`` = fsum(m_c, c∈G) (default, ICML version), ``mean_of_cluster_means``
  = fsum(m_c, c∈G) / |G|, ``sum_all`` = fsum(g over D_G), ``mean_all`` = fsum(g over D_G) / |D_G|
  (0 if empty);
* affinity ``a(G) = fsum(g^m(x; G*) for x ∈ D_{G*} with h^m(x; G*) ∈ G) / |G|``.
"""

from __future__ import annotations

import functools
import heapq
import math
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from l2h import kernels
from l2h.errors import InputError
from l2h.progress import progress_bar
from l2h.hierarchy import Hierarchy
from l2h.validation import check_block, check_input_kind, check_shape

AGGREGATIONS = ("sum_of_cluster_means", "sum_all", "mean_all", "mean_of_cluster_means")
STRATEGIES = ("lowest_score", "all_pairs")

_UNIT = 1100                 # exact sums are Python ints counting units of 2**-_UNIT
_SCALE = 1 << _UNIT
_LIMB = 26                   # bits per limb: a bincount of < 2**27 limbs sums exactly in float64
_BINCOUNT_CHUNK = 1 << 26
_CHUNK_ELEMENTS = 1 << 18    # rows per internal block ≈ this / K (cache-sized; capped by block_rows)
_EXP_FLOOR = math.exp(-40)   # exp cache: e_{h^m} ≥ this (m within 41 of max z), else the exact definition
_EXP_TINY = 2.0 ** -120      # exp cache: absolute error of an underflowed exp


# ----------------------------------------------------------------------------- exact arithmetic
def _exact_int(value: float) -> int:
    """``value`` (a float ≥ 2**-1074 in magnitude or 0) as an exact multiple of 2**-_UNIT."""
    num, den = float(value).as_integer_ratio()
    return num * (_SCALE // den)


def _to_float(exact: int) -> float:
    """Correctly rounded float of an exact sum (Python int division rounds correctly)."""
    return exact / _SCALE


def _exact_sums(values: np.ndarray, labels: np.ndarray, n_labels: int) -> dict[int, int]:
    """Exact per-label sums of non-negative finite floats: {label: sum in units of 2**-_UNIT}.

    Only labels that occur are returned. Each value is split into 26-bit limbs on a common grid
    (exact), and each limb's per-label ``np.bincount`` is a sum of integers below 2**53, hence exact.
    """
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.intp)
    present = np.flatnonzero(np.bincount(labels, minlength=n_labels)).tolist()
    out = dict.fromkeys(present, 0)
    positive = values[values > 0]
    if positive.size == 0:
        return out
    top = int(np.frexp(positive.max())[1])                      # all values < 2**top
    low = max(int(np.frexp(positive.min())[1]) - 53, -1074)     # all values are multiples of 2**low
    n_limbs = -(-(top - low) // _LIMB)
    for start in range(0, values.size, _BINCOUNT_CHUNK):
        rest = values[start:start + _BINCOUNT_CHUNK].copy()
        lab = labels[start:start + _BINCOUNT_CHUNK]
        for i in range(n_limbs):
            q = top - _LIMB * (i + 1)
            limb = np.floor(np.ldexp(rest, -q))
            rest -= np.ldexp(limb, q)
            sums = np.bincount(lab, weights=limb, minlength=n_labels)[present]
            shift = q + _UNIT
            for c, s in zip(present, sums.astype(np.int64).tolist()):
                if s:
                    out[c] += s << shift
    return out


# ----------------------------------------------------------------------------- per-row statistics
def _compute_dtype(dtype: np.dtype) -> type:
    return np.float32 if dtype in (np.float16, np.float32) else np.float64


def _block_rows(block_rows: int, k: int) -> int:
    return max(1, min(int(block_rows), _CHUNK_ELEMENTS // k))


def _row_stats(block: np.ndarray, input: str, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and confidence of each row of ``block`` (a C-contiguous copy, overwritten).

    With ``mask`` (cluster ids), the masked softmax: those columns do not exist.
    """
    rows = np.arange(block.shape[0])
    if input == "probs":
        if mask is None:
            h = block.argmax(axis=1)
            return h, block[rows, h]
        block[:, mask] = 0
        h = block.argmax(axis=1)
        top = block[rows, h]
        total = block.sum(axis=1)
        return h, np.divide(top, total, out=np.zeros_like(total), where=total > 0)
    if mask is not None:
        block[:, mask] = -np.inf
    h = block.argmax(axis=1)
    block -= block[rows, h][:, None]
    return h, _confidence(block)


def _confidence(shifted: np.ndarray) -> np.ndarray:
    """``g = 1 / Σ_k exp(z_k − max z)`` per row of ``shifted`` (= z − max z; overwritten by its exp)."""
    np.exp(shifted, out=shifted)
    return 1.0 / shifted.sum(axis=1)


def _source_name(x) -> str:
    filename = getattr(x, "filename", None)
    return Path(filename).name if filename else "scores"


def _as_matrix(scores) -> np.ndarray:
    """``scores`` as an ndarray: torch tensors (any device, ``requires_grad``, bfloat16/float16 → float32)
    are converted without importing torch for other inputs; masked arrays are refused."""
    if isinstance(scores, np.ma.MaskedArray):
        raise InputError("scores: a numpy masked array; L2H needs every value, so fill or drop the masked "
                         "entries first (e.g. scores.filled(...) or scores.compressed())")
    if isinstance(scores, np.ndarray):
        return scores
    torch = sys.modules.get("torch")   # a tensor implies torch is imported already
    if torch is not None and isinstance(scores, torch.Tensor):
        tensor = scores.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(scores)


# all_pairs: two (2K−1)² ≈ 4K² tables of 8-byte entries, plus the first step's K² temporaries (3 float64 + 1 bool)
ALL_PAIRS_BYTES_PER_K2 = 2 * 8 * 4 + 3 * 8 + 1


def all_pairs_memory(k: int) -> int:
    """Bytes that ``strategy="all_pairs"`` allocates for K clusters (O(K²); the exact sums it stores in its
    object table come on top, so this is a lower bound)."""
    return ALL_PAIRS_BYTES_PER_K2 * int(k) ** 2


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _n_threads(n_jobs: int | None) -> int:
    if n_jobs is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if int(n_jobs) < 1:
        raise InputError(f"n_jobs must be >= 1 or None, got {n_jobs}")
    return int(n_jobs)


class _Blocks:
    """Runs a function over row blocks, in a thread pool when there are several blocks.

    numpy releases the GIL inside the heavy per-block operations; every block writes to its own
    slice of the outputs, and per-row results do not depend on the blocking, so results are
    identical for any number of threads.
    """

    def __init__(self, n_threads: int):
        self.n_threads = n_threads
        self.pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None

    def run(self, fn, starts: range) -> None:
        if self.pool is None or len(starts) < 2:
            for start in starts:
                fn(start)
        else:
            for _ in self.pool.map(fn, starts):  # in order: the first failing block raises first
                pass

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class _ExpCache:
    """The first pass's ``exp(z − max z)`` of every row, in the compute dtype, and each row's estimate for
    the mask {h} (see :meth:`fill`). Position p holds input row ``order[p]``: rows sorted by cluster
    (stably), so cluster c's rows are the positions ``offsets[c]:offsets[c + 1]`` of :class:`_Clusters`.

    With it a step estimates ``g^m(x; G) = e_{h^m} / Σ_{k∉G} e_k`` from stored values: no ``exp`` per
    step and no second read of the input.
    """

    def __init__(self, n: int, k: int, work: type):
        self.exp = np.empty((n, k), dtype=work)
        self.order = np.empty(n, dtype=np.int64)       # cache position → input row (rows by cluster)
        self.second = np.empty(n, dtype=np.int64)      # h^m of the row for the mask {h}
        self.alone = np.empty(n, dtype=np.float64)     # its estimated g^m (NaN: needs the exact one)
        self.u = float(np.finfo(work).eps) / 2        # unit roundoff of the compute dtype

    def fill(self, part: slice, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Store ``exp(z − max z)`` of the input rows ``order[part]`` of ``x`` (whose argmaxes are ``h``) at
        the cache positions ``part``; return their ``g`` (:func:`_confidence`, as :func:`_row_stats`).

        Also estimates each row's ``g^m`` for the mask {h}, the one its singleton cluster uses as G*:
        ``h^m`` is ``second[part]`` (set before: the first argmax of ``z`` without column h, exact),
        ``g^m ≈ e_{h^m} / Σ_{k≠h} e_k`` (NaN where ``e_{h^m} < e⁻⁴⁰``: the exact definition is needed).
        """
        z = self.exp[part]                           # computed in place in the cache
        at = np.arange(z.shape[0])
        kernels.gather_shifted(x, self.order[part], h, z)
        g = _confidence(z)
        z[at, h] = 0
        rest = z.sum(axis=1)
        z[at, h] = 1                                 # exp(0)
        top = z[at, self.second[part]]
        with np.errstate(invalid="ignore"):          # 0/0 where every other exp underflowed
            self.alone[part] = np.where(top >= _EXP_FLOOR, top / rest, np.nan)
        return g

    @functools.cached_property
    def bound(self) -> float:
        """Relative distance between the estimate and the exact ``g^m`` of a row of K logits whose
        masked maximum ``m`` is within 41 of its maximum ``M`` (other rows get the exact definition).

        Both sum K terms in the compute dtype, in any order (γ_{K−1} each); ``exp`` is taken to be within
        4 ulp (numpy's SIMD and libm ``exp`` are). The roundings of ``z_j − M``, ``m − M`` and ``z_j − m``
        move the exponent of term ``t_j = exp(z_j − m)`` by at most ``u·(2|z_j − m| + 82)``; as
        ``t·|log t| ≤ 1/e``, all terms together move by at most ``u·(2K/e + 82)`` against a sum ≥ 1.
        One division each. Underflowed terms differ by less than the smallest normal float each,
        against a sum ≥ exp(−41) (estimate) or ≥ 1 (exact).
        """
        u, k = self.u, self.exp.shape[1]
        gamma = (k - 1) * u / (1 - (k - 1) * u)
        tiny = k * float(np.finfo(self.exp.dtype).tiny) * 8 * math.exp(41)
        total = 2 * gamma + u * (2 * k / math.e + 82) + 6 * 8 * u + 4 * u + tiny
        return 1.01 * total / (1 - total) + 2.0 ** -40


def _assign(x: np.ndarray, input: str, block_rows: int, blocks: _Blocks,
            source: str | None, cache: _ExpCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    check_input_kind(input)
    source = source or _source_name(x)
    n, k = check_shape(x, source=source)
    work = _compute_dtype(x.dtype)
    h = np.empty(n, dtype=np.int64)
    g = np.empty(n, dtype=np.float64)
    step = _block_rows(block_rows, k)

    second = np.empty(n, dtype=np.int64) if cache is not None else None

    def one(start: int) -> None:
        part = slice(start, start + step)
        raw = np.asarray(x[part])
        if cache is None:
            check_block(raw, start, input=input, source=source)
            h[part], g[part] = _row_stats(np.array(raw, dtype=work, order="C"), input)
            return
        bad = np.empty(raw.shape[0], dtype=bool)
        kernels.first_maxima(np.asarray(raw, dtype=work), h[part], second[part], bad)
        if bad.any():
            check_block(raw, start, input=input, source=source)   # names the first row with NaN or inf

    blocks.run(one, range(0, n, step))
    if cache is not None:      # second pass, in cluster order: a group's rows are whole cache segments
        cache.order[:] = np.argsort(h, kind="stable")
        cache.second[:] = second[cache.order]

        def fill(start: int) -> None:
            rows = cache.order[start:start + step]
            g[rows] = cache.fill(slice(start, start + step), x, h[rows])

        blocks.run(fill, range(0, n, step))
    return h, g


def assign(scores, *, input: str = "logits", block_rows: int = 65536,
           n_jobs: int | None = None, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hard assignment ``h`` (int64, argmax) and confidence ``g`` (float64, max softmax) per row.

    ``scores``: N×K logits (or probabilities with ``input="probs"``), ndarray or ``np.memmap``;
    validated and processed in row blocks (``n_jobs`` threads; None = all available CPUs).
    ``source`` names the matrix in error messages (default: the memmap's file name, else "scores").
    """
    blocks = _Blocks(_n_threads(n_jobs))
    try:
        return _assign(_as_matrix(scores), input, block_rows, blocks, source)
    finally:
        blocks.close()


class _Clusters:
    """Rows grouped by cluster (CSR) and the masked statistics of a set of clusters."""

    def __init__(self, x: np.ndarray, h: np.ndarray, input: str, block_rows: int, blocks: _Blocks,
                 cache: _ExpCache | None = None):
        self.x, self.input, self.blocks = x, input, blocks
        self.k = x.shape[1]
        self.work = _compute_dtype(x.dtype)
        self.step = _block_rows(block_rows, self.k)
        self.order = cache.order if cache is not None else np.argsort(h, kind="stable")
        self.counts = np.bincount(h, minlength=self.k)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.cache = cache

    def rows(self, members: list[int]) -> np.ndarray:
        """Rows of D_G, G = ``members``, ascending."""
        if len(members) == 1:
            return self.order[self.offsets[members[0]]:self.offsets[members[0] + 1]]
        return np.sort(np.concatenate([self.order[self.offsets[c]:self.offsets[c + 1]] for c in members]))

    def estimates(self, members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Rows of D_G (in cache order), their exact ``h^m``, estimated ``g^m`` (from the exp cache) and the
        bound that holds for every estimate (:meth:`_ExpCache.bound`); mask G = ``members``.

        A single cluster takes the first pass's estimates (:meth:`_ExpCache.fill`). Otherwise
        :func:`l2h.kernels.masked_estimates` reads the group's cache segments; rows where the order of
        the stored values is not certain (near ties), or whose masked maximum is more than 40 below the
        maximum, get the exact definition.
        """
        cache = self.cache
        if len(members) == 1:                     # precomputed by the first pass (_ExpCache.fill)
            part = slice(self.offsets[members[0]], self.offsets[members[0] + 1])
            rows, hm, gm = self.order[part], cache.second[part].copy(), cache.alone[part].copy()
            doubt = np.isnan(gm)
        else:
            sizes = self.counts[members]
            ends = np.cumsum(sizes)               # positions: the members' segments, one after another
            positions = np.arange(ends[-1]) + np.repeat(self.offsets[members] - (ends - sizes), sizes)
            rows = self.order[positions]
            hm = np.empty(rows.size, dtype=np.int64)
            gm = np.empty(rows.size, dtype=np.float64)
            doubt = np.empty(rows.size, dtype=bool)
            keep = kernels.keep_bits(self.k, members, cache.exp.dtype)
            alpha = 8.08 * cache.u                # exp's relative error (4 ulp), padded
            # most steps have a few hundred rows: split them over the threads (≥ 256 rows per part)
            step = max(256, -(-rows.size // self.blocks.n_threads))

            def one(start: int) -> None:
                part = slice(start, start + step)
                kernels.masked_estimates(cache.exp, positions[part], keep, alpha, _EXP_TINY, _EXP_FLOOR,
                                         hm[part], gm[part], doubt[part])

            self.blocks.run(one, range(0, rows.size, step))
        if doubt.any():
            doubt = np.flatnonzero(doubt)
            hm[doubt], gm[doubt] = self.masked(members, rows[doubt])
        return rows, hm, gm, cache.bound

    def masked(self, members: list[int], rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``h^m`` and ``g^m`` (float64) of the points of D_G (or of ``rows``), mask G = ``members``."""
        rows = self.rows(members) if rows is None else rows
        hm = np.empty(rows.size, dtype=np.int64)
        gm = np.empty(rows.size, dtype=np.float64)
        mask = np.asarray(members)
        step = self.step

        def one(start: int) -> None:
            block = np.asarray(self.x[rows[start:start + step]], dtype=self.work, order="C")
            hm[start:start + step], gm[start:start + step] = _row_stats(block, self.input, mask)

        self.blocks.run(one, range(0, rows.size, step))
        return hm, gm


class _Groups:
    """Current groups, indexed by node id (leaves 0..K−1, merged node of step t = K+t−1)."""

    def __init__(self, clusters: _Clusters, g: np.ndarray, h: np.ndarray, aggregation: str):
        k = clusters.k
        self.k, self.aggregation = k, aggregation
        counts = clusters.counts
        sums = _exact_sums(g, h, k)
        cluster_sum = [sums.get(c, 0) for c in range(k)]
        means = [_to_float(s) / int(n) if n else 0.0 for s, n in zip(cluster_sum, counts)]
        if aggregation in ("sum_of_cluster_means", "mean_of_cluster_means"):
            stat = [_exact_int(m) for m in means]
        else:
            stat = cluster_sum
        self.stat = stat + [0] * (k - 1)
        self.n_clusters = np.zeros(2 * k - 1, dtype=np.int64)
        self.n_clusters[:k] = 1
        self.n_points = np.zeros(2 * k - 1, dtype=np.int64)
        self.n_points[:k] = counts
        self.members: list[list[int] | None] = [[c] for c in range(k)] + [None] * (k - 1)
        self.node_of = np.arange(k)
        self.active = np.zeros(2 * k - 1, dtype=bool)
        self.active[:k] = True

    def score(self, node: int) -> float:
        total = _to_float(self.stat[node])
        if self.aggregation in ("sum_of_cluster_means", "sum_all"):
            return total
        if self.aggregation == "mean_of_cluster_means":
            return total / int(self.n_clusters[node])
        n = int(self.n_points[node])
        return total / n if n else 0.0

    def merge(self, a: int, b: int, new: int) -> None:
        self.members[new] = self.members[a] + self.members[b]
        self.members[a] = self.members[b] = None
        self.node_of[self.members[new]] = new
        self.stat[new] = self.stat[a] + self.stat[b]
        for values in (self.n_clusters, self.n_points):
            values[new] = values[a] + values[b]
        self.active[[a, b]] = False
        self.active[new] = True

    def first_active_except(self, node: int) -> int:
        return next(int(i) for i in np.flatnonzero(self.active) if i != node)


def _best_affinity(groups: _Groups, star: int, hm: np.ndarray, gm: np.ndarray) -> tuple[int, float]:
    """G† = argmax_G a(G) over groups G ≠ G* (ties: smallest node id), and its exact affinity.

    Float ``np.bincount`` sums (sequential, relative error ≤ (n−1)·2⁻⁵³) shortlist the groups that can
    be the maximum; only those get exactly rounded sums (``math.fsum``). Returns (-1, 0.0) when every
    affinity is 0.
    """
    target = groups.node_of[hm]
    keep = (target != star) & (gm > 0)
    target, gm = target[keep], gm[keep]
    if target.size == 0:
        return -1, 0.0
    size = 2 * groups.k - 1
    approx = np.bincount(target, weights=gm, minlength=size)
    count = np.bincount(target, minlength=size)
    nodes = np.flatnonzero(count)
    a_hat = approx[nodes] / groups.n_clusters[nodes]
    err = (count[nodes] + 4) * 2.0 ** -50 * a_hat
    shortlist = nodes[a_hat + err >= (a_hat - err).max()]
    select = target == shortlist[0] if shortlist.size == 1 else np.isin(target, shortlist)
    target, gm = target[select], gm[select]
    order = np.argsort(target, kind="stable")
    target, gm = target[order], gm[order]
    cuts = np.flatnonzero(np.diff(target)) + 1
    best, best_a = -1, 0.0
    for node, values in zip(target[np.concatenate([[0], cuts])].tolist(), np.split(gm, cuts)):
        a = math.fsum(values.tolist()) / int(groups.n_clusters[node])   # ascending node ids
        if a > best_a:
            best, best_a = node, a
    return best, best_a


def _best_affinity_estimated(clusters: _Clusters, groups: _Groups,
                             star: int) -> tuple[int, float, float, bool]:
    """G† from the exp cache's estimates of g^m; exact rows only where the bound leaves the choice open.

    With ``ε`` the estimates' bound, each estimated affinity ``â(G)`` (a float64 sum of n estimates) is within
    ``η = ε + (n + 4)·2⁻⁵²`` relative of the exact one, so a group whose upper end ``â(1 + η)`` is below the
    largest lower end ``â(1 − η)`` cannot be G†. If one group remains, it is G†; otherwise the remaining
    groups' rows get the exact definition and :func:`_best_affinity` decides (exact sums, ties by node id).
    Returns (G†, its estimated affinity, the bound ε, whether exact rows were needed); (-1, 0.0, 0.0,
    False) when D_{G*} is empty.
    """
    members = groups.members[star]
    rows, hm, gm, bound = clusters.estimates(members)
    target = groups.node_of[hm]                  # never G*: masked columns are never h^m
    if target.size == 0:
        return -1, 0.0, 0.0, False
    size = 2 * groups.k - 1
    count = np.bincount(target, minlength=size)
    nodes = np.flatnonzero(count)
    a_hat = np.bincount(target, weights=gm, minlength=size)[nodes] / groups.n_clusters[nodes]
    eta = bound + (count[nodes] + 4) * 2.0 ** -52
    best = int(a_hat.argmax())
    open_ = a_hat * (1 + eta) >= (a_hat * (1 - eta)).max()
    if np.count_nonzero(open_) == 1:
        return int(nodes[best]), float(a_hat[best]), bound, False
    select = np.isin(target, nodes[open_])
    hm_exact, gm_exact = clusters.masked(members, rows[select])
    dagger, _ = _best_affinity(groups, star, hm_exact, gm_exact)
    return dagger, float(a_hat[np.searchsorted(nodes, dagger)]), bound, True


def _lowest_score(clusters: _Clusters, groups: _Groups, bar) -> tuple[np.ndarray, np.ndarray, dict]:
    k = groups.k
    children = np.empty((k - 1, 2), dtype=np.int64)
    scores = np.empty((k - 1, 2), dtype=np.float64)
    heap = [(groups.score(c), c) for c in range(k)]
    heapq.heapify(heap)
    stats = {"affinity_bound": 0.0, "exact_affinity_steps": 0}
    for t in range(k - 1):
        score, star = heapq.heappop(heap)
        while not groups.active[star]:
            score, star = heapq.heappop(heap)
        if clusters.cache is not None:
            dagger, affinity, bound, exact = _best_affinity_estimated(clusters, groups, star)
            stats["affinity_bound"] = max(stats["affinity_bound"], bound)
            stats["exact_affinity_steps"] += exact
        else:
            hm, gm = clusters.masked(groups.members[star])
            dagger, affinity = _best_affinity(groups, star, hm, gm)
        if dagger < 0:  # every affinity is 0 (e.g. D_{G*} empty): the first other group
            dagger = groups.first_active_except(star)
        new = k + t
        groups.merge(star, dagger, new)
        heapq.heappush(heap, (groups.score(new), new))
        children[t] = star, dagger
        scores[t] = score, affinity
        bar.update()
    return children, scores, stats


def _all_pairs(clusters: _Clusters, groups: _Groups, bar) -> tuple[np.ndarray, np.ndarray, dict]:
    """All-pairs merging: a RECONSTRUCTION (the paper gives no formula; paper.md §1.5).

    For each group G, ``rp_G(c)`` is computed from D_G with mask G. ``A(G, G') = (exactly rounded
    Σ_{c∈G'} rp_G(c)) / |G'| / max(|D_G|, 1)``; pair score ``A(G, G') + A(G', G)``; the argmax pair merges
    (ties: earliest pair (i, j), i < j, in lexicographic list order). Direction: ``G*`` is the member
    with the lower group score (tie: the earlier one). Exact sums ``E[G, G']`` and the float matrix
    ``A`` are cached per node id, so a step computes rp only for the new group; O(K²) memory
    (≈ 64 MB at K = 1,000) and O(K²) work per step.
    """
    k = groups.k
    cap = 2 * k - 1
    exact = np.zeros((cap, cap), dtype=object)
    affinity = np.zeros((cap, cap), dtype=np.float64)
    children = np.empty((k - 1, 2), dtype=np.int64)
    scores = np.empty((k - 1, 2), dtype=np.float64)

    def fill_row(node: int) -> None:
        hm, gm = clusters.masked(groups.members[node])
        denom = max(int(groups.n_points[node]), 1)
        for target, s in _exact_sums(gm, groups.node_of[hm], cap).items():
            if target != node:
                exact[node, target] = s
                affinity[node, target] = _to_float(s) / int(groups.n_clusters[target]) / denom

    for c in range(k):
        fill_row(c)
    for t in range(k - 1):
        act = np.flatnonzero(groups.active)
        sub = affinity[np.ix_(act, act)]
        pair = sub + sub.T
        pair[np.tri(act.size, dtype=bool)] = -np.inf
        i, j = divmod(int(pair.argmax()), act.size)
        first, second = int(act[i]), int(act[j])
        s_first, s_second = groups.score(first), groups.score(second)
        star, dagger = (second, first) if s_second < s_first else (first, second)
        new = k + t
        groups.merge(star, dagger, new)
        others = np.flatnonzero(groups.active)
        others = others[others != new]
        exact[others, new] = exact[others, star] + exact[others, dagger]
        affinity[others, new] = [_to_float(exact[o, new]) / int(groups.n_clusters[new])
                                 / max(int(groups.n_points[o]), 1) for o in others]
        if others.size:  # the root has nothing left to compare with
            fill_row(new)
        children[t] = star, dagger
        scores[t] = min(s_first, s_second), pair[i, j]
        bar.update()
    return children, scores, {}


def l2h(scores, *, aggregation: str = "sum_of_cluster_means", strategy: str = "lowest_score",
        input: str = "logits", block_rows: int = 65536, progress: bool = False,
        n_jobs: int | None = None, source: str | None = None, return_assignment: bool = False,
        cache_gib: float = 2.0):
    """Build the L2H hierarchy over the K clusters of an N×K logit (or probability) matrix.

    Parameters
    ----------
    scores : ndarray, np.memmap or torch tensor, shape (N, K)
        Logits (``input="logits"``) or softmax probabilities (``input="probs"``), float32/float64.
        A memory-mapped ``.npy`` is read in row blocks, never whole. A tensor may be on any device, need
        gradients or be bfloat16/float16 (read as float32); masked arrays are refused.
    aggregation : one of :data:`AGGREGATIONS`
        Group score Λ (paper.md §1.4); default = the ICML version.
    strategy : one of :data:`STRATEGIES`
        ``"lowest_score"`` (the paper) or ``"all_pairs"`` (ablation; a reconstruction, see
        :func:`_all_pairs`; refused when :func:`all_pairs_memory` exceeds the available memory).
    block_rows : int
        Maximum number of rows processed at once.
    progress : bool
        Show a tqdm progress bar over the merges.
    n_jobs : int or None
        Threads for the row-block computations (None = all available CPUs); results do not
        depend on it.
    source : str or None
        Name of the matrix in error messages (default: the memmap's file name, else "scores").
    return_assignment : bool
        Also return ``h``, each point's argmax cluster (= its leaf), from the same single pass
        over the scores, so callers need not call :func:`assign` (a second read of the input).
    cache_gib : float
        Memory (GiB) that may hold ``exp(z − max z)`` of every row (N·K values of the compute dtype)
        for the default strategy on logits; 0 turns it off. With it, each step *estimates* ``g^m``
        from the stored values instead of forming ``exp`` again (0.9 → 0.34 s at 50,000 × 1,000 here),
        within a proven relative bound of the exact definition; ``G†`` is exactly the one the exact
        definition gives (where the bound cannot separate the candidates, their rows are recomputed
        exactly), so merges and G* scores are identical either way, and only the recorded affinities
        differ, by at most ``info["affinity_bound"]`` (relative).

    Returns
    -------
    Hierarchy, or (Hierarchy, h) with ``return_assignment=True``
        ``children[t] = [id(G*), id(G†)]`` for each of the K−1 steps, ``scores[t] = [score of G*,
        affinity of G†]`` (for ``all_pairs``: [lower group score, pair score]), ``info`` with the
        options, N, K, the number of empty clusters, ``affinity_bound`` (0.0: affinities exact),
        ``exact_affinity_steps`` (steps whose G† needed exact rows) and ``kernel`` (the build of the exp
        cache's per-row kernels, :func:`l2h.kernels.build`; None without the cache). Empty clusters trigger a warning.

    Examples
    --------
    Four clusters of 50 points each, where clusters 0 and 1 (and 2 and 3) are often confused:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), 50)
    >>> z = 2.0 * (y[:, None] // 2 == np.arange(4) // 2) + 3.0 * (y[:, None] == np.arange(4))
    >>> tree = l2h(z + rng.normal(size=z.shape))
    >>> tree.merges
    [((2,), (3,)), ((0,), (1,)), ((2, 3), (0, 1))]
    >>> tree.cut(2).tolist()                       # the two groups of confused clusters
    [0, 0, 1, 1]

    Probabilities (rows summing to 1) are read with ``input="probs"``; ``return_assignment`` also gives
    each point's leaf:

    >>> p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    >>> tree, leaves = l2h(p, input="probs", return_assignment=True)
    >>> np.array_equal(leaves, y)
    True
    """
    if aggregation not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not float(cache_gib) >= 0:
        raise InputError(f"cache_gib must be >= 0, got {cache_gib}")
    x = _as_matrix(scores)
    check_input_kind(input)
    n, k = check_shape(x, source=source or _source_name(x))
    if strategy == "all_pairs":
        need, have = all_pairs_memory(k), available_memory()
        if have is not None and need > have:
            raise InputError(f"{source or _source_name(x)}: strategy 'all_pairs' needs at least "
                             f"{need / 2**30:.1f} GiB for K = {k} clusters (O(K²) tables), but "
                             f"{have / 2**30:.1f} GiB are available; use strategy 'lowest_score' or fewer clusters")
    work = _compute_dtype(x.dtype)
    cache = None
    if (input == "logits" and strategy == "lowest_score"
            and n * k * np.dtype(work).itemsize <= float(cache_gib) * 2**30):
        cache = _ExpCache(n, k, work)
    blocks = _Blocks(_n_threads(n_jobs))
    try:
        h, g = _assign(x, input, block_rows, blocks, source, cache)
        clusters = _Clusters(x, h, input, block_rows, blocks, cache)
        empty = int(np.count_nonzero(clusters.counts == 0))
        if empty:
            warnings.warn(f"{empty} of {k} clusters are empty (no point has them as argmax); their "
                          "mean confidence is taken as 0, so they are merged first", UserWarning,
                          stacklevel=2)
        groups = _Groups(clusters, g, h, aggregation)
        with progress_bar(total=k - 1, desc="L2H merges", disable=not progress) as bar:
            merge = _lowest_score if strategy == "lowest_score" else _all_pairs
            children, step_scores, stats = merge(clusters, groups, bar)
    finally:
        blocks.close()
    info = {"aggregation": aggregation, "strategy": strategy, "input": input, "n_points": n,
            "k": k, "empty_clusters": empty, "compute_dtype": np.dtype(clusters.work).name,
            "affinity_bound": 0.0, "exact_affinity_steps": 0,
            "kernel": None if cache is None else kernels.build(), **stats}
    tree = Hierarchy(children, scores=step_scores, info=info)
    return (tree, h) if return_assignment else tree
