"""L2H algorithm: exactness against the literal implementation, edge cases, invariances.

The literal implementation (:func:`l2h.reference.literal_l2h`) follows the paper's loop step by step: every
step scores every group with boolean masks over all N points, picks the lowest score, runs the masked
softmax on the points of G* and takes the group with the highest mean reassigned probability. It shares
only the documented per-row formulas and the exactly rounded sums (math.fsum) with the fast code, so
identical merge lists and scores prove the fast bookkeeping (CSR rows, exact additive statistics,
heap, caches) exact, ties included.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest

from l2h import kernels
from l2h.algorithm import AGGREGATIONS, STRATEGIES, assign, l2h
from l2h.errors import InputError
from l2h.exact import exact_sums, to_float
from l2h.reference import literal_l2h


def assert_same(x, *, aggregation, strategy="lowest_score", input="logits", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree = l2h(x, aggregation=aggregation, strategy=strategy, input=input, **kwargs)
    merges, recorded = literal_l2h(x, aggregation, strategy, input)
    assert tree.merges == merges
    recorded = np.array(recorded, dtype=np.float64).reshape(-1, 2)
    assert np.array_equal(tree.scores[:, 0], recorded[:, 0])
    bound = tree.info["affinity_bound"]  # > 0: affinities are the exp cache's estimates
    if bound:
        assert np.all(np.abs(tree.scores[:, 1] - recorded[:, 1]) <= (bound + 1e-12) * tree.scores[:, 1])
    else:
        assert np.array_equal(tree.scores[:, 1], recorded[:, 1])
    return tree


# ----------------------------------------------------------------------------- random cases
def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_case(rng: np.random.Generator, n: int, k: int, kind: str):
    """(scores, input) of one of several shapes of data that stress ties and empty clusters."""
    dtype = rng.choice([np.float32, np.float64])
    input = "logits"
    if kind == "gauss":
        x = rng.normal(size=(n, k)) * rng.uniform(0.3, 10)
    elif kind == "planted":
        n_super = max(1, k // 4)
        centre = rng.normal(size=(k, k)) * 2 + 6 * np.eye(k)
        centre += 3 * (rng.integers(n_super, size=k)[:, None] == rng.integers(n_super, size=k)[None, :])
        x = centre[rng.integers(k, size=n)] + rng.normal(size=(n, k))
    elif kind == "empty":
        x = rng.normal(size=(n, k))
        x[:, rng.random(k) < 0.3] -= 50.0
    elif kind == "duplicates":
        base = rng.normal(size=(max(1, n // 10), k)) * 2
        x = base[rng.integers(base.shape[0], size=n)]
    elif kind == "ties":
        x = rng.integers(-2, 3, size=(n, k)).astype(float)
    elif kind == "mirror":  # dyadic probabilities (exact sums) on row copies with swapped column
        input = "probs"  # pairs: mirrored clusters have exactly equal statistics
        perm = np.arange(k)
        pairs = rng.permutation(k)[: 2 * (k // 2)].reshape(-1, 2)
        perm[pairs[:, 0]], perm[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
        counts = rng.multinomial(127, rng.dirichlet(np.ones(k)), size=(n + 1) // 2)
        counts[np.arange(counts.shape[0]), rng.integers(k, size=counts.shape[0])] += 129  # unique max
        half = counts / 256.0
        x = np.concatenate([half, half[:, perm]])[rng.permutation(2 * half.shape[0])][:n]
    elif kind == "plateau":  # logits in {0, -60, -120}, one 0 per row: g = 1 and g^m = 1 / #(-60)
        x = np.where(rng.random((n, k)) < rng.uniform(0.05, 0.7), -60.0, -120.0)  # exactly: ties
        x[np.arange(n), rng.integers(k, size=n)] = 0.0  # everywhere
    elif kind == "probs":
        input = "probs"
        x = softmax(rng.normal(size=(n, k)) * rng.uniform(0.5, 5))
        onehot = rng.random(n) < 0.2
        x[onehot] = np.eye(k)[rng.integers(k, size=onehot.sum())]
    elif kind == "probs_ties":
        input = "probs"
        x = softmax(rng.integers(-2, 3, size=(n, k)).astype(float))
    else:
        raise AssertionError(kind)
    return x.astype(dtype), input


KINDS = ("gauss", "planted", "empty", "duplicates", "ties", "mirror", "plateau", "probs", "probs_ties")


def _sizes(rng, kind):
    """Log-uniform K in 2..300 and N in 1..5000 (mostly N >= 3K, except for the "empty" kind), capped
    so that the literal loop stays cheap."""
    while True:
        k = int(np.exp(rng.uniform(np.log(2), np.log(300))))
        low = 1 if kind == "empty" or rng.random() < 0.15 else 3 * k
        n = int(np.exp(rng.uniform(np.log(low), np.log(5000))))
        if n * k * k <= 4e6:
            return n, k


CASES = [(seed, KINDS[seed % len(KINDS)], AGGREGATIONS[(seed // len(KINDS)) % 4]) for seed in range(216)]


@pytest.mark.parametrize("seed, kind, aggregation", CASES)
def test_matches_literal_random(seed, kind, aggregation):
    rng = np.random.default_rng(seed)
    n, k = _sizes(rng, kind)
    x, input = random_case(rng, n, k, kind)
    assert_same(x, aggregation=aggregation, input=input, block_rows=int(rng.integers(1, 2 * n + 2)))


def _compact_gib(n, k):
    """A cache budget that the full cache (4 or 8 bytes a value) exceeds and the compact one (2) fits."""
    return n * k * 3 / 2**30


@pytest.mark.parametrize(
    "n, k, kind",
    [
        (5000, 40, "planted"),
        (5000, 12, "ties"),
        (1200, 300, "gauss"),
        (400, 300, "empty"),
        (5000, 60, "probs"),
        (3000, 80, "mirror"),
    ],
)
@pytest.mark.parametrize(
    "cache, kernel",
    [("full", "compiled"), ("full", "numpy"), ("compact", "compiled"), ("compact", "numpy"), (None, None)],
)
def test_matches_literal_large(n, k, kind, cache, kernel):
    rng = np.random.default_rng(n + k)
    x, input = random_case(rng, n, k, kind)
    cache_gib = {"full": 2.0, "compact": _compact_gib(n, k), None: 0.0}[cache]
    with kernels.numpy_build() if kernel == "numpy" else contextlib.nullcontext():
        tree = assert_same(x, aggregation="sum_of_cluster_means", input=input, block_rows=1000, cache_gib=cache_gib)
    cached = input == "logits" and cache is not None
    assert (tree.info["affinity_bound"] > 0) == cached
    assert tree.info["exp_cache"] == (cache if cached else None)
    assert tree.info["kernel"] == (kernel if cached else None)


# ----------------------------------------------------------------------------- exp cache
def _estimates_and_exact(x, members_list, kind="full"):
    """(estimates, exact) of g^m per member set, through the internals the merge loop uses."""
    from l2h.algorithm import _Blocks, _Clusters, _compute_dtype, _FirstPass
    from l2h.expcache import ExpCache

    blocks = _Blocks(2)
    try:
        cache = ExpCache(*x.shape, _compute_dtype(x.dtype), kind)
        clusters = _Clusters(_FirstPass(x, "logits", 97, blocks, None, cache))
        out = []
        for members in members_list:
            rows, hm, gm, bound = clusters.estimates(members)
            hm_exact, gm_exact = clusters.masked(members, rows)
            out.append((hm, gm, bound, hm_exact, gm_exact, rows))
        return out
    finally:
        blocks.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["full", "compact"])
def test_exp_cache_estimates_within_bound(dtype, kind):
    """Wide logit spreads, near-ties, exact ties and masked maxima far below the maximum: h^m is the
    exact one and every estimate is within the bound of the exact g^m."""
    rng = np.random.default_rng(7)
    n, k = 4000, 300
    x = rng.normal(size=(n, k)) * rng.choice([0.5, 5, 40], size=(n, 1))
    x[: n // 8] = np.round(x[: n // 8])  # exact ties
    x[n // 8 : n // 4, 1] = x[n // 8 : n // 4, 0] * (1 + 1e-7)  # near-ties
    x[n // 4 : n // 3, rng.integers(k, size=n // 3 - n // 4)] += 200  # far above the rest
    x = x.astype(dtype)
    h = x.argmax(axis=1)
    members_list = [[int(c)] for c in np.bincount(h, minlength=k).argsort()[-5:]]
    members_list += [rng.choice(k, size=m, replace=False).tolist() for m in (2, 17, 150, 299)]
    checked = 0
    for hm, gm, bound, hm_exact, gm_exact, _ in _estimates_and_exact(x, members_list, kind):
        assert 0 < bound < (1e-3 if kind == "full" else 2e-3)
        assert np.array_equal(hm, hm_exact)
        assert np.all(np.abs(gm - gm_exact) <= bound * gm)
        checked += hm.size
    assert checked > 1000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["full", "compact"])
def test_exp_cache_singleton_estimates_from_the_first_pass(dtype, kind):
    """Singleton masks use the first pass's second choice and sum: on every cluster of rows with exact ties
    for the second place and rows whose second logit is 60–200 below the first (subnormal or zero exps:
    they need the exact definition), h^m is the exact one and every estimate is within the bound."""
    rng = np.random.default_rng(9)
    n, k = 3000, 40
    x = np.round(rng.normal(size=(n, k)) * 3)  # many exact ties
    far = rng.random(n) < 0.1
    x[far, rng.integers(k, size=int(far.sum()))] += rng.choice([60, 95, 200], size=int(far.sum()))
    x = x.astype(dtype)
    h = x.argmax(axis=1)
    singletons = [[c] for c in range(k) if np.any(h == c)]
    checked = 0
    for hm, gm, bound, hm_exact, gm_exact, _ in _estimates_and_exact(x, singletons, kind):
        assert np.array_equal(hm, hm_exact)
        assert np.all(np.abs(gm - gm_exact) <= bound * gm)
        checked += hm.size
    assert checked == n
    second = np.sort(x, axis=1)[:, -2]
    assert np.any(x.max(axis=1) - second > 100) and np.any((x == second[:, None]).sum(axis=1) > 1)


def test_exp_cache_falls_back_on_ties_and_matches_the_exact_path():
    """Logits in {0, −60} plus one −30 in one of the last two columns (g^m = 1 exactly), and every row
    also present with those two columns swapped: clusters K−2 and K−1 get exactly equal affinities,
    which no bound can separate, so the exact rows must decide (the earlier group wins)."""
    rng = np.random.default_rng(8)
    n, k = 1500, 40
    x = np.full((n, k), -60.0, dtype=np.float32)
    x[np.arange(n), rng.integers(k - 2, size=n)] = 0.0
    x[np.arange(n), k - 2 + rng.integers(2, size=n)] = -30.0
    x = np.concatenate([x, x[:, list(range(k - 2)) + [k - 1, k - 2]]])
    cached = assert_same(x, aggregation="sum_of_cluster_means")
    exact = l2h(x, cache_gib=0)
    assert cached.info["exact_affinity_steps"] > 0
    assert exact.info["affinity_bound"] == 0.0 and exact.info["exact_affinity_steps"] == 0
    assert cached.merges == exact.merges
    assert np.array_equal(cached.scores[:, 0], exact.scores[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compact_cache_at_its_edges(dtype):
    """The compact cache's edges: runners-up just above and below its floor (2⁻⁴⁵ = e⁻³¹·²), the rest of the
    row near the lowest normal code (2⁻⁶² = e⁻⁴³), among subnormal codes or zero, near ties closer than a
    code's rounding (2⁻¹¹) and K not a multiple of the kernel's 16 lanes: h^m is the exact one, every
    estimate is within the bound, and rows whose masked maximum is below the floor take the exact value."""
    rng = np.random.default_rng(11)
    n, k = 3000, 37
    runner = rng.choice([1.0, 20.0, 30.0, 32.5], size=n)[:, None]
    bulk = np.maximum(runner, rng.choice([40.0, 43.0, 45.0, 60.0, 200.0], size=n)[:, None])
    x = np.where(rng.random((n, k)) < 0.2, -runner, -bulk) + rng.normal(size=(n, k)) * 0.05
    x[np.arange(n), rng.integers(k, size=n)] = 0.0
    near = rng.random(n) < 0.2  # two runners-up 1e-5 apart
    x[near, 1] = x[near, 0] - 1e-5
    x = x.astype(dtype)
    h = x.argmax(axis=1)
    members_list = [rng.choice(k, size=m, replace=False).tolist() for m in (2, 3, 5, 20, 36)]
    members_list += [[int(c) for c in np.flatnonzero(np.bincount(h, minlength=k))[:8]]]
    beyond_rows = checked = 0
    for members in members_list:
        ((hm, gm, bound, hm_exact, gm_exact, rows),) = _estimates_and_exact(x, [members], "compact")
        assert np.array_equal(hm, hm_exact)
        assert np.all(np.abs(gm - gm_exact) <= bound * gm)
        assert np.array_equal(np.sort(rows), np.flatnonzero(np.isin(h, members)))
        kept = np.setdiff1d(np.arange(k), members)
        beyond = x[rows][:, kept].max(axis=1) - x[rows].max(axis=1) < -31.25  # masked maximum below the floor
        assert np.array_equal(gm[beyond], gm_exact[beyond])
        beyond_rows += int(beyond.sum())
        checked += hm.size
    assert checked > 1000 and beyond_rows > 100
    assert_same(x, aggregation="sum_of_cluster_means", cache_gib=_compact_gib(n, k))


@pytest.mark.parametrize("seed, kind, strategy", [(s, KINDS[s % len(KINDS)], STRATEGIES[s // 18]) for s in range(27)])
def test_weights_equal_repeated_rows(seed, kind, strategy):
    """Integer row weights give the tree of the matrix with each row repeated that often (weight 0: left
    out, which may empty whole clusters): identical merges and G* scores with every cache, identical
    affinities without one."""
    rng = np.random.default_rng(2000 + seed)
    n, k = (int(rng.integers(50, 2000)), int(rng.integers(2, 60))) if strategy == "lowest_score" else (200, 8)
    x, input = random_case(rng, n, k, kind)
    counts = rng.integers(0, 4, size=n) * (rng.random(n) < 0.8)
    if kind == "empty":  # a whole cluster drawn 0 times
        counts[x.argmax(axis=1) == x.argmax(axis=1)[0]] = 0
    counts[rng.integers(n)] += 1
    repeated = x[np.repeat(np.arange(n), counts)]
    aggregation = AGGREGATIONS[seed % 4]
    for cache_gib in (0.0, 2.0, _compact_gib(n, k)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            weighted = l2h(
                x,
                weights=counts,
                aggregation=aggregation,
                strategy=strategy,
                input=input,
                cache_gib=cache_gib,
                block_rows=int(rng.integers(1, n + 1)),
            )
            plain = l2h(repeated, aggregation=aggregation, strategy=strategy, input=input, cache_gib=cache_gib)
        assert weighted.merges == plain.merges
        assert np.array_equal(weighted.scores[:, 0], plain.scores[:, 0])
        bound = weighted.info["affinity_bound"]
        assert bound == plain.info["affinity_bound"]
        assert np.all(np.abs(weighted.scores[:, 1] - plain.scores[:, 1]) <= 2 * bound * plain.scores[:, 1])
        assert weighted.info["n_points"] == plain.info["n_points"] == counts.sum()
        assert weighted.info["empty_clusters"] == plain.info["empty_clusters"]


def test_weights_of_ones_change_nothing():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2000, 30)).astype(np.float32) * 3
    for cache_gib in (0.0, 2.0, _compact_gib(2000, 30)):
        ones = l2h(x, weights=np.ones(2000, dtype=np.uint8), cache_gib=cache_gib)
        plain = l2h(x, cache_gib=cache_gib)
        assert ones.merges == plain.merges and np.array_equal(ones.scores, plain.scores)


# ----------------------------------------------------------------------------- bootstrap support
def _clade_support(x, tree, n_resamples, seed, **kwargs):
    """Support by definition: trees of the documented resamples (l2h with weights), clades as leaf sets."""
    n = x.shape[0]
    clades = [frozenset(a + b) for a, b in tree.merges]
    hits = np.zeros(len(clades))
    for b in range(n_resamples):
        counts = np.bincount(np.random.default_rng([seed, b]).integers(n, size=n), minlength=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            found = {frozenset(a + c) for a, c in l2h(x, weights=counts, **kwargs).merges}
        hits += [c in found for c in clades]
    return hits / n_resamples


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("planted", {}),
        ("planted", {"cache_gib": 0.0}),
        ("gauss", {"aggregation": "sum_all"}),
        ("probs", {}),
        ("empty", {}),
        ("planted", {"strategy": "all_pairs"}),
    ],
)
def test_bootstrap_support_is_the_clade_frequency(kind, kwargs):
    rng = np.random.default_rng(13)
    x, input = random_case(rng, 400 if "strategy" not in kwargs else 120, 12, kind)
    x[:2] = x[-1]  # a cluster may rest on a few points: empty in resamples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree = l2h(x, input=input, bootstrap=8, seed=5, **kwargs)
        again = l2h(x, input=input, bootstrap=8, seed=5, n_jobs=1, **kwargs)
    assert tree.merges == l2h(x, input=input, **kwargs).merges  # the tree itself is unchanged
    assert np.array_equal(tree.support, _clade_support(x, tree, 8, 5, input=input, **kwargs))
    assert np.array_equal(tree.support, again.support)  # same seed: same supports
    assert tree.support[-1] == 1.0 and tree.info["bootstrap"]["resamples"] == 8
    assert tree.info["bootstrap"]["seed"] == 5


def test_bootstrap_seeds_and_empty_resampled_clusters():
    """Planted superclasses get high support and supports depend on the seed; clusters held by one point
    are empty in about a third of the resamples (counted in info, no warning)."""
    rng = np.random.default_rng(14)
    k = 10
    centre = np.eye(k) * 4 + 2.5 * (np.arange(k)[:, None] // 5 == np.arange(k)[None, :] // 5)
    x = centre[rng.integers(0, k, size=600)] + rng.normal(size=(600, k))
    trees = [l2h(x, bootstrap=30, seed=s) for s in (0, 0, 1)]
    assert np.array_equal(trees[0].support, trees[1].support)
    assert not np.array_equal(trees[0].support, trees[2].support)
    superclasses = {frozenset(range(5)), frozenset(range(5, k))}
    planted = [t for t, (a, b) in enumerate(trees[0].merges) if frozenset(a + b) in superclasses]
    assert len(planted) == 2 and all(trees[0].support[t] >= 0.9 for t in planted)
    assert trees[0].info["bootstrap"]["resamples_with_empty_clusters"] == 0
    x[:2] = 20 * np.eye(k)[[3, 8]]  # clusters 3 and 8: one point each
    x[2:][np.isin(x[2:].argmax(axis=1), [3, 8])] = 0.0
    x[2:, 0] += 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resamples with empty clusters: no warning
        lonely = l2h(x, bootstrap=30, seed=0)
    assert np.bincount(x.argmax(axis=1), minlength=k)[[3, 8]].tolist() == [1, 1]
    assert 10 <= lonely.info["bootstrap"]["resamples_with_empty_clusters"] <= 27  # P(empty) ≈ 1 − 0.6²


def test_bootstrap_of_weighted_rows_is_that_of_the_repeated_rows():
    """With weights, resamples draw from the Σ weights points that the rows stand for: the same supports as
    the bootstrap of the matrix with repeated rows (the draws follow the same stream)."""
    rng = np.random.default_rng(18)
    x, _ = random_case(rng, 300, 9, "planted")
    counts = rng.integers(1, 4, size=300)
    weighted = l2h(x, weights=counts, bootstrap=12, seed=3)
    repeated = l2h(x[np.repeat(np.arange(300), counts)], bootstrap=12, seed=3)
    assert weighted.merges == repeated.merges
    assert np.array_equal(weighted.support, repeated.support)


def test_bad_weights_and_bootstrap_options():
    x = np.random.default_rng(15).normal(size=(20, 4))
    for weights, message in (
        (np.ones(19), "one weight per row"),
        (-np.ones(20), "integer counts"),
        (np.full(20, 0.5), "integer counts"),
        (np.zeros(20), "every weight is 0"),
        (np.full(20, 2**27), "integer counts"),
    ):
        with pytest.raises(InputError, match=message):
            l2h(x, weights=weights)
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="bootstrap"):
            l2h(x, bootstrap=bad)
        with pytest.raises(InputError, match="seed"):
            l2h(x, bootstrap=2, seed=bad)


# ----------------------------------------------------------------------------- cache choice and input reads
def test_cache_kind_follows_the_budget(monkeypatch):
    from l2h import expcache

    kind = expcache.cache_kind
    assert kind(1000, 100, np.float32, "logits", "lowest_score", 4e5 / 2**30) == "full"
    assert kind(1000, 100, np.float32, "logits", "lowest_score", 3.9e5 / 2**30) == "compact"
    assert kind(1000, 100, np.float64, "logits", "lowest_score", 7e5 / 2**30) == "compact"
    assert kind(1000, 100, np.float32, "logits", "lowest_score", 1.9e5 / 2**30) is None
    assert kind(2**20, 300, np.float32, "logits", "lowest_score", 4.0) == "compact"  # full: > 1 GiB
    assert kind(1000, 100, np.float32, "probs", "lowest_score", 4.0) is None
    assert kind(1000, 100, np.float32, "logits", "all_pairs", 4.0) is None
    monkeypatch.setattr(expcache, "available_memory", lambda: 6e5)  # auto: half of what is available
    assert kind(1000, 100, np.float32, "logits", "lowest_score", None) == "compact"
    monkeypatch.setattr(expcache, "available_memory", lambda: None)  # unknown: 2 GiB
    assert kind(2**20, 300, np.float32, "logits", "lowest_score", None) == "compact"
    assert kind(2**22, 300, np.float32, "logits", "lowest_score", None) is None
    monkeypatch.undo()
    available = expcache.available_memory()
    assert available is None or 0 < available < 2**50


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_memmap_files_are_read_directly(tmp_path, dtype):
    """A read-only memmap (and slices of it) is read from its file with pread, giving the same trees as in
    memory; other memmaps (copy-on-write, strided views) are read through the mapping."""
    from l2h.algorithm import _FileRows

    rng = np.random.default_rng(16)
    x = (rng.normal(size=(1500, 23)) * 3).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for view, reference, direct in (
        (mm, x, True),
        (mm[7:-5], x[7:-5], True),
        (mm[::2], x[::2], False),
        (np.load(tmp_path / "x.npy", mmap_mode="c"), x, False),
    ):
        reader = _FileRows.open(view)
        assert (reader is not None) == direct
        if reader is not None:
            assert np.array_equal(reader.read(3, 9), reference[3:9])
            reader.close()
        for cache_gib in (2.0, _compact_gib(*reference.shape), 0.0):
            got = l2h(view, block_rows=64, cache_gib=cache_gib)
            want = l2h(np.array(reference), block_rows=64, cache_gib=cache_gib)
            assert got.merges == want.merges and np.array_equal(got.scores, want.scores)


@pytest.mark.parametrize("kind", ["full", "compact"])
def test_open_steps_are_resolved_by_exact_chunks(monkeypatch, kind):
    """A (valid, if loose) bound of 10 % leaves most steps open: their candidates' rows get the exact
    definition chunk by chunk, and some are settled before the last chunk; merges and G* scores stay
    those of the literal loop."""
    from l2h import algorithm, expcache

    monkeypatch.setattr(expcache.ExpCache, "bound", 0.1)
    full_exact = []
    exact_all = algorithm._best_affinity
    monkeypatch.setattr(algorithm, "_best_affinity", lambda *args: full_exact.append(args[2].size) or exact_all(*args))
    rng = np.random.default_rng(17)
    x, _ = random_case(rng, 30000, 12, "duplicates")
    tree = assert_same(
        x.astype(np.float32),
        aggregation="sum_of_cluster_means",
        cache_gib=2.0 if kind == "full" else _compact_gib(30000, 12),
    )
    assert tree.info["exp_cache"] == kind
    assert tree.info["exact_affinity_steps"] > len(full_exact) >= 0
    assert tree.info["exact_affinity_rows"] > 4096


@pytest.mark.parametrize("seed", range(24))
def test_all_pairs_matches_literal(seed):
    rng = np.random.default_rng(1000 + seed)
    n, k = int(rng.integers(1, 300)), int(rng.integers(2, 16))
    x, input = random_case(rng, n, k, KINDS[seed % len(KINDS)])
    assert_same(x, aggregation=AGGREGATIONS[seed % 4], strategy="all_pairs", input=input)


@pytest.fixture(scope="module")
def real_probs(shared_data):
    out = {}
    for name in ("cifar-10", "cifar-100"):
        with np.load(shared_data / "logits" / f"wideresnet-16-4-{name}.npz") as data:
            out[name] = data["predictions"]
    assert out["cifar-100"].shape == (10000, 100)
    return out


@pytest.mark.parametrize("name", ["cifar-10", "cifar-100"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_matches_literal_real(real_probs, name, aggregation):
    p = real_probs[name]
    assert_same(p, aggregation=aggregation, input="probs")
    assert_same(np.log(p), aggregation=aggregation, input="logits")


def test_all_pairs_real_cifar10(real_probs):
    assert_same(np.log(real_probs["cifar-10"]), aggregation="sum_of_cluster_means", strategy="all_pairs")


def test_real_tree_is_sensible(real_probs):
    """CIFAR-10: the last merge separates vehicles from animals (paper-like sanity check)."""
    tree = l2h(np.log(real_probs["cifar-10"]))
    vehicles = {0, 1, 8, 9}
    last = [set(side) for side in tree.merges[-1]]
    assert vehicles in last


# ----------------------------------------------------------------------------- exact sums
def test_exact_sums_equal_fsum():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(0, 3000))
        values = rng.random(n) ** rng.uniform(1, 40)
        values[rng.random(n) < 0.05] = 0.0
        if trial % 5 == 0 and n:
            values[: n // 3] = rng.choice([5e-324, 1e-300, 1e300, 1.0, 2.0**-60], size=n // 3)
        labels = rng.integers(0, 7, size=n)
        sums = exact_sums(values, labels, 7)
        assert set(sums) == set(np.unique(labels).tolist())
        for c, s in sums.items():
            assert to_float(s) == math.fsum(values[labels == c].tolist())


# ----------------------------------------------------------------------------- behaviour
def test_hand_example():
    x = np.array([[2.0, 1.5, -5]] * 3 + [[1.4, 2.0, -5]] * 3 + [[-5, -5, 5]] * 2)
    tree = l2h(x)
    assert tree.merges == [((0,), (1,)), ((2,), (0, 1))]
    g0 = 1 / (1 + np.exp(-0.5) + np.exp(-7))
    assert tree.scores[0, 0] == pytest.approx(g0, rel=1e-12)
    assert tree.scores[0, 1] == pytest.approx(3 / (1 + np.exp(-6.5)), rel=1e-12)  # 3 points, |G†| = 1
    assert tree.info["aggregation"] == "sum_of_cluster_means" and tree.info["n_points"] == 8


def test_k2():
    x = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.5]])
    tree = l2h(x)
    assert tree.k == 2 and tree.merges == [((1,), (0,))]


def test_single_point_and_empty_clusters():
    x = np.array([[0.0, 1.0, 3.0]])
    with pytest.warns(UserWarning, match="2 of 3 clusters are empty"):
        tree = l2h(x)
    # empty clusters score 0 and are merged first (earliest first), into the first other group
    assert tree.merges == [((0,), (1,)), ((0, 1), (2,))]
    assert tree.info["empty_clusters"] == 2


def test_all_points_in_one_cluster():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    x[:, 2] += 100
    with pytest.warns(UserWarning, match="5 of 6 clusters are empty"):
        tree = l2h(x)
    # empty G* (score 0, earliest first) has all affinities 0 and joins the first other group
    assert tree.merges == [((0,), (1,)), ((3,), (2,)), ((4,), (5,)), ((0, 1), (3, 2)), ((4, 5), (0, 1, 3, 2))]
    assert_same(x, aggregation="sum_all")


def test_no_warning_without_empty_clusters():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        l2h(np.eye(4) * 3)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_invariant_to_row_constant_exact(aggregation):
    """Dyadic logits + integer row constants: the arithmetic is exact, so trees are identical."""
    rng = np.random.default_rng(2)
    x = rng.integers(-16, 17, size=(500, 25)) / 8.0  # ties included
    shifted = x + rng.integers(-100, 101, size=(500, 1))
    assert l2h(shifted, aggregation=aggregation).merges == l2h(x, aggregation=aggregation).merges


def test_invariant_to_row_constant_generic():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 50)) * 3
    shifted = x + rng.normal(size=(3000, 1)) * 20
    assert l2h(shifted).merges == l2h(x).merges


def test_probs_and_log_probs_agree():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(2000, 30)) * 2
    p = softmax(z)
    assert l2h(p, input="probs").merges == l2h(np.log(p)).merges == l2h(z).merges


def test_memmap_blocks_and_layout(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3001, 37)).astype(np.float32) * 3
    np.save(tmp_path / "logits.npy", x)
    mm = np.load(tmp_path / "logits.npy", mmap_mode="r")
    ref = l2h(x, n_jobs=1)
    for variant in (
        l2h(mm, block_rows=100, n_jobs=2),
        l2h(np.asfortranarray(x), block_rows=7),
        l2h(x[:, ::-1][:, ::-1], block_rows=1, n_jobs=3),
    ):
        assert variant.merges == ref.merges
        assert np.array_equal(variant.scores, ref.scores)


def test_assign_matches_softmax():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(1000, 13)) * 4
    h, g = assign(z, block_rows=64)
    assert h.dtype == np.int64 and g.dtype == np.float64
    assert np.array_equal(h, z.argmax(1))
    np.testing.assert_allclose(g, softmax(z).max(1), rtol=1e-13)
    hp, gp = assign(softmax(z), input="probs")
    assert np.array_equal(hp, h)
    np.testing.assert_allclose(gp, g, rtol=1e-12)


def test_return_assignment_is_assign():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(700, 11)).astype(np.float32) * 3
    tree, h = l2h(z, block_rows=50, return_assignment=True)
    assert tree.merges == l2h(z).merges
    assert np.array_equal(h, assign(z)[0])


def test_all_strategies_produce_complete_trees():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 9))
    for strategy in STRATEGIES:
        for aggregation in AGGREGATIONS:
            tree = l2h(x, aggregation=aggregation, strategy=strategy)
            assert sorted(tree.merges[-1][0] + tree.merges[-1][1]) == list(range(9))
            assert tree.info["strategy"] == strategy


def test_bad_input_and_options(tmp_path):
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(InputError, match="scores: row 2 contains NaN"):
        l2h(x)
    np.save(tmp_path / "logits.npy", x)
    with pytest.raises(InputError, match="logits.npy: row 2 contains NaN"):
        l2h(np.load(tmp_path / "logits.npy", mmap_mode="r"))
    with pytest.raises(InputError, match="my_model.pt: row 2 contains NaN"):
        l2h(x, source="my_model.pt")
    with pytest.raises(InputError, match="aggregation"):
        l2h(np.zeros((4, 3)), aggregation="median")
    with pytest.raises(InputError, match="strategy"):
        l2h(np.zeros((4, 3)), strategy="random")
    with pytest.raises(InputError, match="input"):
        l2h(np.zeros((4, 3)), input="scores")
    with pytest.raises(InputError, match="sums to"):
        l2h(np.full((4, 3), 0.5), input="probs")
    with pytest.raises(InputError, match="n_jobs"):
        l2h(np.zeros((4, 3)), n_jobs=0)
