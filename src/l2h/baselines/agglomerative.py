"""Agglomerative baseline: Ward or average linkage on L2-normalised features (docs/paper.md §3.5, §6 item 13).

The result is a point-level tree (leaves = points, ``leaves = arange(n)``); the flat clusters are the
tree cut at K, which equals scikit-learn's ``AgglomerativeClustering(n_clusters=K, linkage=...)`` up
to relabelling. The linkage is scipy's (``scipy.cluster.hierarchy.linkage``, nearest-neighbour chain,
Euclidean); its merge distances are kept in ``hierarchy.info["linkage_heights"]``.

Memory. scipy holds the condensed distance matrix (N(N−1)/2 float64) and the nearest-neighbour
chain works on a copy of it, so the peak is

    peak_bytes(N, d) = 16 · N(N−1)/2 + 8 · N·d + 32 MiB

(distances + working copy, the float64 normalised features, fixed overhead). Measured with
``benchmarks/agglomerative_memory.py`` (extra peak RSS of this function, N = 2,000..9,000, d = 768,
ward and average; ``benchmarks/results/agglomerative_memory.json``): the model is within 0.1 % at
N ≥ 6,000 and above the measurement below. Within the default limit of 24 GiB this allows
N ≤ 56,336 points of dimension 768 (``max_points(24, 768)``); CIFAR's 10,000 test points need 0.8 GiB.
Time grows as N²·d (N = 9,000 took 70–100 s on a shared 2-core EPYC). Beyond the limit the
baseline stops with an :class:`~l2h.errors.InputError` that suggests the ``subsample`` option (a
uniform random subset; labels are not used, so no stratification); the evaluated rows are returned
in ``info["indices"]`` and written to ``indices.npy``.
"""

from __future__ import annotations

import math

import numpy as np

from l2h.baselines._common import check_features
from l2h.baselines.result import BaselineResult
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy

LINKAGES = ("ward", "average")
BYTES_PER_PAIR = 16.0
BYTES_PER_VALUE = 8.0
OVERHEAD_BYTES = 32 * 2**20
GIB = 2**30


def peak_bytes(n: int, d: int) -> float:
    """Estimated extra peak memory of :func:`agglomerative` on n points of dimension d (see module doc)."""
    return BYTES_PER_PAIR * n * (n - 1) / 2 + BYTES_PER_VALUE * n * d + OVERHEAD_BYTES


def max_points(limit_gib: float, d: int) -> int:
    """The largest n with ``peak_bytes(n, d) <= limit_gib`` GiB (0 when even the overhead does not fit)."""
    if peak_bytes(0, d) > limit_gib * GIB:
        return 0
    a, b = BYTES_PER_PAIR / 2, BYTES_PER_VALUE * d - BYTES_PER_PAIR / 2
    c = OVERHEAD_BYTES - limit_gib * GIB
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


def agglomerative(
    features,
    *,
    k: int,
    linkage: str = "ward",
    normalize: bool = True,
    subsample: int | None = None,
    subsample_seed: int | None = None,
    memory_limit_gib: float | None = 24.0,
    seed: int = 0,
) -> BaselineResult:
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
    if subsample is not None and (
        isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)) or subsample < k
    ):
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
            f"(at most {max_points(memory_limit_gib, d)} points): subsample the points, e.g. "
            f"baseline.subsample={max_points(memory_limit_gib, d)}, or raise baseline.memory_limit_gib"
        )
    # imported here so that `import l2h.baselines` stays fast (scikit-learn alone takes seconds)
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from sklearn.preprocessing import normalize as l2_normalize

    x = np.asarray(x, dtype=np.float64)
    if normalize:
        x = l2_normalize(x, norm="l2")
    z = scipy_linkage(x, method=linkage, metric="euclidean")
    info = {
        "method": "agglomerative",
        "linkage": linkage,
        "normalize": bool(normalize),
        "metric": "euclidean",
        "n_points": int(n),
        "n_features": int(d),
        "k": int(k),
    }
    hierarchy = Hierarchy.from_linkage(z, info=dict(info))
    leaves = np.arange(n, dtype=np.int64)
    clusters = np.asarray(hierarchy.cut(k), dtype=np.int64)
    info.update(
        {
            "n_input_points": int(n_all),
            "subsample": None if indices is None else int(n),
            "subsample_seed": None if indices is None else int(sub_seed),
            "indices": indices,
            "memory_estimate_gib": peak_bytes(n, d) / GIB,
            "memory_limit_gib": memory_limit_gib,
            "max_points": None if memory_limit_gib is None else max_points(memory_limit_gib, d),
        }
    )
    return BaselineResult(hierarchy, leaves, clusters, info)
