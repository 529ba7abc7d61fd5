"""Baselines (agglomerative, DeepECT) through the shared Hierarchy / metrics path."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.cluster.hierarchy import is_monotonic, is_valid_linkage
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import load_digits
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from l2h.baselines import BaselineResult, run_baseline
from l2h.baselines.agglomerative import GIB, agglomerative, max_points, peak_bytes
from l2h.baselines.deepect import tree_to_linkage
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.metrics import dendrogram_purity, evaluate

CONF = Path(__file__).resolve().parents[1] / "conf" / "baseline"


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def config(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def same_partition(a, b) -> bool:
    """True when a and b are the same partition up to relabelling."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return a.shape == b.shape and pairs == np.unique(a).size == np.unique(b).size


def brute_force_dp(linkage: np.ndarray, labels: np.ndarray) -> float:
    """Dendrogram purity of a point-level tree from its definition: every same-class pair, LCA found by
    walking up from one point until reaching an ancestor of the other."""
    n = linkage.shape[0] + 1
    parent = np.full(2 * n - 1, -1)
    under = [[i] for i in range(n)]
    for t, (a, b) in enumerate(linkage[:, :2].astype(int)):
        parent[a] = parent[b] = n + t
        under.append(under[a] + under[b])
    total, count = 0.0, 0
    for i, j in itertools.combinations(range(n), 2):
        if labels[i] != labels[j]:
            continue
        ancestors, v = set(), i
        while v != -1:
            ancestors.add(v)
            v = parent[v]
        v = j
        while v not in ancestors:
            v = parent[v]
        members = labels[under[v]]
        total += np.mean(members == labels[i])
        count += 1
    return total / count


# ---------------------------------------------------------------- configs and dispatch
def test_configs_name_their_file_and_all_keys_are_accepted(digits):
    names = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert names == ["agglomerative", "agglomerative_average", "deepect", "treevae"]
    for name in names:
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        assert cfg.name == name
    x, _ = digits
    result = run_baseline(config("agglomerative"), x[:60], k=5, seed=0)
    assert isinstance(result, BaselineResult) and result.info["baseline"] == "agglomerative"


def test_run_baseline_rejects_bad_config_and_input(digits):
    x, _ = digits
    with pytest.raises(InputError, match="linkages"):
        run_baseline(config("agglomerative", linkages="ward"), x[:50], k=3, seed=0)
    with pytest.raises(InputError, match=r"baseline.kind = 'birch': must be one of agglomerative, deepect, treevae"):
        run_baseline({"name": "x", "kind": "birch"}, x[:50], k=3, seed=0)
    with pytest.raises(InputError, match="baseline.linkage = 'single': must be one of ward, average"):
        run_baseline(config("agglomerative", linkage="single"), x[:50], k=3, seed=0)
    bad = x[:50].copy()
    bad[7, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        run_baseline(config("agglomerative"), bad, k=3, seed=0)
    with pytest.raises(InputError, match="k must be"):
        run_baseline(config("agglomerative"), x[:50], k=51, seed=0)


# ---------------------------------------------------------------- agglomerative
@pytest.mark.parametrize("linkage", ["ward", "average"])
def test_agglomerative_cut_equals_sklearn(digits, linkage):
    x, y = digits
    name = "agglomerative" if linkage == "ward" else "agglomerative_average"
    result = run_baseline(config(name), x, k=10, seed=0)
    n = len(x)
    assert result.hierarchy.k == n
    np.testing.assert_array_equal(result.leaves, np.arange(n))
    assert result.clusters.shape == (n,) and np.unique(result.clusters).size == 10
    reference = AgglomerativeClustering(n_clusters=10, linkage=linkage).fit(normalize(x.astype(np.float64)))
    assert same_partition(result.clusters, reference.labels_)
    z = result.hierarchy.to_linkage()
    assert is_valid_linkage(z) and is_monotonic(z)
    # merge distances of scipy's linkage are kept, non-decreasing for both (reducible) linkages
    assert np.all(np.diff(result.hierarchy.info["linkage_heights"]) >= 0)
    metrics = evaluate(result.hierarchy, result.leaves, y, clusters=result.clusters)
    assert metrics["lp"] == 1.0  # every point is its own leaf
    assert 0.5 < metrics["dp"] < 1.0 and metrics["nmi"] > 0.6


@pytest.mark.parametrize("linkage", ["ward", "average"])
def test_agglomerative_dp_equals_brute_force(digits, linkage):
    x, y = digits
    result = agglomerative(x, k=10, linkage=linkage, subsample=150, subsample_seed=3)
    labels = y[result.info["indices"]]
    expected = brute_force_dp(result.hierarchy.to_linkage(), labels)
    assert dendrogram_purity(result.hierarchy.to_linkage(), result.leaves, labels) == pytest.approx(expected, abs=1e-12)
    assert evaluate(result.hierarchy, result.leaves, labels)["dp"] == pytest.approx(expected, abs=1e-12)


def test_memory_guard_formula_and_message(digits):
    x, _ = digits
    # the documented limit: 24 GiB allows 56,336 points of dimension 768 under the measured model
    assert max_points(24, 768) == 56_336
    assert max_points(0.01, 64) == 0  # below the fixed 32 MiB overhead
    for limit, d in [(24, 768), (0.05, 64), (1.5, 3)]:
        m = max_points(limit, d)
        assert peak_bytes(m, d) <= limit * GIB < peak_bytes(m + 1, d)
    assert peak_bytes(10_000, 768) == 16 * 10_000 * 9_999 / 2 + 8 * 10_000 * 768 + 32 * 2**20
    limit = peak_bytes(1000, 64) / GIB  # enough for 1,000 digits, not for 1,797
    with pytest.raises(InputError, match=r"N = 1797 points.*at most 1000 points.*subsample=1000"):
        agglomerative(x, k=10, memory_limit_gib=limit)
    assert agglomerative(x, k=10, memory_limit_gib=limit, subsample=1000).leaves.size == 1000
    assert agglomerative(x, k=10, memory_limit_gib=None).leaves.size == len(x)
    with pytest.raises(InputError, match="subsample must be"):
        agglomerative(x, k=10, subsample=5)


def test_subsampling_is_deterministic_and_recorded(digits, tmp_path):
    x, y = digits
    cfg = config("agglomerative", subsample=200)  # subsample_seed: null → the run's seed
    a = run_baseline(cfg, x, k=10, seed=7)
    b = run_baseline(cfg, x, k=10, seed=7)
    c = run_baseline(cfg, x, k=10, seed=8)
    idx = a.info["indices"]
    assert idx.shape == (200,) and np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < len(x)
    np.testing.assert_array_equal(idx, b.info["indices"])
    np.testing.assert_array_equal(a.hierarchy.children, b.hierarchy.children)
    assert not np.array_equal(idx, c.info["indices"])
    fixed = config("agglomerative", subsample=200, subsample_seed=7)
    np.testing.assert_array_equal(run_baseline(fixed, x, k=10, seed=99).info["indices"], idx)
    # the tree is built on exactly the indexed rows
    direct = agglomerative(x[idx], k=10)
    np.testing.assert_array_equal(direct.hierarchy.children, a.hierarchy.children)
    assert direct.info["indices"] is None

    a.write(tmp_path / "sub")
    b.write(tmp_path / "sub2")
    files = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert files == ["clusters.npy", "indices.npy", "info.json", "leaves.npy", "linkage.npy", "tree.json", "tree.nwk"]
    for name in files:  # same config + seed → identical files
        assert (tmp_path / "sub" / name).read_bytes() == (tmp_path / "sub2" / name).read_bytes(), name
    np.testing.assert_array_equal(np.load(tmp_path / "sub" / "indices.npy"), idx)
    info = json.loads((tmp_path / "sub" / "info.json").read_text())
    assert info["subsample"] == 200 and info["subsample_seed"] == 7 and "indices" not in info
    tree = Hierarchy.load(tmp_path / "sub" / "tree.json")
    np.testing.assert_array_equal(tree.children, a.hierarchy.children)
    np.testing.assert_array_equal(np.load(tmp_path / "sub" / "clusters.npy"), a.clusters)


def test_full_run_writes_all_rows_as_indices(digits, tmp_path):
    x, _ = digits
    result = run_baseline(config("agglomerative"), x[:100], k=4, seed=0)
    assert result.info["indices"] is None and result.info["subsample"] is None
    result.write(tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "indices.npy"), np.arange(100))


# ---------------------------------------------------------------- DeepECT
def test_tree_to_linkage_cut_equals_clustpy_pruning():
    """Our cut at n keeps the same leaves as ClustPy's own prune_to_n_leaf_nodes, also after a pruning."""
    from clustpy.hierarchical._cluster_tree import BinaryClusterTree

    tree = BinaryClusterTree()
    for split, new in [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (0, 6), (4, 7)]:
        tree.split_cluster(split, new)
    for pruned in (False, True):
        if pruned:
            leaf = next(node for node in tree.get_leaf_and_split_nodes()[0] if node.labels[0] == 1)
            leaf.delete_node()
        z, ids = tree_to_linkage(tree)
        assert is_valid_linkage(z) and is_monotonic(z)
        assert ids.tolist() == ([0, 2, 3, 4, 5, 6, 7] if pruned else list(range(8)))
        hierarchy = Hierarchy.from_linkage(z)
        for n in range(2, ids.size + 1):
            theirs = copy.deepcopy(tree).prune_to_n_leaf_nodes(n, ids)  # one point per leaf
            assert same_partition(hierarchy.cut(n), theirs), (pruned, n)


@pytest.fixture()
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def small_deepect(**overrides):
    settings = dict(pretrain_epochs=4, clustering_epochs=12, grow_interval=1, hidden_layers=[128, 32], max_leaves=12)
    settings.update(overrides)
    return config("deepect", **settings)


def test_deepect_on_digits(digits, few_threads, tmp_path):
    x, y = digits
    result = run_baseline(small_deepect(), x, k=10, seed=0)
    n_leaves = result.info["n_leaves"]
    assert result.hierarchy.k == n_leaves and 10 < n_leaves <= 12
    z = result.hierarchy.to_linkage()
    assert is_valid_linkage(z) and is_monotonic(z)
    assert result.leaves.shape == (len(x),) and result.leaves.dtype == np.int64
    assert result.leaves.min() >= 0 and result.leaves.max() < n_leaves
    assert result.clusters.shape == (len(x),) and np.unique(result.clusters).size <= 10
    np.testing.assert_array_equal(result.clusters, result.hierarchy.cut(10)[result.leaves])
    assert not result.info["fewer_leaves_than_k"] and result.run_info["train_time_s"] > 0
    assert "train_time_s" not in result.info
    assert sum(result.info["leaf_sizes"]) == len(x) and result.info["device"] == "cpu"
    metrics = evaluate(result.hierarchy, result.leaves, y, clusters=result.clusters)
    assert metrics["nmi"] > 0.2  # better than chance (≈ 0) even after a few epochs

    again = run_baseline(small_deepect(), x, k=10, seed=0)  # deterministic on CPU
    np.testing.assert_array_equal(again.leaves, result.leaves)
    np.testing.assert_array_equal(again.hierarchy.children, result.hierarchy.children)
    result.write(tmp_path)
    assert Hierarchy.load(tmp_path / "tree.json").k == n_leaves


def test_deepect_with_fewer_leaves_than_k(digits, few_threads):
    x, _ = digits
    result = run_baseline(small_deepect(pretrain_epochs=2, clustering_epochs=3, max_leaves=3), x[:600], k=10, seed=1)
    assert result.info["n_leaves"] <= 3 and result.info["fewer_leaves_than_k"]
    assert "fewer than k = 10" in result.info["note"]
    np.testing.assert_array_equal(result.clusters, result.leaves)
