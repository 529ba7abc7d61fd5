"""Agglomerative baseline: Ward or average linkage on L2-normalised features (paper.md §3.5, §6 item 13).

The result is a point-level tree (leaves = points, ``leaves = arange(n)``); the flat clusters are the
tree cut at K, which equals scikit-learn's ``AgglomerativeClustering(n_clusters=K, linkage=...)`` up
to relabelling. The linkage is scipy's (``scipy.cluster.hierarchy.linkage``, nearest-neighbour chain).

Memory. scipy needs the condensed distance matrix, N(N−1)/2 float64, plus a working copy of it made
by the nearest-neighbour chain, so the peak is about ``BYTES_PER_PAIR · N(N−1)/2`` bytes with
BYTES_PER_PAIR = 16 (measured by ``benchmarks/agglomerative_memory.py``: the extra peak RSS of the
call fits 16.0 bytes per pair for both linkages, see ``benchmarks/results/agglomerative_memory.json``),
plus the float64 features. Within the default limit of 24 GiB this allows N ≤ 56,755 points (for
768-d features); beyond the limit the baseline stops with an :class:`~l2h.errors.InputError` that
suggests the ``subsample`` option (a uniform random subset; labels are not used, so no
stratification). The evaluated rows are returned in ``info["indices"]``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.cluster.hierarchy import linkage as scipy_linkage
from sklearn.preprocessing import normalize as l2_normalize

from l2h.baselines._common import check_features
from l2h.baselines.result import BaselineResult
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy

LINKAGES = ("ward", "average")
BYTES_PER_PAIR = 16.0
GIB = 2**30


def peak_bytes(n: int, d: int) -> float:
    """Estimated peak memory of the linkage on n points of dimension d: distances, their working copy
    and the float64 features."""
    return BYTES_PER_PAIR * n * (n - 1) / 2 + 8.0 * n * d


def max_points(limit_gib: float, d: int) -> int:
    """The largest n with ``peak_bytes(n, d) <= limit_gib`` GiB."""
    a, b, c = BYTES_PER_PAIR / 2, 8.0 * d - BYTES_PER_PAIR / 2, -limit_gib * GIB
    n = int((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))
    while peak_bytes(n + 1, d) <= limit_gib * GIB:
        n += 1
    while n > 0 and peak_bytes(n, d) > limit_gib * GIB:
        n -= 1
    return n


def subsample_indices(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted uniform random subset of ``size`` of the rows 0..n-1 (all rows when size ≥ n)."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def agglomerative(features, *, k: int, linkage: str = "ward", normalize: bool = True,
                  subsample: int | None = None, subsample_seed: int | None = None,
                  memory_limit_gib: float | None = 24.0, seed: int = 0) -> BaselineResult:
    """Agglomerative clustering of ``features`` (N × d) as a point-level :class:`Hierarchy`.

    linkage: "ward" or "average" (Euclidean). normalize: L2-normalise each row first (rows of norm 0
    stay 0). subsample: evaluate a uniform random subset of this many points (null = all), drawn with
    ``subsample_seed`` (null = ``seed``). memory_limit_gib: refuse inputs whose estimated peak memory
    (:func:`peak_bytes`) exceeds this (null = no check).
    """
    if linkage not in LINKAGES:
        raise InputError(f"agglomerative baseline: linkage must be one of {LINKAGES}, got {linkage!r}")
    x = check_features(features, k=k)
    n_all, d = x.shape
    if subsample is not None and (isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer))
                                  or subsample < k):
        raise InputError(f"agglomerative baseline: subsample must be null or an integer ≥ k = {k}, got {subsample!r}")
    sub_seed = seed if subsample_seed is None else subsample_seed
    indices = None if subsample is None else subsample_indices(n_all, int(subsample), sub_seed)
    if indices is not None:
        x = x[indices]
    n = x.shape[0]
    if memory_limit_gib is not None and peak_bytes(n, d) > memory_limit_gib * GIB:
        raise InputError(
            f"features: agglomerative {linkage} linkage on N = {n} points needs about "
            f"{peak_bytes(n, d) / GIB:.1f} GiB (16 bytes per point pair), over the limit of {memory_limit_gib} GiB "
            f"(at most {max_points(memory_limit_gib, d)} points); set baseline.subsample to at most that "
            f"(e.g. baseline.subsample={min(max_points(memory_limit_gib, d), 20000)}) or raise "
            f"baseline.memory_limit_gib")
    x = np.asarray(x, dtype=np.float64)
    if normalize:
        x = l2_normalize(x, norm="l2")
    z = scipy_linkage(x, method=linkage, metric="euclidean")
    info = {"method": "agglomerative", "linkage": linkage, "normalize": bool(normalize), "metric": "euclidean",
            "n_points": int(n), "n_features": int(d), "k": int(k)}
    hierarchy = Hierarchy.from_linkage(z, info=dict(info))
    leaves = np.arange(n, dtype=np.int64)
    clusters = np.asarray(hierarchy.cut(k), dtype=np.int64)
    info.update({"subsample": None if indices is None else int(n), "subsample_seed": None if indices is None else int(sub_seed),
                 "n_input_points": int(n_all), "indices": indices,
                 "memory_estimate_gib": peak_bytes(n, d) / GIB, "max_points": None if memory_limit_gib is None
                 else max_points(memory_limit_gib, d), "memory_limit_gib": memory_limit_gib})
    return BaselineResult(hierarchy, leaves, clusters, info)
