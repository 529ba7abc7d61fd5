"""l2h.metrics against by-hand formulas, brute-force enumerations, ClustPy and scipy."""

import itertools
import math

import numpy as np
import pytest
from clustpy.metrics.external.hierarchical_metrics import dendrogram_purity as clustpy_dendrogram_purity
from scipy.cluster.hierarchy import fcluster, is_monotonic, is_valid_linkage
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.metrics import acc, ari, dendrogram_purity, evaluate, flat_metrics, leaf_purity, nmi, nmi_geometric


def random_linkage(k, rng):
    """A uniformly random binary merge order over k leaves as a valid scipy linkage (height = step)."""
    active, sizes, rows = list(range(k)), {i: 1 for i in range(k)}, []
    for t in range(k - 1):
        a, b = (active.pop(int(rng.integers(len(active)))) for _ in range(2))
        sizes[k + t] = sizes[a] + sizes[b]
        rows.append([a, b, t + 1, sizes[k + t]])
        active.append(k + t)
    return np.array(rows, dtype=np.float64).reshape(k - 1, 4)


def brute_force_dp(linkage, leaves, labels):
    """Dendrogram purity by enumerating every same-class pair, its LCA (walking up) and the LCA's purity."""
    k, n = len(linkage) + 1, len(leaves)
    parent = {}
    for t, (a, b) in enumerate(linkage[:, :2].astype(int)):
        parent[a] = parent[b] = k + t

    def path_to_root(v):
        chain = [v]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
        return chain

    up = [path_to_root(leaf) for leaf in range(k)]
    total, n_pairs = 0.0, 0
    for i, j in itertools.combinations(range(n), 2):
        if labels[i] != labels[j]:
            continue
        above_i = set(up[leaves[i]])
        lca = next(v for v in up[leaves[j]] if v in above_i)
        under = [p for p in range(n) if lca in up[leaves[p]]]
        total += sum(labels[p] == labels[i] for p in under) / len(under)
        n_pairs += 1
    return total / n_pairs


def nmi_by_hand(y, c, mean):
    n = len(y)
    p_joint = {}
    for a, b in zip(y, c):
        p_joint[a, b] = p_joint.get((a, b), 0) + 1 / n
    p_y = {a: np.mean(np.asarray(y) == a) for a in set(y)}
    p_c = {b: np.mean(np.asarray(c) == b) for b in set(c)}
    mi = sum(p * math.log(p / (p_y[a] * p_c[b])) for (a, b), p in p_joint.items())
    h_y = -sum(p * math.log(p) for p in p_y.values())
    h_c = -sum(p * math.log(p) for p in p_c.values())
    return mi / (0.5 * (h_y + h_c) if mean == "arithmetic" else math.sqrt(h_y * h_c))


def ari_by_hand(y, c):
    pairs = list(itertools.combinations(range(len(y)), 2))
    same_y = np.array([y[i] == y[j] for i, j in pairs])
    same_c = np.array([c[i] == c[j] for i, j in pairs])
    index = np.sum(same_y & same_c)
    expected = same_y.sum() * same_c.sum() / len(pairs)
    return (index - expected) / (0.5 * (same_y.sum() + same_c.sum()) - expected)


def acc_by_enumeration(y, c):
    ys, cs = sorted(set(y)), sorted(set(c))
    d = max(len(ys), len(cs))
    best = 0
    for perm in itertools.permutations(range(d)):  # cluster index -> class index (padded)
        hits = sum(1 for a, b in zip(y, c) if perm[cs.index(b)] < len(ys) and ys[perm[cs.index(b)]] == a)
        best = max(best, hits)
    return best / len(y)


# ---------------------------------------------------------------- flat metrics


@pytest.mark.parametrize("seed", range(20))
def test_flat_metrics_match_by_hand_formulas(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 25))
    y = rng.integers(0, int(rng.integers(2, 5)), n)
    c = rng.integers(0, int(rng.integers(2, 6)), n) * 3 + 10  # non-contiguous cluster ids
    if len(set(y)) < 2 or len(set(c)) < 2:
        y[:2], c[:2] = [0, 1], [10, 13]
    assert nmi(y, c) == pytest.approx(nmi_by_hand(list(y), list(c), "arithmetic"), abs=1e-12)
    assert nmi_geometric(y, c) == pytest.approx(nmi_by_hand(list(y), list(c), "geometric"), abs=1e-12)
    assert ari(y, c) == pytest.approx(ari_by_hand(list(y), list(c)), abs=1e-12)
    assert acc(y, c) == pytest.approx(acc_by_enumeration(list(y), list(c)), abs=1e-15)
    assert flat_metrics(y, c) == {
        "nmi": nmi(y, c),
        "nmi_geometric": nmi_geometric(y, c),
        "ari": ari(y, c),
        "acc": acc(y, c),
    }


@pytest.mark.parametrize("seed", range(10))
def test_nmi_ari_match_scikit_learn(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 3000))
    y = rng.integers(0, int(rng.integers(1, 30)), n)
    c = np.where(rng.random(n) < 0.6, y, rng.integers(0, int(rng.integers(1, 40)), n))
    for a, b in ((y, c), (y, np.zeros(n, int)), (y, np.arange(n)), (np.zeros(n, int), np.zeros(n, int))):
        assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
        assert nmi_geometric(a, b) == pytest.approx(
            normalized_mutual_info_score(a, b, average_method="geometric"), abs=1e-12
        )
        assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_acc_padding_counts_unmatched_clusters_as_errors():
    assert acc([0, 0, 1, 1], [0, 1, 2, 3]) == 0.5  # more clusters than classes
    assert acc([0, 1, 2], [5, 5, 5]) == pytest.approx(1 / 3)  # fewer clusters than classes
    assert acc([0, 0, 1, 1, 2], [1, 1, 0, 0, 7]) == 1.0  # any relabelling
    assert ari([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)


def test_acc_refuses_point_level_partitions():
    n = 10_001
    with pytest.raises(InputError, match="10001 groups; the Hungarian matching"):
        acc(np.arange(n) % 10, np.arange(n))


@pytest.mark.parametrize(
    "y, c, problem",
    [
        ([0, 1, 1], [0, 1], "clusters: 2 entries, but labels has 3"),
        ([[0, 1]], [[0, 1]], "labels: expected a 1-D array"),
        ([], [], "labels: empty"),
        ([0, 1.5], [0, 1], "labels: labels must be integers; label 1 is not an integer"),
    ],
)
def test_flat_metric_errors(y, c, problem):
    with pytest.raises(InputError, match=problem):
        nmi(y, c)


# ---------------------------------------------------------------- dendrogram purity


@pytest.mark.parametrize("seed", range(300))
def test_dp_equals_brute_force_on_random_cluster_trees(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    n = int(rng.integers(2, 30))
    n_classes = int(rng.integers(1, 5))
    z = random_linkage(k, rng)
    leaves = rng.integers(0, k, n)  # some leaves stay empty
    labels = rng.integers(0, n_classes, n) * 5 - 3  # arbitrary class ids
    if len(set(labels)) == n:
        labels[1] = labels[0]
    assert dendrogram_purity(z, leaves, labels) == pytest.approx(brute_force_dp(z, leaves, labels), abs=1e-12, rel=0)


@pytest.mark.parametrize("seed", range(30))
def test_dp_equals_brute_force_on_point_level_trees(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(3, 25))
    z = random_linkage(n, rng)
    leaves = rng.permutation(n)  # K = N, one point per leaf
    labels = rng.integers(0, 3, n)
    labels[:2] = 0
    assert dendrogram_purity(z, leaves, labels) == pytest.approx(brute_force_dp(z, leaves, labels), abs=1e-12, rel=0)


# ClustPy's dendrogram_purity(dendrogram, labels_true, labels_pred) takes scipy/sklearn children as
# `dendrogram`, so it shares our node ids (leaves 0..K-1, row t -> node K+t). Its `labels_pred` plays
# the role of our `leaves`, and labels_pred=None means a point-level tree with point i on leaf i. It
# maps labels_pred and labels_true to table columns/rows by their rank among the values present, so
# the two conventions coincide only when every leaf 0..K-1 holds a point and the classes are 0..C-1
# all present; with empty leaves its columns no longer line up with leaf ids. We compare there.
@pytest.mark.parametrize("seed", range(15))
def test_dp_matches_clustpy_where_conventions_coincide(seed):
    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(10, 60))
    labels = rng.permutation(np.arange(n) % int(rng.integers(2, 5)))
    z_points = random_linkage(n, rng)
    ours = dendrogram_purity(z_points, np.arange(n), labels)
    assert ours == pytest.approx(clustpy_dendrogram_purity(z_points[:, :2].astype(int), labels), abs=1e-12, rel=0)
    k = int(rng.integers(2, 8))
    leaves = rng.permutation(np.arange(n) % k)  # every leaf non-empty
    z_clusters = random_linkage(k, rng)
    ours = dendrogram_purity(z_clusters, leaves, labels)
    assert ours == pytest.approx(
        clustpy_dendrogram_purity(z_clusters[:, :2].astype(int), labels, leaves), abs=1e-12, rel=0
    )


def test_dp_known_values_and_invariances():
    # ((0,1),(2,3)): class a on leaves 0,1 and class b on leaves 2,3 -> every LCA is pure
    z = np.array([[0, 1, 1, 2], [2, 3, 2, 2], [4, 5, 3, 4]], dtype=float)
    leaves = np.array([0, 0, 1, 2, 3, 3])
    labels = np.array([7, 7, 7, 9, 9, 9])
    assert dendrogram_purity(z, leaves, labels) == 1.0
    # swap two points between the subtrees: impure LCAs lower the score
    labels_mixed = np.array([7, 7, 9, 7, 9, 9])
    assert dendrogram_purity(z, leaves, labels_mixed) == pytest.approx(
        brute_force_dp(z, leaves, labels_mixed), abs=1e-12
    )
    assert dendrogram_purity(z, leaves, labels_mixed) < 1
    # the children alone (int, 2 columns) give the same as the full linkage
    assert dendrogram_purity(z[:, :2].astype(np.int64), leaves, labels_mixed) == dendrogram_purity(
        z, leaves, labels_mixed
    )
    # an extra empty leaf hung anywhere changes nothing
    z_empty = np.array([[0, 1, 1, 2], [2, 3, 2, 2], [5, 4, 3, 3], [6, 7, 4, 5]], dtype=float)
    assert dendrogram_purity(z_empty, leaves, labels_mixed) == pytest.approx(
        dendrogram_purity(z, leaves, labels_mixed), abs=1e-15
    )
    # a single leaf: DP is the purity of the whole set for every pair
    assert dendrogram_purity(np.zeros((0, 4)), [0, 0, 0, 0], [1, 1, 2, 2]) == 0.5


@pytest.mark.parametrize(
    "z, leaves, labels, problem",
    [
        ([[0, 1, 1, 2], [0, 2, 2, 3]], [0, 1], [0, 0], "merged exactly once"),
        ([[0, 3, 1, 2], [1, 2, 2, 3]], [0, 1], [0, 0], "does not exist yet"),
        ([[0, 1, 1, 2]], [0, 2], [0, 0], r"leaf ids must lie in 0..1"),
        ([[0, 1, 1, 2]], [0, 1], [0, 1], "no two points share a class"),
        ([[0, 1, 1, 2]], [0, 1, 1], [0, 0], "leaves: 3 entries, but labels has 2"),
        ([0, 1], [0, 1], [0, 0], "linkage: expected"),
        ([[0.5, 1, 1, 2]], [0, 1], [0, 0], "child ids must be integer node ids"),
    ],
)
def test_dp_errors(z, leaves, labels, problem):
    with pytest.raises(InputError, match=problem):
        dendrogram_purity(np.asarray(z, dtype=float), leaves, labels)


# ---------------------------------------------------------------- leaf purity


def test_leaf_purity():
    assert leaf_purity([0, 0, 0, 1, 1], [4, 4, 5, 5, 5]) == pytest.approx(4 / 5)
    assert leaf_purity([3, 3, 9], [0, 1, 2]) == pytest.approx(2 / 3)
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        leaves, labels = rng.integers(0, 6, n), rng.integers(0, 4, n)
        expected = sum(np.bincount(labels[leaves == v]).max() for v in set(leaves)) / n
        assert leaf_purity(leaves, labels) == pytest.approx(expected, abs=1e-15)
        assert leaf_purity(leaves, labels) >= acc(labels, leaves) - 1e-15


# ---------------------------------------------------------------- evaluate


def test_evaluate_tree_and_linkage_agree_and_coarse_cut_matches_scipy():
    rng = np.random.default_rng(11)
    k, n = 12, 400
    z = random_linkage(k, rng)
    leaves = rng.integers(0, k, n)
    fine = (leaves + (rng.random(n) < 0.2) * rng.integers(0, k, n)) % k  # mostly the leaf
    coarse = fine % 3
    out = evaluate(Hierarchy.from_linkage(z), leaves, fine, coarse=coarse)
    assert out == evaluate(z, leaves, fine, coarse=coarse)
    assert out["dp"] == dendrogram_purity(z, leaves, fine)
    assert out["lp"] == leaf_purity(leaves, fine)
    assert {key: out[key] for key in ("nmi", "nmi_geometric", "ari", "acc")} == flat_metrics(fine, leaves)
    assert out["coarse_dp"] == dendrogram_purity(z, leaves, coarse)
    groups = fcluster(z, 3, criterion="maxclust")[leaves]
    cut = {f"coarse_{key}": v for key, v in flat_metrics(coarse, groups).items()}
    assert {key: out[key] for key in cut} == pytest.approx(cut, abs=1e-12)
    assert out["coarse_groups"] == 3
    assert is_valid_linkage(z) and is_monotonic(z)


def test_evaluate_flat_metrics_use_clusters_when_given():
    rng = np.random.default_rng(12)
    z = random_linkage(5, rng)
    leaves, labels = rng.integers(0, 5, 100), rng.integers(0, 3, 100)
    clusters = rng.integers(0, 3, 100)
    out = evaluate(z, leaves, labels, clusters=clusters)
    assert out["acc"] == acc(labels, clusters) and out["nmi"] == nmi(labels, clusters)
    assert out["dp"] == dendrogram_purity(z, leaves, labels) and "coarse_dp" not in out
    with pytest.raises(InputError, match="coarse labels: 99 entries, but labels has 100"):
        evaluate(z, leaves, labels, coarse=labels[:99])
