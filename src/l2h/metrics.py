"""Clustering metrics: flat (NMI, ARI, ACC) and hierarchical (dendrogram purity, leaf purity).

Conventions (paper.md §2): NMI uses the arithmetic normalisation (geometric reported too); ACC is the
Hungarian matching on the square-padded contingency table, so surplus clusters count as errors; for
dendrogram purity every point hangs on its leaf (its hard cluster), and the score is computed from
per-node class counts in O(nodes × classes), never over point pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from l2h.errors import InputError
from l2h.hierarchy import Hierarchy


def _labels(x, name: str) -> np.ndarray:
    """A non-empty 1-D int64 copy of ``x``; non-integer values are an error."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise InputError(f"{name}: empty")
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f" or not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise InputError(f"{name}: expected integer labels, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _pair(y, c, names=("labels", "clusters")) -> tuple[np.ndarray, np.ndarray]:
    y, c = _labels(y, names[0]), _labels(c, names[1])
    if y.shape != c.shape:
        raise InputError(f"{names[1]}: {c.size} entries, but {names[0]} has {y.size}")
    return y, c


MAX_ACC_GROUPS = 10_000  # ACC's dense square table and Hungarian matching grow as d² and ~d³


class _Table(NamedTuple):
    """The class × cluster contingency table in sparse form (non-zero cells only)."""

    n: int
    cell_class: np.ndarray    # class index (0..C-1) of each non-zero cell
    cell_cluster: np.ndarray  # cluster index (0..M-1) of each non-zero cell
    cell_count: np.ndarray
    class_sizes: np.ndarray   # (C,)
    cluster_sizes: np.ndarray  # (M,)


def _table(y, c) -> _Table:
    y, c = _pair(y, c)
    _, yi = np.unique(y, return_inverse=True)
    _, ci = np.unique(c, return_inverse=True)
    n_cls = int(yi.max()) + 1
    codes, counts = np.unique(ci * n_cls + yi, return_counts=True)
    return _Table(y.size, codes % n_cls, codes // n_cls, counts, np.bincount(yi), np.bincount(ci))


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
        raise InputError(f"clusters: {d} groups; the Hungarian matching for ACC needs a dense {d}×{d} "
                         f"table (limit {MAX_ACC_GROUPS}); score a flat partition, not a point-level tree")
    square = np.zeros((d, d), dtype=np.int64)
    square[t.cell_cluster, t.cell_class] = t.cell_count
    rows, cols = linear_sum_assignment(square, maximize=True)
    return float(square[rows, cols].sum() / t.n)


def nmi(y, c) -> float:
    """Normalised mutual information, arithmetic normalisation (scikit-learn's default)."""
    return _nmi(_table(y, c), "arithmetic")


def nmi_geometric(y, c) -> float:
    """Normalised mutual information, geometric normalisation (TURTLE's convention)."""
    return _nmi(_table(y, c), "geometric")


def ari(y, c) -> float:
    """Adjusted Rand index (Hubert & Arabie), from exact integer pair counts."""
    return _ari(_table(y, c))


def acc(y, c) -> float:
    """Clustering accuracy: best one-to-one cluster→class matching (Hungarian algorithm).

    The contingency table is padded to a square, so when there are more clusters than classes the
    unmatched clusters count as errors (and vice versa).
    """
    return _acc(_table(y, c))


def flat_metrics(y, c) -> dict[str, float]:
    """All flat metrics of clustering ``c`` against labels ``y`` (one contingency table)."""
    t = _table(y, c)
    return {"nmi": _nmi(t, "arithmetic"), "nmi_geometric": _nmi(t, "geometric"), "ari": _ari(t),
            "acc": _acc(t)}


def _children(linkage) -> np.ndarray:
    """The (K-1, 2) int64 children of a scipy-style linkage, checked to form one binary tree."""
    z = np.asarray(linkage)
    if z.ndim != 2 or z.shape[1] < 2:
        raise InputError(f"linkage: expected a (K-1, 4) array, got shape {z.shape}")
    ch = z[:, :2]
    if ch.dtype.kind == "f" and not (np.all(np.isfinite(ch)) and np.all(ch == np.round(ch))):
        raise InputError("linkage: child ids must be integers")
    ch = ch.astype(np.int64)
    k = ch.shape[0] + 1
    step = np.arange(k - 1)
    if ch.size and (ch.min() < 0 or np.any(ch >= (k + step)[:, None])):
        raise InputError("linkage: a merge refers to a node that does not exist yet")
    if ch.size and np.any(np.bincount(ch.ravel(), minlength=2 * k - 2) != 1):
        raise InputError("linkage: every node except the root must be merged exactly once")
    return ch


def _leaves(leaves, labels, k: int) -> tuple[np.ndarray, np.ndarray]:
    leaves, labels = _pair(labels, leaves, names=("labels", "leaves"))[::-1]
    if leaves.min() < 0 or leaves.max() >= k:
        raise InputError(f"leaves: leaf ids must lie in 0..{k - 1}, got {leaves.min()}..{leaves.max()}")
    return leaves, labels


def dendrogram_purity(linkage, leaves, labels) -> float:
    """Dendrogram purity of a tree over K leaves, with point i hanging on leaf ``leaves[i]``.

    ``linkage``: scipy-style (K-1, ≥2) array whose first two columns are the merged node ids (leaves
    0..K-1, the node made at row t has id K+t). Leaves may be empty; K = N with ``leaves = arange(N)``
    is the ordinary point-level tree. Pairs of same-class points whose lowest common ancestor is node
    v are C(n_v[k], 2) at a leaf and n_left[k]·n_right[k] at an internal node; each pair scores the
    purity n_v[k]/|v| of its class at v. Memory: a (2K-1) × classes count table.
    """
    children = _children(linkage)
    k = children.shape[0] + 1
    leaves, labels = _leaves(leaves, labels, k)
    _, cls = np.unique(labels, return_inverse=True)
    n_cls = int(cls.max()) + 1
    counts = np.zeros((2 * k - 1, n_cls), dtype=np.int64)
    counts[:k] = np.bincount(leaves * n_cls + cls, minlength=k * n_cls).reshape(k, n_cls)
    for t, (a, b) in enumerate(children):
        np.add(counts[a], counts[b], out=counts[k + t])
    sizes = counts.sum(axis=1).astype(np.float64)
    total = float((counts[-1] * (counts[-1] - 1) // 2).sum())
    if total == 0:
        raise InputError("labels: no two points share a class, so dendrogram purity is undefined")
    leaf = counts[:k].astype(np.float64)
    occupied = sizes[:k] > 0
    score = float((leaf[occupied] * (leaf[occupied] - 1) / 2 * leaf[occupied]
                   / sizes[:k][occupied, None]).sum())
    if k > 1:
        pairs = (counts[children[:, 0]] * counts[children[:, 1]]).astype(np.float64)
        inner = counts[k:].astype(np.float64)
        # an internal node with a pair under it is never empty, so the division is safe
        score += float((pairs * inner / np.maximum(sizes[k:], 1)[:, None]).sum())
    return score / total


def leaf_purity(leaves, labels) -> float:
    """Size-weighted mean over leaves of the majority-class fraction (paper.md §2.5)."""
    leaves, labels = _pair(labels, leaves, names=("labels", "leaves"))[::-1]
    _, li = np.unique(leaves, return_inverse=True)
    _, yi = np.unique(labels, return_inverse=True)
    n_cls = int(yi.max()) + 1
    cells, counts = np.unique(li * n_cls + yi, return_counts=True)
    starts = np.flatnonzero(np.r_[True, np.diff(cells // n_cls) != 0])
    return float(np.maximum.reduceat(counts, starts).sum() / labels.size)


def evaluate(tree, leaves, labels, *, clusters=None, coarse=None) -> dict[str, float | int]:
    """All metrics of a tree whose points hang on ``leaves``.

    ``tree``: a :class:`~l2h.hierarchy.Hierarchy` or a scipy linkage. Flat metrics (nmi,
    nmi_geometric, ari, acc) are computed on ``clusters`` (default: ``leaves``); dp and lp on the
    leaves. With ``coarse`` (a coarser label per point) it adds coarse_dp and the flat metrics of
    the tree cut into as many groups as there are coarse classes (at most K), prefixed ``coarse_``.
    For a point-level tree (K = N) pass the flat partition as ``clusters``: ACC is limited to
    ``MAX_ACC_GROUPS`` groups.
    """
    hierarchy = tree if isinstance(tree, Hierarchy) else Hierarchy.from_linkage(np.asarray(tree))
    linkage = hierarchy.to_linkage()
    leaves, labels = _leaves(leaves, labels, hierarchy.k)
    out = flat_metrics(labels, leaves if clusters is None else clusters)
    out["dp"] = dendrogram_purity(linkage, leaves, labels)
    out["lp"] = leaf_purity(leaves, labels)
    if coarse is not None:
        coarse = _pair(labels, coarse, names=("labels", "coarse labels"))[1]
        n_groups = min(np.unique(coarse).size, hierarchy.k)
        groups = np.asarray(hierarchy.cut(n_groups))[leaves]
        out["coarse_dp"] = dendrogram_purity(linkage, leaves, coarse)
        out.update({f"coarse_{name}": v for name, v in flat_metrics(coarse, groups).items()})
        out["coarse_groups"] = n_groups
    return out
