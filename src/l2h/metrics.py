"""Clustering metrics: flat (NMI, ARI, ACC) and hierarchical (dendrogram purity, leaf purity).

Conventions (docs/paper.md §2): NMI uses the arithmetic normalisation (geometric reported too); ACC is the
Hungarian matching on the square-padded contingency table, so surplus clusters count as errors; for
dendrogram purity every point hangs on its leaf (its hard cluster), and the score is computed from
per-node class counts in O(nodes × classes), never over point pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from l2h.errors import InputError
from l2h.hierarchy import Hierarchy, check_children
from l2h.validation import check_labels


def _pair(y: ArrayLike, c: ArrayLike, names: tuple[str, str] = ("labels", "clusters")) -> tuple[np.ndarray, np.ndarray]:
    """Two labellings of the same points as int64 arrays, checked (any integer ids, not empty)."""
    y, c = (check_labels(x, source=name, allow_negative=True, allow_empty=False) for x, name in zip((y, c), names))
    if y.shape != c.shape:
        raise InputError(f"{names[1]}: {c.size} entries, but {names[0]} has {y.size}")
    return y, c


MAX_ACC_GROUPS = 10_000  # ACC's dense square table and Hungarian matching grow as d² and ~d³


class _Table(NamedTuple):
    """The class × cluster contingency table in sparse form (non-zero cells only, sorted by cluster)."""

    n: int
    cell_class: np.ndarray  # class index (0..C-1) of each non-zero cell
    cell_cluster: np.ndarray  # cluster index (0..M-1) of each non-zero cell
    cell_count: np.ndarray
    class_sizes: np.ndarray  # (C,)
    cluster_sizes: np.ndarray  # (M,)
    clusters: np.ndarray  # (M,) the cluster id of each cluster index


def _table(y: ArrayLike, c: ArrayLike, names: tuple[str, str] = ("labels", "clusters")) -> _Table:
    """The contingency table of classes ``y`` against clusters ``c`` (the one place it is computed)."""
    y, c = _pair(y, c, names)
    _, yi = np.unique(y, return_inverse=True)
    clusters, ci = np.unique(c, return_inverse=True)
    n_cls = int(yi.max()) + 1
    codes, counts = np.unique(ci * n_cls + yi, return_counts=True)
    return _Table(y.size, codes % n_cls, codes // n_cls, counts, np.bincount(yi), np.bincount(ci), clusters)


def _entropy(sizes: np.ndarray, n: int) -> float:
    p = sizes / n
    return float(-(p * np.log(p)).sum())


def _nmi(t: _Table, mean: str) -> float:
    if t.class_sizes.size == t.cluster_sizes.size == 1:
        return 1.0  # both are a single group: identical partitions
    h_y, h_c = _entropy(t.class_sizes, t.n), _entropy(t.cluster_sizes, t.n)
    # I(Y;C) = H(Y) + H(C) - H(Y,C), with H(Y,C) from the non-zero cells
    mi = max(h_y + h_c - _entropy(t.cell_count, t.n), 0.0)
    norm = (h_y + h_c) / 2 if mean == "arithmetic" else np.sqrt(h_y * h_c)
    return float(mi / max(norm, np.finfo(np.float64).eps))


def _pairs(sizes: np.ndarray) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def _ari(t: _Table) -> float:
    both, same_y, same_c = _pairs(t.cell_count), _pairs(t.class_sizes), _pairs(t.cluster_sizes)
    if same_y == same_c == both:
        return 1.0  # identical pair structure (includes the degenerate one-group cases)
    expected = same_y * same_c / (t.n * (t.n - 1) // 2)
    return float((both - expected) / ((same_y + same_c) / 2 - expected))


def _acc(t: _Table) -> float:
    d = max(t.class_sizes.size, t.cluster_sizes.size)
    if d > MAX_ACC_GROUPS:
        raise InputError(
            f"clusters: {d} groups; the Hungarian matching for ACC needs a dense {d}×{d} "
            f"table (limit {MAX_ACC_GROUPS}); score a flat partition, not a point-level tree"
        )
    square = np.zeros((d, d), dtype=np.int64)
    square[t.cell_cluster, t.cell_class] = t.cell_count
    rows, cols = linear_sum_assignment(square, maximize=True)
    return float(square[rows, cols].sum() / t.n)


def nmi(y: ArrayLike, c: ArrayLike) -> float:
    """Normalised mutual information, arithmetic normalisation (scikit-learn's default).

    Examples
    --------
    >>> round(nmi([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]), 3)
    0.74
    """
    return _nmi(_table(y, c), "arithmetic")


def nmi_geometric(y: ArrayLike, c: ArrayLike) -> float:
    """Normalised mutual information, geometric normalisation (TURTLE's convention)."""
    return _nmi(_table(y, c), "geometric")


def ari(y: ArrayLike, c: ArrayLike) -> float:
    """Adjusted Rand index (Hubert & Arabie), from exact integer pair counts.

    Examples
    --------
    >>> round(ari([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]), 3)
    0.444
    """
    return _ari(_table(y, c))


def acc(y: ArrayLike, c: ArrayLike) -> float:
    """Clustering accuracy: best one-to-one cluster→class matching (Hungarian algorithm).

    The contingency table is padded to a square, so when there are more clusters than classes the
    unmatched clusters count as errors (and vice versa).

    Examples
    --------
    >>> acc([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2])     # cluster ids need not match class ids
    0.8333333333333334
    """
    return _acc(_table(y, c))


def _flat(t: _Table) -> dict[str, float]:
    return {"nmi": _nmi(t, "arithmetic"), "nmi_geometric": _nmi(t, "geometric"), "ari": _ari(t), "acc": _acc(t)}


def flat_metrics(y: ArrayLike, c: ArrayLike) -> dict[str, float]:
    """All flat metrics of clustering ``c`` against labels ``y`` (one contingency table).

    Examples
    --------
    >>> sorted(flat_metrics([0, 0, 1, 1], [1, 1, 0, 0]).items())
    [('acc', 1.0), ('ari', 1.0), ('nmi', 1.0), ('nmi_geometric', 1.0)]
    """
    return _flat(_table(y, c))


def _children(linkage: ArrayLike) -> np.ndarray:
    """The (K-1, 2) int64 children of a scipy-style linkage (K >= 1), checked to form one binary tree."""
    z = np.asarray(linkage)
    if z.ndim != 2 or z.shape[1] < 2:
        raise InputError(f"linkage: expected a (K-1, 4) array, got shape {z.shape}")
    return check_children(z[:, :2], source="linkage", min_leaves=1)


def _leaf_table(leaves: ArrayLike, labels: ArrayLike, k: int) -> _Table:
    """The class × leaf table of points hanging on ``leaves`` (ids in 0..k-1)."""
    t = _table(labels, leaves, names=("labels", "leaves"))
    if t.clusters[0] < 0 or t.clusters[-1] >= k:
        raise InputError(f"leaves: leaf ids must lie in 0..{k - 1}, got {t.clusters[0]}..{t.clusters[-1]}")
    return t


def _dendrogram_purity(children: np.ndarray, t: _Table) -> float:
    k = children.shape[0] + 1
    n_cls = t.class_sizes.size
    counts = np.zeros((2 * k - 1, n_cls), dtype=np.int64)
    counts[t.clusters[t.cell_cluster], t.cell_class] = t.cell_count
    for step, (a, b) in enumerate(children):
        np.add(counts[a], counts[b], out=counts[k + step])
    sizes = counts.sum(axis=1).astype(np.float64)
    total = float((counts[-1] * (counts[-1] - 1) // 2).sum())
    if total == 0:
        raise InputError("labels: no two points share a class, so dendrogram purity is undefined")
    leaf = counts[:k].astype(np.float64)
    occupied = sizes[:k] > 0
    score = float((leaf[occupied] * (leaf[occupied] - 1) / 2 * leaf[occupied] / sizes[:k][occupied, None]).sum())
    if k > 1:
        pairs = (counts[children[:, 0]] * counts[children[:, 1]]).astype(np.float64)
        inner = counts[k:].astype(np.float64)
        # an internal node with a pair under it is never empty, so the division is safe
        score += float((pairs * inner / np.maximum(sizes[k:], 1)[:, None]).sum())
    return score / total


def _leaf_purity(t: _Table) -> float:
    starts = np.flatnonzero(np.r_[True, np.diff(t.cell_cluster) != 0])  # cells are sorted by cluster
    return float(np.maximum.reduceat(t.cell_count, starts).sum() / t.n)


def dendrogram_purity(linkage: ArrayLike, leaves: ArrayLike, labels: ArrayLike) -> float:
    """Dendrogram purity of a tree over K leaves, with point i hanging on leaf ``leaves[i]``.

    ``linkage``: scipy-style (K-1, ≥2) array whose first two columns are the merged node ids (leaves
    0..K-1, the node made at row t has id K+t). Leaves may be empty; K = N with ``leaves = arange(N)``
    is the ordinary point-level tree. Pairs of same-class points whose lowest common ancestor is node
    v are C(n_v[k], 2) at a leaf and n_left[k]·n_right[k] at an internal node; each pair scores the
    purity n_v[k]/|v| of its class at v. Memory: a (2K-1) × classes count table.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[0, 1, 1, 2], [2, 3, 2, 3]])     # leaves 0 and 1 first, then leaf 2
    >>> dendrogram_purity(z, leaves=[0, 0, 1, 1, 2, 2], labels=[0, 0, 0, 1, 1, 1])
    0.75
    """
    children = _children(linkage)
    return _dendrogram_purity(children, _leaf_table(leaves, labels, children.shape[0] + 1))


def leaf_purity(leaves: ArrayLike, labels: ArrayLike) -> float:
    """Size-weighted mean over leaves of the majority-class fraction (docs/paper.md §2.5).

    Examples
    --------
    >>> leaf_purity(leaves=[0, 0, 1, 1, 2, 2], labels=[0, 0, 0, 1, 1, 1])
    0.8333333333333334
    """
    return _leaf_purity(_table(labels, leaves, names=("labels", "leaves")))


def evaluate(
    tree: Hierarchy | ArrayLike,
    leaves: ArrayLike,
    labels: ArrayLike,
    *,
    clusters: ArrayLike | None = None,
    coarse: ArrayLike | None = None,
) -> dict[str, float | int]:
    """All metrics of a tree whose points hang on ``leaves``.

    Parameters
    ----------
    tree : Hierarchy or array (K−1, ≥2)
        A :class:`~l2h.hierarchy.Hierarchy` over K leaves, or a scipy linkage.
    leaves : int array (N,)
        The leaf (0..K−1) of each point; for L2H, each point's cluster.
    labels : int array (N,)
        The true class of each point (any integer ids).
    clusters : int array (N,), optional
        The flat partition scored by the flat metrics (default: ``leaves``). For a point-level tree
        (K = N) pass the flat partition here: ACC is limited to ``MAX_ACC_GROUPS`` groups.
    coarse : int array (N,), optional
        A coarser class per point (e.g. CIFAR-100's superclasses).

    Returns
    -------
    dict
        ``nmi``, ``nmi_geometric``, ``ari``, ``acc`` (of ``clusters``), ``dp`` (dendrogram purity) and ``lp``
        (leaf purity); with ``coarse`` also ``coarse_dp`` and the flat metrics of the tree cut into as many
        groups as there are coarse classes (at most K), prefixed ``coarse_``, and ``coarse_groups``.

    Examples
    --------
    >>> from l2h.hierarchy import Hierarchy
    >>> tree = Hierarchy([[0, 1], [2, 3], [4, 5]])      # (0, 1) and (2, 3), then everything
    >>> leaves = [0, 0, 1, 1, 2, 2, 3, 3]
    >>> labels = [0, 0, 0, 1, 2, 2, 2, 2]
    >>> out = evaluate(tree, leaves, labels, coarse=[0, 0, 0, 0, 1, 1, 1, 1])
    >>> round(out["lp"], 3), round(out["dp"], 3), out["coarse_groups"], out["coarse_acc"]
    (0.875, 0.944, 2, 1.0)
    """
    hierarchy = tree if isinstance(tree, Hierarchy) else Hierarchy.from_linkage(np.asarray(tree))
    labels, leaves = _pair(labels, leaves, names=("labels", "leaves"))
    table = _leaf_table(leaves, labels, hierarchy.k)
    out = _flat(table) if clusters is None else flat_metrics(labels, clusters)
    out["dp"] = _dendrogram_purity(hierarchy.children, table)
    out["lp"] = _leaf_purity(table)
    if coarse is not None:
        coarse = _pair(labels, coarse, names=("labels", "coarse labels"))[1]
        n_groups = min(np.unique(coarse).size, hierarchy.k)
        groups = np.asarray(hierarchy.cut(n_groups))[leaves]
        out["coarse_dp"] = _dendrogram_purity(hierarchy.children, _leaf_table(leaves, coarse, hierarchy.k))
        out.update({f"coarse_{name}": v for name, v in flat_metrics(coarse, groups).items()})
        out["coarse_groups"] = n_groups
    return out
