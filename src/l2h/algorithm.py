"""L2H: a hierarchy over the K clusters of a flat model, from its N×K logits alone.

The merge loop of "From Logits to Hierarchies" (Palumbo et al., ICML 2025), with p the softmax of the
logits, ``h(x) = argmax_k p_k(x)``, ``g(x) = max_k p_k(x)`` and ``D_c = {x : h(x) = c}``::

    groups ← [(0,), (1,), …, (K−1,)]
    repeat K − 1 times:
        G* ← the group with the lowest score s(G) = Λ(g over D_G)        (``aggregation``)
        for x in D_{G*}: h^m(x), g^m(x) ← argmax, max of the softmax without the columns of G*
        a(G) ← (1/|G|) · Σ g^m(x) over x in D_{G*} with h^m(x) in G, for every other group G
        G† ← argmax a(G);  replace G* and G† by G* + G† at the end of the list

:func:`l2h.reference.literal_l2h` is that loop transcribed literally (the readable definition, with the rules
for ties and empty clusters). This module gives the same merges and G* scores, exactly, at O(N·K) +
Σ_t |D_{G*_t}|·K cost:

* :func:`l2h` → :class:`_FirstPass` (h, g and the exp cache in one read of the input, in row blocks on
  ``n_jobs`` threads) → the merge loop :func:`_lowest_score` (or :func:`_all_pairs`, the ablation) over the
  group statistics (:class:`_Groups`: O(1) updates, a heap yields G*) and the rows grouped by cluster
  (:class:`_Clusters`: the masked softmax runs on the rows of D_{G*} only) → :class:`~l2h.hierarchy.Hierarchy`;
  with ``bootstrap``, :func:`_bootstrap` repeats the loop with resampled row weights.
* Every sum over points or clusters is exactly rounded, so results do not depend on summation order:
  :mod:`l2h.exact`.
* The exp cache (G† from the stored ``exp(z − max z)``, with a proven bound; no second read of the input):
  :mod:`l2h.expcache`; its per-row compiled kernels (numpy fallback): :mod:`l2h.kernels`.

docs/algorithm.md describes each piece and why the results are exact.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from l2h import expcache, kernels
from l2h.errors import InputError
from l2h.exact import MAX_WEIGHT, exact_int, exact_sums, to_float
from l2h.expcache import ExpCache
from l2h.hierarchy import Hierarchy
from l2h.options import AGGREGATIONS, STRATEGIES
from l2h.validation import check_block, check_input_kind, check_shape

__all__ = ["AGGREGATIONS", "MAX_WEIGHT", "STRATEGIES", "all_pairs_memory", "assign", "l2h"]

#: Rows per internal block ≈ this / K (a block of the compute dtype fits the CPU caches; capped by ``block_rows``).
_CHUNK_ELEMENTS = 1 << 18
#: Relative error allowance per term of a float64 ``np.bincount`` sum of n terms: the n − 1 additions give at
#: most (n − 1)·2⁻⁵³, one more rounding per weighted term; padded to (n + 4)·_SUM_ERROR. Used to rule out groups
#: that cannot be G† before the exact sums. _best_affinity pads 4× more (a longer shortlist only costs fsums).
_SUM_ERROR = 2.0**-52
_SHORTLIST_SUM_ERROR = 2.0**-50
#: An open G† step (the bound cannot separate the candidates) with at least this many candidate rows gets their
#: exact definition in chunks (1/8, 1/8, 1/4, 1/2 of them), stopping once one candidate is certainly the largest.
_EXACT_CHUNKS_MIN_ROWS = 4096
#: all_pairs: two (2K−1)² ≈ 4K² tables of 8-byte entries, plus the first step's K² temporaries (3 float64 + 1 bool).
ALL_PAIRS_BYTES_PER_K2 = 2 * 8 * 4 + 3 * 8 + 1


# ============================================================================ public API
def l2h(
    scores,
    *,
    aggregation: str = "sum_of_cluster_means",
    strategy: str = "lowest_score",
    input: str = "logits",
    block_rows: int = 65536,
    progress: bool = False,
    n_jobs: int | None = None,
    source: str | None = None,
    return_assignment: bool = False,
    cache_gib: float | None = None,
    weights=None,
    bootstrap: int = 0,
    seed: int = 0,
):
    """Build the L2H hierarchy over the K clusters of an N×K logit (or probability) matrix.

    Parameters
    ----------
    scores : ndarray, np.memmap or torch tensor, shape (N, K)
        Logits (``input="logits"``) or softmax probabilities (``input="probs"``), float32/float64.
        A memory-mapped ``.npy`` is read in row blocks, never whole (a read-only one's pages are released
        from this process as they are read). A tensor may be on any device, need gradients or be
        bfloat16/float16 (read as float32); masked arrays are refused.
    aggregation : one of :data:`AGGREGATIONS`
        Group score Λ (:func:`l2h.reference.literal_l2h` lists the four); default = the ICML version.
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
        ``tree.support[t]`` is the fraction of the B trees that contain the clade (set of leaves) of merge t.
        A cluster that no resampled point has as argmax is empty in that resample and follows the empty-cluster
        rule below.
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
        need, have = all_pairs_memory(k), expcache.available_memory()
        if have is not None and need > have:
            raise InputError(
                f"{source or _source_name(x)}: strategy 'all_pairs' needs at least "
                f"{need / 2**30:.1f} GiB for K = {k} clusters (O(K²) tables), but "
                f"{have / 2**30:.1f} GiB are available; use strategy 'lowest_score' or fewer clusters"
            )
    weights = _check_weights(weights, n)
    work = _compute_dtype(x.dtype)
    kind = expcache.cache_kind(n, k, work, input, strategy, cache_gib)
    cache = None if kind is None else ExpCache(n, k, work, kind)
    blocks = _Blocks(_n_threads(n_jobs))
    support = boot = first = None
    try:
        first = _FirstPass(x, input, block_rows, blocks, source, cache)
        with _progress(k - 1, "L2H merges", progress) as bar:
            children, step_scores, stats, empty = _build(first, weights, aggregation, strategy, bar)
        if empty:
            warnings.warn(
                f"{empty} of {k} clusters are empty (no point has them as argmax); their "
                "mean confidence is taken as 0, so they are merged first",
                UserWarning,
                stacklevel=2,
            )
        if bootstrap:
            support, boot = _bootstrap(
                first, children, int(bootstrap), int(seed), aggregation, strategy, progress, weights
            )
    finally:
        blocks.close()
        if first is not None:
            first.close()
    info = {
        "aggregation": aggregation,
        "strategy": strategy,
        "input": input,
        "n_points": n if weights is None else int(weights.sum()),
        "k": k,
        "empty_clusters": empty,
        "compute_dtype": np.dtype(work).name,
        "affinity_bound": 0.0,
        "exact_affinity_steps": 0,
        "exact_affinity_rows": 0,
        "exp_cache": kind,
        "kernel": None if cache is None else kernels.build(),
        **stats,
    }
    if boot is not None:
        info["bootstrap"] = boot
    tree = Hierarchy(children, scores=step_scores, info=info, support=support)
    return (tree, first.h) if return_assignment else tree


def assign(
    scores, *, input: str = "logits", block_rows: int = 65536, n_jobs: int | None = None, source: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
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


def all_pairs_memory(k: int) -> int:
    """Bytes that ``strategy="all_pairs"`` allocates for K clusters (O(K²); the exact sums it stores in its
    object table come on top, so this is a lower bound)."""
    return ALL_PAIRS_BYTES_PER_K2 * int(k) ** 2


# ============================================================================ the merge loop
def _build(
    first: _FirstPass, weights: np.ndarray | None, aggregation: str, strategy: str, bar
) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """One run of the merge loop over ``first`` (rows weighted by ``weights``): children, scores, stats
    and the number of empty clusters."""
    clusters = _Clusters(first, weights)
    groups = _Groups(first, clusters, aggregation)
    merge = _lowest_score if strategy == "lowest_score" else _all_pairs
    children, step_scores, stats = merge(clusters, groups, bar)
    return children, step_scores, stats, int(np.count_nonzero(clusters.n_points == 0))


def _lowest_score(clusters: _Clusters, groups: _Groups, bar) -> tuple[np.ndarray, np.ndarray, dict]:
    """The paper's loop: K − 1 times, G* = the group of lowest score, G† = the other group of highest affinity
    for the points of D_{G*}, merged into node K + t. Returns children, [score of G*, affinity of G†] per step
    and the exp cache's statistics.

    Scores are kept in a heap of (score, node id): a node id orders groups as the paper's list does (leaves,
    then merged groups in creation order), so ties go to the earliest group; merged-away nodes are skipped.
    """
    k = groups.k
    children = np.empty((k - 1, 2), dtype=np.int64)
    scores = np.empty((k - 1, 2), dtype=np.float64)
    heap = [(groups.score(c), c) for c in range(k)]
    heapq.heapify(heap)
    stats = {"affinity_bound": 0.0, "exact_affinity_steps": 0, "exact_affinity_rows": 0}
    for t in range(k - 1):
        score, star = heapq.heappop(heap)  # G*: the lowest score
        while not groups.active[star]:
            score, star = heapq.heappop(heap)
        # G†: the masked softmax on D_{G*} (h^m, g^m), affinities a(G), their argmax
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


def _best_affinity_estimated(clusters: _Clusters, groups: _Groups, star: int) -> tuple[int, float, float, int]:
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
    target = groups.node_of[hm]  # never G*: masked columns are never h^m
    if target.size == 0:
        return -1, 0.0, 0.0, 0
    weights = clusters.row_weights(rows)
    size = 2 * groups.k - 1
    count = np.bincount(target, minlength=size)
    nodes = np.flatnonzero(count)
    sums = np.bincount(target, weights=gm if weights is None else gm * weights, minlength=size)
    a_hat = sums[nodes] / groups.n_clusters[nodes]
    eta = bound + (count[nodes] + 4) * _SUM_ERROR
    best = int(a_hat.argmax())
    open_ = a_hat * (1 + eta) >= (a_hat * (1 - eta)).max()
    if np.count_nonzero(open_) == 1:
        return int(nodes[best]), float(a_hat[best]), bound, 0
    candidates = nodes[open_]
    select = np.flatnonzero(np.isin(target, candidates))
    select = select[np.argsort(-gm[select], kind="stable")]
    w = np.ones(select.size) if weights is None else weights[select].astype(np.float64)
    estimate, exact = gm[select] * w, np.empty(select.size)
    ends = [select.size]
    if select.size >= _EXACT_CHUNKS_MIN_ROWS:
        ends = [select.size >> 3, select.size >> 2, select.size >> 1, select.size]
    done, by = 0, target[select]
    for end in ends:
        part = slice(done, end)
        order = np.argsort(rows[select[part]], kind="stable")  # read in row order
        _, values = clusters.masked(members, rows[select[part]][order])
        exact[part][order] = values
        done = end
        if done == select.size:
            break
        known = np.bincount(by[:done], weights=exact[:done] * w[:done], minlength=size)[candidates]
        rest = np.bincount(by[done:], weights=estimate[done:], minlength=size)[candidates]
        rho = (np.bincount(by[:done], minlength=size)[candidates] + 4) * _SUM_ERROR
        eta_rest = bound + (np.bincount(by[done:], minlength=size)[candidates] + 4) * _SUM_ERROR
        scale = groups.n_clusters[candidates]
        lower = (known * (1 - rho) + rest * (1 - eta_rest)) / scale
        upper = (known * (1 + rho) + rest * (1 + eta_rest)) / scale
        win = int(lower.argmax())
        if lower[win] > np.delete(upper, win).max():
            dagger = int(candidates[win])
            return dagger, float(a_hat[np.searchsorted(nodes, dagger)]), bound, done
    dagger, _ = _best_affinity(groups, star, hm[select], exact, None if weights is None else weights[select])
    return dagger, float(a_hat[np.searchsorted(nodes, dagger)]), bound, select.size


def _best_affinity(
    groups: _Groups, star: int, hm: np.ndarray, gm: np.ndarray, weights: np.ndarray | None = None
) -> tuple[int, float]:
    """G† = argmax_G a(G) over groups G ≠ G* (ties: smallest node id), and its exact affinity.

    Float ``np.bincount`` sums (sequential, relative error ≤ (n−1)·2⁻⁵³, one more rounding per weighted
    term) shortlist the groups that can be the maximum; only those get exactly rounded sums (``math.fsum``;
    with ``weights``, the exact sums of weight·g^m of :func:`exact_sums`, which round the same).
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
    err = (count[nodes] + 4) * _SHORTLIST_SUM_ERROR * a_hat
    shortlist = nodes[a_hat + err >= (a_hat - err).max()]
    select = target == shortlist[0] if shortlist.size == 1 else np.isin(target, shortlist)
    target, gm = target[select], gm[select]
    best, best_a = -1, 0.0
    if weights is not None:
        sums = exact_sums(gm, target, size, weights[select])
        for node in sorted(sums):
            a = to_float(sums[node]) / int(groups.n_clusters[node])
            if a > best_a:
                best, best_a = node, a
        return best, best_a
    order = np.argsort(target, kind="stable")
    target, gm = target[order], gm[order]
    cuts = np.flatnonzero(np.diff(target)) + 1
    for node, values in zip(target[np.concatenate([[0], cuts])].tolist(), np.split(gm, cuts)):
        a = math.fsum(values.tolist()) / int(groups.n_clusters[node])  # ascending node ids
        if a > best_a:
            best, best_a = node, a
    return best, best_a


def _all_pairs(clusters: _Clusters, groups: _Groups, bar) -> tuple[np.ndarray, np.ndarray, dict]:
    """All-pairs merging: a RECONSTRUCTION (the paper describes the ablation but gives no formula).

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
        for target, s in exact_sums(gm, groups.node_of[hm], cap, clusters.row_weights(rows)).items():
            if target != node:
                exact[node, target] = s
                affinity[node, target] = to_float(s) / int(groups.n_clusters[target]) / denom

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
        affinity[others, new] = [
            to_float(exact[o, new]) / int(groups.n_clusters[new]) / max(int(groups.n_points[o]), 1) for o in others
        ]
        if others.size:  # the root has nothing left to compare with
            fill_row(new)
        children[t] = star, dagger
        scores[t] = min(s_first, s_second), pair[i, j]
        bar.update()
    return children, scores, {}


# ============================================================================ groups and their rows
class _Groups:
    """Current groups, indexed by node id (leaves 0..K−1, merged node of step t = K+t−1).

    A group's score comes from one additive statistic, kept as an exact sum (:mod:`l2h.exact`): the sum of its
    clusters' mean confidences (``*_of_cluster_means``) or of g over D_G (``*_all``), so a merge adds two
    integers and scores stay exactly rounded however the groups were formed.
    """

    def __init__(self, first: _FirstPass, clusters: _Clusters, aggregation: str):
        k = clusters.k
        self.k, self.aggregation = k, aggregation
        counts = clusters.n_points
        if clusters.weights is None:
            sums = exact_sums(first.g, first.h, k)
        else:
            rows = clusters.order
            sums = exact_sums(first.g[rows], first.h[rows], k, clusters.weights[rows])
        cluster_sum = [sums.get(c, 0) for c in range(k)]
        means = [to_float(s) / int(n) if n else 0.0 for s, n in zip(cluster_sum, counts)]
        if aggregation in ("sum_of_cluster_means", "mean_of_cluster_means"):
            stat = [exact_int(m) for m in means]
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
        total = to_float(self.stat[node])
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
            return self.order[self.offsets[members[0]] : self.offsets[members[0] + 1]]
        return np.concatenate([self.order[self.offsets[c] : self.offsets[c + 1]] for c in members])

    def rows(self, members: list[int]) -> np.ndarray:
        """Rows of D_G, G = ``members``, ascending."""
        rows = self.segments(members)
        return rows if len(members) == 1 else np.sort(rows)

    def row_weights(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.weights is None else self.weights[rows]

    def estimates(self, members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Rows of D_G, their exact ``h^m``, estimated ``g^m`` (from the exp cache,
        :meth:`l2h.expcache.ExpCache.estimates`) and the bound that holds for every estimate
        (:attr:`l2h.expcache.ExpCache.bound`); mask G = ``members``. Rows where the order of the stored values
        is not certain (near ties), or whose masked maximum is below the cache's floor, get the exact definition.
        """
        cache = self.cache
        rows = self.segments(members)
        if len(members) > 1:  # ascending: the cache is read in address order
            rows = np.sort(rows, kind="stable")  # (merges the sorted segments)
        hm, gm, doubt = cache.estimates(rows, members, self.blocks)
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
            part = rows[start : start + step]
            block = self.x[part] if self.reader is None else self.reader.gather(part)
            block = np.asarray(block, dtype=self.work, order="C")
            hm[start : start + step], gm[start : start + step] = _row_stats(block, self.input, mask)

        self.blocks.run(one, range(0, rows.size, step))
        return hm, gm


# ============================================================================ the first pass: h, g and the exp cache
class _FirstPass:
    """What every run over the same matrix shares: ``h`` and ``g`` of every row (one read of the input), the
    exp cache (or None), the rows sorted by cluster (stably) and the input's file reader (:class:`_FileRows`,
    or None; :meth:`close` it)."""

    def __init__(
        self, x: np.ndarray, input: str, block_rows: int, blocks: _Blocks, source: str | None, cache: ExpCache | None
    ):
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


def _assign(
    x: np.ndarray,
    input: str,
    block_rows: int,
    blocks: _Blocks,
    source: str | None,
    cache: ExpCache | None = None,
    reader: _FileRows | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``h`` and ``g`` of every row, in one read of ``x`` (row blocks in ``blocks``' threads; through
    ``reader`` if given); with ``cache``, also fills it (:meth:`l2h.expcache.ExpCache.fill`)."""
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
            check_block(raw, start, input=input, source=source)  # names the first row with NaN or inf
        if cache.kind == "full":
            z = cache.values[part]
            kernels.gather_shifted(rows, np.arange(rows.shape[0]), h[part], z)
        else:  # in place where rows is ours (the reader's buffer or a converted copy)
            z = rows if reader is not None or rows is not raw else rows.copy()
            z -= z[np.arange(z.shape[0]), h[part]][:, None]
        g[part] = _confidence(z)  # z is now e = exp(z − max z)
        cache.fill(part, z, h[part])

    blocks.run(one, range(0, n, step))
    return h, g


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


def _compute_dtype(dtype: np.dtype) -> type:
    return np.float32 if dtype in (np.float16, np.float32) else np.float64


def _block_rows(block_rows: int, k: int) -> int:
    return max(1, min(int(block_rows), _CHUNK_ELEMENTS // k))


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

        if not (
            isinstance(x, np.memmap)
            and getattr(x, "mode", None) == "r"
            and x.flags.c_contiguous
            and x.dtype.isnative
            and x.size
            and getattr(x, "filename", None)
            and hasattr(os, "preadv")
        ):
            return None
        base = x
        while isinstance(base, np.ndarray):
            base = base.base
        if not isinstance(base, mmap.mmap):
            return None
        mapped_at = np.frombuffer(base, dtype=np.uint8).__array_interface__["data"][0]
        start = x.offset - x.offset % mmap.ALLOCATIONGRANULARITY  # file offset of the mapping
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
        rows = buffer[: stop - start]
        self._fill(memoryview(rows).cast("B"), self.position + start * self.row_bytes)
        return rows

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """A new array of the given rows (one read per run of consecutive rows)."""
        out = np.empty((rows.size, self.k), dtype=self.dtype)
        view = memoryview(out).cast("B")
        size = self.row_bytes
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for first, last in zip(np.concatenate([[0], breaks]).tolist(), np.append(breaks, rows.size).tolist()):
            self._fill(view[first * size : last * size], self.position + int(rows[first]) * size)
        return out

    def close(self) -> None:
        os.close(self.fd)


# ============================================================================ bootstrap
def _bootstrap(
    first: _FirstPass,
    children: np.ndarray,
    n_resamples: int,
    seed: int,
    aggregation: str,
    strategy: str,
    progress: bool,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
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
        if ends is not None:  # the row that each drawn point belongs to
            draw = np.searchsorted(ends, draw, side="right")
        tree, _, _, empty = _build(first, np.bincount(draw, minlength=n), aggregation, strategy, _NO_BAR)
        found = set(_clades(tree, k))
        return [c in found for c in reference], empty

    hits = np.zeros(k - 1, dtype=np.int64)
    with_empty = 0
    with _progress(n_resamples, "L2H bootstrap", progress) as bar, ThreadPoolExecutor(first.blocks.n_threads) as pool:
        for found, empty in pool.map(one, range(n_resamples)):
            hits += found
            with_empty += empty > 0
            bar.update()
    info = {"resamples": n_resamples, "seed": seed, "resamples_with_empty_clusters": with_empty}
    return hits / n_resamples, info


def _clades(children: np.ndarray, k: int) -> list[int]:
    """The leaf set of each merged node (step order), as an integer with bit i set for leaf i."""
    sets = [1 << i for i in range(k)]
    for a, b in children.tolist():
        sets.append(sets[a] | sets[b])
    return sets[k:]


# ============================================================================ input checks, threads, progress
def _as_matrix(scores) -> np.ndarray:
    """``scores`` as an ndarray: torch tensors (any device, ``requires_grad``, bfloat16/float16 → float32)
    are converted without importing torch for other inputs; masked arrays are refused."""
    if isinstance(scores, np.ma.MaskedArray):
        raise InputError(
            "scores: a numpy masked array; L2H needs every value, so fill or drop the masked "
            "entries first (e.g. scores.filled(...) or scores.compressed())"
        )
    if isinstance(scores, np.ndarray):
        return scores
    torch = sys.modules.get("torch")  # a tensor implies torch is imported already
    if torch is not None and isinstance(scores, torch.Tensor):
        tensor = scores.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(scores)


def _source_name(x) -> str:
    filename = getattr(x, "filename", None)
    return Path(filename).name if filename else "scores"


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


def _progress(total: int, desc: str, show: bool):
    """A progress bar (:func:`l2h.progress.progress_bar`: redrawn on a terminal, one line per update in a log
    file), or (without ``show``) a bar that does nothing: tqdm is imported only when shown."""
    if not show:
        return contextlib.nullcontext(_NO_BAR)
    from l2h.progress import progress_bar

    return progress_bar(total=total, desc=desc)


class _NoBar:
    @staticmethod
    def update() -> None:
        pass


_NO_BAR = _NoBar()
