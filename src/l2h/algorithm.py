"""L2H: a hierarchy over the K clusters of a flat model, from its N×K logits alone.

Implements the merge loop of "From Logits to Hierarchies" (Palumbo et al., ICML 2025), see
docs/paper.md §1.3. Per step, the group with the lowest score ``G*`` (least confident) is merged into
the group ``G†`` that its points would join if ``G*``'s clusters did not exist (masked softmax).

Efficiency: ``h`` (argmax) and ``g`` (max softmax) are computed once, in one read of the input in row
blocks (``n_jobs`` threads; a read-only memory-mapped ``.npy`` is read from its file with ``pread``, so
its pages do not stay resident in the process); the row indices are grouped by cluster once (CSR layout);
group scores are additive statistics, so a merge updates them in O(1) and a heap yields ``G*``; per step
the masked softmax runs only on the rows of ``D_{G*}``. Cost: O(N·K) + Σ_t |D_{G*_t}|·K; no N×K temporary
is ever created, except the optional exp cache below, which is bounded by ``cache_gib``.

Exp cache (default strategy, logits, when it fits ``cache_gib``, by default half the available memory):
the first pass keeps ``e = exp(z − max z)`` of every row, and a step *estimates*
``g^m = e_{h^m} / Σ_{k∉G} e_k`` from it with no ``exp`` (the costliest per-value operation) and no second
read of the input. Each estimate is within a proven relative bound of the exact ``g^m``
(:meth:`_ExpCache.bound`), so G† is chosen exactly: a group whose estimated affinity cannot reach the best
one's lower end is ruled out, and only if several remain do their rows get the exact definition.
``h^m`` is taken from ``e`` only where its order is certain (the largest kept ``e`` beats the next by more
than the stored values' error), else from ``z``. The cache holds ``e`` in the compute dtype while that
takes ≤ 1 GiB ("full"), else as 16-bit codes ("compact": 6 exponent and 10 mantissa bits, relative error
≤ 2⁻¹¹, so the bound grows from ~2e-4 to ~1.2e-3 at K = 1,000 and a few more steps need exact rows); at
ImageNet scale (1.28M × 1,000) that is 2.4 GiB instead of 4.8. Rows are stored in input order, written in
the same pass that finds ``h``; a multi-cluster step reads its rows (scattered, prefetched) with one
compiled pass per row. These per-row kernels are in :mod:`l2h.kernels` (compiled C when built, else numpy).
A singleton G* = {c} (most steps: low-confidence clusters go first) masks exactly the rows' own argmax,
so the first pass also estimates every row's ``g^m`` for the mask {h}; those steps read no rows at all.
Merges and G* scores are therefore those of the exact definition; recorded affinities are the
estimates, within ``info["affinity_bound"]`` (relative; 0.0 when the cache is off).

Row weights and the bootstrap: with integer ``weights`` every statistic counts row i ``weights[i]`` times
(exact weighted sums), which gives the tree of the matrix with repeated rows without copying them; a
bootstrap resample is such a weighting, so B resamples reuse the first pass (``h``, ``g``, the exp cache)
and only repeat the merge loop (:func:`_bootstrap`).

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

import contextlib
import functools
import heapq
import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from l2h import kernels
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.options import AGGREGATIONS, STRATEGIES
from l2h.validation import check_block, check_input_kind, check_shape

__all__ = ["AGGREGATIONS", "STRATEGIES", "MAX_WEIGHT", "assign", "l2h"]

_UNIT = 1100                 # exact sums are Python ints counting units of 2**-_UNIT
_SCALE = 1 << _UNIT
_LIMB = 26                   # bits per limb: a bincount of < 2**27 limbs sums exactly in float64
_BINCOUNT_CHUNK = 1 << 26
_CHUNK_ELEMENTS = 1 << 18    # rows per internal block ≈ this / K (cache-sized; capped by block_rows)
_EXP_FLOOR = math.exp(-40)   # exp cache: e_{h^m} ≥ this (m within 41 of max z), else the exact definition
_EXP_TINY = 2.0 ** -120      # exp cache: absolute error of an underflowed exp
_CODE_ALPHA = 1.01 * 2.0 ** -11   # compact cache: relative error of a code (10 mantissa bits), padded
_CODE_TINY = 2.0 ** -72      # compact cache: absolute error of a code below 2**-62
_CODE_FLOOR = 2.0 ** -45     # compact cache: e_{h^m} ≥ this, else the exact definition
_FULL_CACHE_MAX_GIB = 1.0    # above this size the cache is compact (2 bytes a value) even when the budget allows
MAX_WEIGHT = 1 << 26         # largest row weight (exact weighted sums, :func:`_exact_sums`)


# ----------------------------------------------------------------------------- exact arithmetic
def _exact_int(value: float) -> int:
    """``value`` (a float ≥ 2**-1074 in magnitude or 0) as an exact multiple of 2**-_UNIT."""
    num, den = float(value).as_integer_ratio()
    return num * (_SCALE // den)


def _to_float(exact: int) -> float:
    """Correctly rounded float of an exact sum (Python int division rounds correctly)."""
    return exact / _SCALE


def _exact_sums(values, labels, n_labels: int, weights=None) -> dict[int, int]:
    """Exact per-label sums of non-negative finite floats: {label: sum in units of 2**-_UNIT}.

    Only labels that occur are returned. Each value is split into 26-bit limbs on a common grid
    (exact), and each limb's per-label ``np.bincount`` is a sum of integers below 2**53, hence exact.
    With ``weights`` (integers in 0..2**26, :data:`MAX_WEIGHT`), the sums are of ``weight · value``: a limb
    times a weight is below 2**52, and chunks hold at most 2**26 in total weight, so the sums stay exact.
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
    chunk = _BINCOUNT_CHUNK
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        chunk = max(1, _BINCOUNT_CHUNK // max(int(weights.max(initial=1)), 1))
    for start in range(0, values.size, chunk):
        rest = values[start:start + chunk].copy()
        lab = labels[start:start + chunk]
        w = None if weights is None else weights[start:start + chunk]
        for i in range(n_limbs):
            q = top - _LIMB * (i + 1)
            limb = np.floor(np.ldexp(rest, -q))
            rest -= np.ldexp(limb, q)
            sums = np.bincount(lab, weights=limb if w is None else limb * w, minlength=n_labels)[present]
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


def _fresh_array(shape: tuple[int, int], dtype) -> np.ndarray:
    """An uninitialised array in an anonymous memory mapping of its own. Unlike ``np.empty`` it carries no
    transparent-huge-page hint, whose synchronous compaction made first writes to a multi-GiB cache ~5×
    slower on this project's (virtual) machines."""
    import mmap

    size = shape[0] * shape[1] * np.dtype(dtype).itemsize
    if size == 0:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype).reshape(shape)


class _ExpCache:
    """The first pass's ``e = exp(z − max z)`` of every row (position = input row), and each row's estimate
    for the mask {h} (see :meth:`fill`).

    ``kind="full"`` stores ``e`` in the compute dtype; ``kind="compact"`` stores 16-bit codes of ``e``
    (:func:`l2h.kernels.encode_compact`: relative error ≤ 2⁻¹¹, a quarter of float64's size). With it a step
    estimates ``g^m(x; G) = e_{h^m} / Σ_{k∉G} e_k`` from stored values: no ``exp`` per step and no second read
    of the input.
    """

    def __init__(self, n: int, k: int, work: type, kind: str = "full"):
        self.kind, self.work = kind, work
        self.values = _fresh_array((n, k), work if kind == "full" else np.uint16)
        self.second = np.empty(n, dtype=np.int64)      # h^m of the row for the mask {h}
        self.alone = np.empty(n, dtype=np.float64)     # its estimated g^m (NaN: needs the exact one)
        self.u = float(np.finfo(work).eps) / 2        # unit roundoff of the compute dtype
        compact = kind == "compact"
        self.alpha = 8.08 * self.u + (_CODE_ALPHA if compact else 0.0)   # relative error of a stored e
        self.tiny = _EXP_TINY + (_CODE_TINY if compact else 0.0)        # absolute error of a stored e
        self.floor = _CODE_FLOOR if compact else _EXP_FLOOR             # smallest e_{h^m} estimated

    @staticmethod
    def nbytes(n: int, k: int, work: type, kind: str) -> int:
        return n * k * (np.dtype(work).itemsize if kind == "full" else 2)

    def fill(self, part: slice, z: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Store ``exp(z − max z)`` of the rows ``part`` (``z``: their ``z − max z``, compute dtype, C-contiguous;
        overwritten) and return their ``g`` (:func:`_confidence`, as :func:`_row_stats`).

        Also estimates each row's ``g^m`` for the mask {h}, the one its singleton cluster uses as G*:
        ``h^m`` is ``second[part]`` (set before: the first argmax of ``z`` without column h, exact),
        ``g^m ≈ e_{h^m} / Σ_{k≠h} e_k`` from the compute dtype's ``e`` (NaN where ``e_{h^m} < e⁻⁴⁰``: the exact
        definition is needed).
        """
        at = np.arange(z.shape[0])
        g = _confidence(z)
        z[at, h] = 0
        rest = z.sum(axis=1)
        z[at, h] = 1                                 # exp(0)
        top = z[at, self.second[part]]
        with np.errstate(invalid="ignore"):          # 0/0 where every other exp underflowed
            self.alone[part] = np.where(top >= _EXP_FLOOR, top / rest, np.nan)
        if self.kind == "compact":
            kernels.encode_compact(z, self.values[part])
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

        Compact cache: each stored term is also within 2⁻¹¹ (relative, ``_CODE_ALPHA``) or 2⁻⁷² (absolute,
        terms below 2⁻⁶²) of ``e``; ``e_{h^m} ≥ 2⁻⁴⁵``, so ratio and sum move by at most
        ``(2α + K·2⁻⁷²/2⁻⁴⁵)/(1 − α)`` on top of the bound above (the singleton estimates, from ``e``
        itself, are within the smaller one).
        """
        u, k = self.u, self.values.shape[1]
        gamma = (k - 1) * u / (1 - (k - 1) * u)
        tiny = k * float(np.finfo(self.work).tiny) * 8 * math.exp(41)
        total = 2 * gamma + u * (2 * k / math.e + 82) + 6 * 8 * u + 4 * u + tiny
        bound = 1.01 * total / (1 - total) + 2.0 ** -40
        if self.kind == "compact":
            code = 1.01 * (2 * _CODE_ALPHA + k * _CODE_TINY / _CODE_FLOOR) / (1 - _CODE_ALPHA)
            bound = bound + code + bound * code
        return bound


class _FileRows:
    """Reads row blocks of ``x``, an array inside a read-only :class:`numpy.memmap` (C order, native dtype),
    from its file with ``pread`` into one reusable buffer per thread, instead of through the mapping: a pass
    over a file larger than memory then neither keeps its pages resident in this process nor faults
    them in one by one. :meth:`open` returns None for any other input (read through ``x`` itself)."""

    def __init__(self, fd: int, name: str, position: int, row_bytes: int, k: int, dtype: np.dtype):
        self.fd, self.name, self.position, self.row_bytes = fd, name, position, row_bytes
        self.k, self.dtype = k, dtype
        self.local = threading.local()

    @classmethod
    def open(cls, x) -> "_FileRows | None":
        import mmap

        if not (isinstance(x, np.memmap) and getattr(x, "mode", None) == "r" and x.flags.c_contiguous
                and x.dtype.isnative and x.size and getattr(x, "filename", None) and hasattr(os, "preadv")):
            return None
        base = x
        while isinstance(base, np.ndarray):
            base = base.base
        if not isinstance(base, mmap.mmap):
            return None
        mapped_at = np.frombuffer(base, dtype=np.uint8).__array_interface__["data"][0]
        start = x.offset - x.offset % mmap.ALLOCATIONGRANULARITY       # file offset of the mapping
        position = start + x.__array_interface__["data"][0] - mapped_at
        try:
            fd = os.open(x.filename, os.O_RDONLY)
        except OSError:
            return None
        return cls(fd, str(x.filename), position, x.strides[0], x.shape[1], x.dtype)

    def _fill(self, view: memoryview, position: int) -> None:
        done = 0
        while done < view.nbytes:
            got = os.preadv(self.fd, [view[done:]], position + done)
            if got <= 0:
                raise InputError(f"{self.name}: the file is shorter than its header says (truncated?)")
            done += got

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (valid until this thread's next call)."""
        buffer = getattr(self.local, "buffer", None)
        if buffer is None or buffer.shape[0] < stop - start:
            buffer = self.local.buffer = np.empty((stop - start, self.k), dtype=self.dtype)
        rows = buffer[:stop - start]
        self._fill(memoryview(rows).cast("B"), self.position + start * self.row_bytes)
        return rows

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """A new array of the given rows (one read per run of consecutive rows)."""
        out = np.empty((rows.size, self.k), dtype=self.dtype)
        view = memoryview(out).cast("B")
        size = self.row_bytes
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for first, last in zip(np.concatenate([[0], breaks]).tolist(), np.append(breaks, rows.size).tolist()):
            self._fill(view[first * size:last * size], self.position + int(rows[first]) * size)
        return out

    def close(self) -> None:
        os.close(self.fd)


def _assign(x: np.ndarray, input: str, block_rows: int, blocks: _Blocks, source: str | None,
            cache: _ExpCache | None = None, reader: _FileRows | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``h`` and ``g`` of every row, in one read of ``x`` (row blocks in ``blocks``' threads; through
    ``reader`` if given); with ``cache``, also fills it (:meth:`_ExpCache.fill`)."""
    check_input_kind(input)
    source = source or _source_name(x)
    n, k = check_shape(x, source=source)
    work = _compute_dtype(x.dtype)
    h = np.empty(n, dtype=np.int64)
    g = np.empty(n, dtype=np.float64)
    step = _block_rows(block_rows, k)

    def one(start: int) -> None:
        part = slice(start, start + step)
        raw = np.asarray(x[part]) if reader is None else reader.read(start, min(start + step, n))
        if cache is None:
            check_block(raw, start, input=input, source=source)
            h[part], g[part] = _row_stats(np.array(raw, dtype=work, order="C"), input)
            return
        rows = np.ascontiguousarray(raw, dtype=work)
        bad = np.empty(rows.shape[0], dtype=bool)
        kernels.first_maxima(rows, h[part], cache.second[part], bad)
        if bad.any():
            check_block(raw, start, input=input, source=source)   # names the first row with NaN or inf
        if cache.kind == "full":
            z = cache.values[part]
            kernels.gather_shifted(rows, np.arange(rows.shape[0]), h[part], z)
        else:             # in place where rows is ours (the reader's buffer or a converted copy)
            z = rows if reader is not None or rows is not raw else rows.copy()
            z -= z[np.arange(z.shape[0]), h[part]][:, None]
        g[part] = cache.fill(part, z, h[part])

    blocks.run(one, range(0, n, step))
    return h, g


def assign(scores, *, input: str = "logits", block_rows: int = 65536,
           n_jobs: int | None = None, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hard assignment ``h`` (int64, argmax) and confidence ``g`` (float64, max softmax) per row.

    ``scores``: N×K logits (or probabilities with ``input="probs"``), ndarray or ``np.memmap``;
    validated and processed in row blocks (``n_jobs`` threads; None = all available CPUs).
    ``source`` names the matrix in error messages (default: the memmap's file name, else "scores").
    """
    x = _as_matrix(scores)
    blocks = _Blocks(_n_threads(n_jobs))
    reader = _FileRows.open(x)
    try:
        return _assign(x, input, block_rows, blocks, source, reader=reader)
    finally:
        blocks.close()
        if reader is not None:
            reader.close()


class _FirstPass:
    """What every run over the same matrix shares: ``h`` and ``g`` of every row (one read of the input), the
    exp cache (or None), the rows sorted by cluster (stably) and the input's file reader (:class:`_FileRows`,
    or None; :meth:`close` it)."""

    def __init__(self, x: np.ndarray, input: str, block_rows: int, blocks: _Blocks, source: str | None,
                 cache: _ExpCache | None):
        self.x, self.input, self.blocks, self.cache = x, input, blocks, cache
        self.k = x.shape[1]
        self.work = _compute_dtype(x.dtype)
        self.step = _block_rows(block_rows, self.k)
        self.reader = _FileRows.open(x)
        try:
            self.h, self.g = _assign(x, input, block_rows, blocks, source, cache, self.reader)
        except BaseException:
            self.close()
            raise
        self.order = np.argsort(self.h, kind="stable")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class _Clusters:
    """One run's rows grouped by cluster (CSR; rows of weight 0 are left out) and the masked statistics of a
    set of clusters. ``counts``: rows per cluster; ``n_points``: points per cluster (Σ weights)."""

    def __init__(self, first: _FirstPass, weights: np.ndarray | None = None):
        self.x, self.input, self.blocks, self.cache = first.x, first.input, first.blocks, first.cache
        self.k, self.work, self.step, self.reader = first.k, first.work, first.step, first.reader
        self.weights = weights
        if weights is None:
            self.order = first.order
            self.counts = np.bincount(first.h, minlength=self.k)
            self.n_points = self.counts
        else:
            self.order = first.order[weights[first.order] > 0]
            self.counts = np.bincount(first.h[self.order], minlength=self.k)
            self.n_points = np.bincount(first.h, weights=weights, minlength=self.k).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])

    def segments(self, members: list[int]) -> np.ndarray:
        """Rows of D_G, G = ``members``, cluster by cluster (each ascending)."""
        if len(members) == 1:
            return self.order[self.offsets[members[0]]:self.offsets[members[0] + 1]]
        return np.concatenate([self.order[self.offsets[c]:self.offsets[c + 1]] for c in members])

    def rows(self, members: list[int]) -> np.ndarray:
        """Rows of D_G, G = ``members``, ascending."""
        rows = self.segments(members)
        return rows if len(members) == 1 else np.sort(rows)

    def row_weights(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.weights is None else self.weights[rows]

    def estimates(self, members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Rows of D_G, their exact ``h^m``, estimated ``g^m`` (from the exp cache) and the bound that holds
        for every estimate (:meth:`_ExpCache.bound`); mask G = ``members``.

        A single cluster takes the first pass's estimates (:meth:`_ExpCache.fill`). Otherwise
        :func:`l2h.kernels.masked_estimates` reads the rows from the cache; rows where the order of the
        stored values is not certain (near ties), or whose masked maximum is below the cache's floor, get
        the exact definition.
        """
        cache = self.cache
        if len(members) == 1:                     # precomputed by the first pass (_ExpCache.fill)
            rows = self.segments(members)
            hm, gm = cache.second[rows], cache.alone[rows]
            doubt = np.isnan(gm)
        else:                                     # ascending: the cache is read in address order
            rows = np.sort(self.segments(members), kind="stable")   # (merges the sorted segments)
            hm = np.empty(rows.size, dtype=np.int64)
            gm = np.empty(rows.size, dtype=np.float64)
            doubt = np.empty(rows.size, dtype=bool)
            keep = kernels.keep_bits(self.k, members, cache.values.dtype)
            # most steps have a few hundred rows: split them over the threads (≥ 256 rows per part)
            step = max(256, -(-rows.size // self.blocks.n_threads))

            def one(start: int) -> None:
                part = slice(start, start + step)
                kernels.masked_estimates(cache.values, rows[part], keep, cache.alpha, cache.tiny, cache.floor,
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
            part = rows[start:start + step]
            block = self.x[part] if self.reader is None else self.reader.gather(part)
            block = np.asarray(block, dtype=self.work, order="C")
            hm[start:start + step], gm[start:start + step] = _row_stats(block, self.input, mask)

        self.blocks.run(one, range(0, rows.size, step))
        return hm, gm


class _Groups:
    """Current groups, indexed by node id (leaves 0..K−1, merged node of step t = K+t−1)."""

    def __init__(self, first: _FirstPass, clusters: _Clusters, aggregation: str):
        k = clusters.k
        self.k, self.aggregation = k, aggregation
        counts = clusters.n_points
        if clusters.weights is None:
            sums = _exact_sums(first.g, first.h, k)
        else:
            rows = clusters.order
            sums = _exact_sums(first.g[rows], first.h[rows], k, clusters.weights[rows])
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


def _best_affinity(groups: _Groups, star: int, hm: np.ndarray, gm: np.ndarray,
                   weights: np.ndarray | None = None) -> tuple[int, float]:
    """G† = argmax_G a(G) over groups G ≠ G* (ties: smallest node id), and its exact affinity.

    Float ``np.bincount`` sums (sequential, relative error ≤ (n−1)·2⁻⁵³, one more rounding per weighted
    term) shortlist the groups that can be the maximum; only those get exactly rounded sums (``math.fsum``;
    with ``weights``, the exact sums of weight·g^m of :func:`_exact_sums`, which round the same).
    Returns (-1, 0.0) when every affinity is 0.
    """
    target = groups.node_of[hm]
    keep = (target != star) & (gm > 0)
    target, gm = target[keep], gm[keep]
    if target.size == 0:
        return -1, 0.0
    weights = None if weights is None else weights[keep]
    size = 2 * groups.k - 1
    approx = np.bincount(target, weights=gm if weights is None else gm * weights, minlength=size)
    count = np.bincount(target, minlength=size)
    nodes = np.flatnonzero(count)
    a_hat = approx[nodes] / groups.n_clusters[nodes]
    err = (count[nodes] + 4) * 2.0 ** -50 * a_hat
    shortlist = nodes[a_hat + err >= (a_hat - err).max()]
    select = target == shortlist[0] if shortlist.size == 1 else np.isin(target, shortlist)
    target, gm = target[select], gm[select]
    best, best_a = -1, 0.0
    if weights is not None:
        sums = _exact_sums(gm, target, size, weights[select])
        for node in sorted(sums):
            a = _to_float(sums[node]) / int(groups.n_clusters[node])
            if a > best_a:
                best, best_a = node, a
        return best, best_a
    order = np.argsort(target, kind="stable")
    target, gm = target[order], gm[order]
    cuts = np.flatnonzero(np.diff(target)) + 1
    for node, values in zip(target[np.concatenate([[0], cuts])].tolist(), np.split(gm, cuts)):
        a = math.fsum(values.tolist()) / int(groups.n_clusters[node])   # ascending node ids
        if a > best_a:
            best, best_a = node, a
    return best, best_a


def _best_affinity_estimated(clusters: _Clusters, groups: _Groups,
                             star: int) -> tuple[int, float, float, int]:
    """G† from the exp cache's estimates of g^m; exact rows only where the bound leaves the choice open.

    With ``ε`` the estimates' bound, each estimated affinity ``â(G)`` (a float64 sum of n estimates, weighted
    or not) is within ``η = ε + (n + 4)·2⁻⁵²`` relative of the exact one, so a group whose upper end
    ``â(1 + η)`` is below the largest lower end ``â(1 − η)`` cannot be G†. If one group remains, it is G†.
    Otherwise the remaining groups' rows get the exact definition, largest estimates (largest uncertainty)
    first, in chunks of 1/8, 1/8, 1/4 and 1/2 of them: after each chunk, each group's affinity lies between
    its exact part and its estimated rest, each with its bound; once one group's lower end is above every
    other's upper end, it is G†. Only when no chunk separates them do all exact rows decide through
    :func:`_best_affinity` (exact sums, ties by node id). Returns (G†, its estimated affinity, the bound ε,
    the number of rows that got the exact definition); (-1, 0.0, 0.0, 0) when D_{G*} is empty.
    """
    members = groups.members[star]
    rows, hm, gm, bound = clusters.estimates(members)
    target = groups.node_of[hm]                  # never G*: masked columns are never h^m
    if target.size == 0:
        return -1, 0.0, 0.0, 0
    weights = clusters.row_weights(rows)
    size = 2 * groups.k - 1
    count = np.bincount(target, minlength=size)
    nodes = np.flatnonzero(count)
    sums = np.bincount(target, weights=gm if weights is None else gm * weights, minlength=size)
    a_hat = sums[nodes] / groups.n_clusters[nodes]
    eta = bound + (count[nodes] + 4) * 2.0 ** -52
    best = int(a_hat.argmax())
    open_ = a_hat * (1 + eta) >= (a_hat * (1 - eta)).max()
    if np.count_nonzero(open_) == 1:
        return int(nodes[best]), float(a_hat[best]), bound, 0
    candidates = nodes[open_]
    select = np.flatnonzero(np.isin(target, candidates))
    select = select[np.argsort(-gm[select], kind="stable")]
    w = np.ones(select.size) if weights is None else weights[select].astype(np.float64)
    estimate, exact = gm[select] * w, np.empty(select.size)
    ends = [select.size] if select.size < 4096 else [select.size >> 3, select.size >> 2, select.size >> 1,
                                                      select.size]
    done, by = 0, target[select]
    for end in ends:
        part = slice(done, end)
        order = np.argsort(rows[select[part]], kind="stable")        # read in row order
        _, values = clusters.masked(members, rows[select[part]][order])
        exact[part][order] = values
        done = end
        if done == select.size:
            break
        known = np.bincount(by[:done], weights=exact[:done] * w[:done], minlength=size)[candidates]
        rest = np.bincount(by[done:], weights=estimate[done:], minlength=size)[candidates]
        rho = (np.bincount(by[:done], minlength=size)[candidates] + 4) * 2.0 ** -52
        eta_rest = bound + (np.bincount(by[done:], minlength=size)[candidates] + 4) * 2.0 ** -52
        scale = groups.n_clusters[candidates]
        lower = (known * (1 - rho) + rest * (1 - eta_rest)) / scale
        upper = (known * (1 + rho) + rest * (1 + eta_rest)) / scale
        win = int(lower.argmax())
        if lower[win] > np.delete(upper, win).max():
            dagger = int(candidates[win])
            return dagger, float(a_hat[np.searchsorted(nodes, dagger)]), bound, done
    dagger, _ = _best_affinity(groups, star, hm[select], exact, None if weights is None else weights[select])
    return dagger, float(a_hat[np.searchsorted(nodes, dagger)]), bound, select.size


def _lowest_score(clusters: _Clusters, groups: _Groups, bar) -> tuple[np.ndarray, np.ndarray, dict]:
    k = groups.k
    children = np.empty((k - 1, 2), dtype=np.int64)
    scores = np.empty((k - 1, 2), dtype=np.float64)
    heap = [(groups.score(c), c) for c in range(k)]
    heapq.heapify(heap)
    stats = {"affinity_bound": 0.0, "exact_affinity_steps": 0, "exact_affinity_rows": 0}
    for t in range(k - 1):
        score, star = heapq.heappop(heap)
        while not groups.active[star]:
            score, star = heapq.heappop(heap)
        if clusters.cache is not None:
            dagger, affinity, bound, exact = _best_affinity_estimated(clusters, groups, star)
            stats["affinity_bound"] = max(stats["affinity_bound"], bound)
            stats["exact_affinity_steps"] += exact > 0
            stats["exact_affinity_rows"] += exact
        else:
            rows = clusters.rows(groups.members[star])
            hm, gm = clusters.masked(groups.members[star], rows)
            dagger, affinity = _best_affinity(groups, star, hm, gm, clusters.row_weights(rows))
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
    """All-pairs merging: a RECONSTRUCTION (the paper gives no formula; docs/paper.md §1.5).

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
        rows = clusters.rows(groups.members[node])
        hm, gm = clusters.masked(groups.members[node], rows)
        denom = max(int(groups.n_points[node]), 1)
        for target, s in _exact_sums(gm, groups.node_of[hm], cap, clusters.row_weights(rows)).items():
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


def _available_memory() -> int | None:
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
            if controllers == "":                                          # cgroup v2
                folder, files = Path("/sys/fs/cgroup") / path.lstrip("/"), ("memory.max", "memory.current")
            elif "memory" in controllers.split(","):                       # cgroup v1
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


def _cache_kind(n: int, k: int, work: type, input: str, strategy: str, cache_gib: float | None) -> str | None:
    """The exp cache to build: "full" (compute dtype) while it fits the budget and 1 GiB, else "compact" if
    that fits, else None. The budget is ``cache_gib`` GiB, or half the available memory (2 GiB where that
    is unknown)."""
    if input != "logits" or strategy != "lowest_score":
        return None
    if cache_gib is None:
        available = _available_memory()
        budget = 2 * 2 ** 30 if available is None else available / 2
    else:
        budget = float(cache_gib) * 2 ** 30
    if _ExpCache.nbytes(n, k, work, "full") <= min(budget, _FULL_CACHE_MAX_GIB * 2 ** 30):
        return "full"
    if _ExpCache.nbytes(n, k, work, "compact") <= budget:
        return "compact"
    return None


def _check_weights(weights, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.shape != (n,):
        raise InputError(f"weights: expected one weight per row ({n}), got shape {w.shape}")
    if w.dtype.kind == "f" and np.all(np.isfinite(w)) and np.array_equal(w, np.round(w)):
        w = w.astype(np.int64)
    if w.dtype.kind not in "iu" or (w.size and (w.min() < 0 or w.max() > MAX_WEIGHT)):
        raise InputError(f"weights: must be integer counts in 0..{MAX_WEIGHT} (how often each row is taken)")
    if not w.any():
        raise InputError("weights: every weight is 0, so no point is left")
    return w.astype(np.int64, copy=False)


def _build(first: _FirstPass, weights: np.ndarray | None, aggregation: str, strategy: str,
           bar) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """One run of the merge loop over ``first`` (rows weighted by ``weights``): children, scores, stats
    and the number of empty clusters."""
    clusters = _Clusters(first, weights)
    groups = _Groups(first, clusters, aggregation)
    merge = _lowest_score if strategy == "lowest_score" else _all_pairs
    children, step_scores, stats = merge(clusters, groups, bar)
    return children, step_scores, stats, int(np.count_nonzero(clusters.n_points == 0))


def _clades(children: np.ndarray, k: int) -> list[int]:
    """The leaf set of each merged node (step order), as an integer with bit i set for leaf i."""
    sets = [1 << i for i in range(k)]
    for a, b in children.tolist():
        sets.append(sets[a] | sets[b])
    return sets[k:]


def _bootstrap(first: _FirstPass, children: np.ndarray, n_resamples: int, seed: int, aggregation: str,
               strategy: str, progress: bool, weights: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Support of each merge of ``children``: the fraction of ``n_resamples`` trees, each built on the points
    resampled with replacement, that contain its clade (the same set of leaves).

    Resample b draws as many points as there are (N, or Σ ``weights``: row i stands for ``weights[i]`` points)
    uniformly with ``np.random.default_rng([seed, b]).integers``, and runs the merge loop with the number of
    draws of each row as its weight (:func:`l2h`'s ``weights``), reusing ``first`` (h, g and the exp cache do
    not depend on weights). Resamples run in parallel threads; each result depends only on (seed, b).
    """
    k, n = first.k, first.h.size
    reference = _clades(children, k)
    ends = None if weights is None else np.cumsum(weights)
    total = n if ends is None else int(ends[-1])

    def one(b: int) -> tuple[list[bool], int]:
        draw = np.random.default_rng([seed, b]).integers(total, size=total)
        if ends is not None:                        # the row that each drawn point belongs to
            draw = np.searchsorted(ends, draw, side="right")
        tree, _, _, empty = _build(first, np.bincount(draw, minlength=n), aggregation, strategy, _NO_BAR)
        found = set(_clades(tree, k))
        return [c in found for c in reference], empty

    hits = np.zeros(k - 1, dtype=np.int64)
    with_empty = 0
    with _progress(n_resamples, "L2H bootstrap", progress) as bar, \
            ThreadPoolExecutor(first.blocks.n_threads) as pool:
        for found, empty in pool.map(one, range(n_resamples)):
            hits += found
            with_empty += empty > 0
            bar.update()
    info = {"resamples": n_resamples, "seed": seed, "resamples_with_empty_clusters": with_empty}
    return hits / n_resamples, info


class _NoBar:
    @staticmethod
    def update() -> None:
        pass


_NO_BAR = _NoBar()


def _progress(total: int, desc: str, show: bool):
    """A progress bar (:func:`l2h.progress.progress_bar`: redrawn on a terminal, one line per update in a log
    file), or (without ``show``) a bar that does nothing: tqdm is imported only when shown."""
    if not show:
        return contextlib.nullcontext(_NO_BAR)
    from l2h.progress import progress_bar

    return progress_bar(total=total, desc=desc)


def l2h(scores, *, aggregation: str = "sum_of_cluster_means", strategy: str = "lowest_score",
        input: str = "logits", block_rows: int = 65536, progress: bool = False,
        n_jobs: int | None = None, source: str | None = None, return_assignment: bool = False,
        cache_gib: float | None = None, weights=None, bootstrap: int = 0, seed: int = 0):
    """Build the L2H hierarchy over the K clusters of an N×K logit (or probability) matrix.

    Parameters
    ----------
    scores : ndarray, np.memmap or torch tensor, shape (N, K)
        Logits (``input="logits"``) or softmax probabilities (``input="probs"``), float32/float64.
        A memory-mapped ``.npy`` is read in row blocks, never whole (a read-only one's pages are released
        from this process as they are read). A tensor may be on any device, need gradients or be
        bfloat16/float16 (read as float32); masked arrays are refused.
    aggregation : one of :data:`AGGREGATIONS`
        Group score Λ (docs/paper.md §1.4); default = the ICML version.
    strategy : one of :data:`STRATEGIES`
        ``"lowest_score"`` (the paper) or ``"all_pairs"`` (ablation; a reconstruction, see
        :func:`_all_pairs`; refused when :func:`all_pairs_memory` exceeds the available memory).
    block_rows : int
        Maximum number of rows processed at once.
    progress : bool
        Show tqdm progress bars over the merges (and the bootstrap resamples).
    n_jobs : int or None
        Threads for the row-block computations and the bootstrap resamples (None = all available CPUs);
        results do not depend on it.
    source : str or None
        Name of the matrix in error messages (default: the memmap's file name, else "scores").
    return_assignment : bool
        Also return ``h``, each point's argmax cluster (= its leaf), from the same single pass
        over the scores, so callers need not call :func:`assign` (a second read of the input).
    cache_gib : float or None
        Memory (GiB) that may hold ``exp(z − max z)`` of every row for the default strategy on logits: in the
        compute dtype while that fits and is ≤ 1 GiB, else as 16-bit codes (N·K·2 bytes); 0 turns it off;
        None (default) = half the memory available now (capped by the process's cgroup limit). With it,
        each step *estimates* ``g^m`` from the stored values instead of forming ``exp`` again, within a
        proven relative bound of the exact definition; ``G†`` is exactly the one the exact definition gives
        (where the bound cannot separate the candidates, their rows are recomputed exactly), so merges and
        G* scores are identical either way, and only the recorded affinities differ, by at most
        ``info["affinity_bound"]`` (relative; larger for the 16-bit codes).
    weights : array of N non-negative integers, optional
        How often each row counts (row weights, e.g. a bootstrap resample's counts): the result is that of
        the matrix with each row repeated ``weights[i]`` times (rows of weight 0 left out), computed
        without copying rows.
    bootstrap : int
        Number of bootstrap resamples B (0 = none). Each resample draws N points with replacement (Σ weights
        with ``weights``; as row weights, seeded by ``seed``) and is merged with the same cluster ids;
        ``tree.support[t]`` is the fraction of the B trees that contain the clade (set of leaves) of merge t. A cluster that no
        resampled point has as argmax is empty in that resample and follows the empty-cluster rule below.
    seed : int
        Seed of the bootstrap resamples: the same seed gives the same supports.

    Returns
    -------
    Hierarchy, or (Hierarchy, h) with ``return_assignment=True``
        ``children[t] = [id(G*), id(G†)]`` for each of the K−1 steps, ``scores[t] = [score of G*,
        affinity of G†]`` (for ``all_pairs``: [lower group score, pair score]), ``support`` (with
        ``bootstrap``), ``info`` with the options, N (Σ weights with ``weights``), K, the number of empty
        clusters, ``affinity_bound`` (0.0: affinities exact), ``exact_affinity_steps`` and
        ``exact_affinity_rows`` (steps whose G† needed exact rows, and how many rows), ``exp_cache``
        ("full", "compact" or None), ``kernel`` (the build of the exp cache's per-row kernels,
        :func:`l2h.kernels.build`; None without the cache) and ``bootstrap`` (resamples, seed, how many had
        empty clusters). Empty clusters (mean confidence 0, so merged first; an
        empty G* joins the first other group) trigger a warning.

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

    With ``bootstrap``, every merge gets its support (the fraction of resampled trees with the same clade):

    >>> tree = l2h(z + rng.normal(size=z.shape), bootstrap=20, seed=0)
    >>> tree.support.shape
    (3,)
    """
    if aggregation not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if cache_gib is not None and not float(cache_gib) >= 0:
        raise InputError(f"cache_gib must be >= 0 or None, got {cache_gib}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise InputError(f"bootstrap must be an integer >= 0, got {bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    x = _as_matrix(scores)
    check_input_kind(input)
    n, k = check_shape(x, source=source or _source_name(x))
    if strategy == "all_pairs":
        need, have = all_pairs_memory(k), _available_memory()
        if have is not None and need > have:
            raise InputError(f"{source or _source_name(x)}: strategy 'all_pairs' needs at least "
                             f"{need / 2**30:.1f} GiB for K = {k} clusters (O(K²) tables), but "
                             f"{have / 2**30:.1f} GiB are available; use strategy 'lowest_score' or fewer clusters")
    weights = _check_weights(weights, n)
    work = _compute_dtype(x.dtype)
    kind = _cache_kind(n, k, work, input, strategy, cache_gib)
    cache = None if kind is None else _ExpCache(n, k, work, kind)
    blocks = _Blocks(_n_threads(n_jobs))
    support = boot = first = None
    try:
        first = _FirstPass(x, input, block_rows, blocks, source, cache)
        with _progress(k - 1, "L2H merges", progress) as bar:
            children, step_scores, stats, empty = _build(first, weights, aggregation, strategy, bar)
        if empty:
            warnings.warn(f"{empty} of {k} clusters are empty (no point has them as argmax); their "
                          "mean confidence is taken as 0, so they are merged first", UserWarning,
                          stacklevel=2)
        if bootstrap:
            support, boot = _bootstrap(first, children, int(bootstrap), int(seed), aggregation, strategy,
                                       progress, weights)
    finally:
        blocks.close()
        if first is not None:
            first.close()
    info = {"aggregation": aggregation, "strategy": strategy, "input": input,
            "n_points": n if weights is None else int(weights.sum()), "k": k, "empty_clusters": empty,
            "compute_dtype": np.dtype(work).name, "affinity_bound": 0.0, "exact_affinity_steps": 0,
            "exact_affinity_rows": 0,
            "exp_cache": kind, "kernel": None if cache is None else kernels.build(), **stats}
    if boot is not None:
        info["bootstrap"] = boot
    tree = Hierarchy(children, scores=step_scores, info=info, support=support)
    return (tree, first.h) if return_assignment else tree
