"""Which numbers of groups a hierarchy is best cut at: level suggestions from the logits' confusions.

Criterion (docs/analysis.md explains the reasoning and shows the evaluation): the logits give a
*confusion graph* over the K clusters, where the weight between clusters i and j is how much the points of
one would go to the other if their own cluster did not exist (each point's masked softmax, the quantity L2H
itself merges by). Cutting the tree after ``s`` merges gives a partition; its generalised modularity at
resolution γ is ``Q_γ = M − γ·V``, with ``M`` the share of confusion inside the groups and ``V`` the share
expected from the clusters' total confusion alone (Σ_g (vol_g / W)²). Every cut maximises ``Q_γ`` over the
tree's cuts for a range of γ (possibly empty): the cuts on the upper convex hull of the points ``(V, M)``.
A level that stays optimal over a wide range of resolutions is one where the groups are much more confused
inside than with each other; its score is the width of that range, ``log(γ_max / γ_min)``, i.e. the log of
the ratio of the connection strength that built the groups to the strength of the merges above them.
With bootstrap supports per merge, the score is multiplied by the mean support of the cut's merged groups.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.validation import check_input_kind, check_shape

if TYPE_CHECKING:
    from scipy import sparse

DENSE_MAX_K = 2048  # up to this K the confusion graph keeps every entry (a dense K×K table)
TOP_CONFUSIONS = 32  # above it, each point's largest masked-softmax entries only (a sparse graph)
_MIN_SLOPE = 1e-12  # γ bounds below this count as 0 (groups with no confusion between them)


def confusion_graph(
    scores: np.ndarray,
    leaves: ArrayLike,
    *,
    input: str = "logits",
    k: int | None = None,
    top: int | None = None,
    block_rows: int = 8192,
) -> sparse.csr_matrix:
    """Symmetric K×K confusion weights between clusters, from each point's masked softmax.

    For a point with argmax cluster ``h``, the masked softmax ``q`` is the softmax over the other clusters
    (probabilities: ``p_j / Σ_{i≠h} p_i``; a point with all its mass on ``h`` adds nothing); ``q`` is added
    to row ``h``. The graph is ``C + Cᵀ`` with an empty diagonal. Rows are read in blocks (memory-mapped
    input is fine), in float32 for float16/float32 input, else float64; ``C`` is summed in float64.

    Parameters
    ----------
    scores : array (N, K)
        Logits or, with ``input="probs"``, probabilities.
    leaves : int array (N,)
        Each point's cluster (its argmax).
    input : {"logits", "probs"}
    k : int, optional
        Number of clusters (default: the number of columns).
    top : int, optional
        Keep only each point's ``top`` largest entries of ``q`` (default: all of them up to K =
        ``DENSE_MAX_K``, else ``TOP_CONFUSIONS``).
    block_rows : int
        Rows converted at once.

    Returns
    -------
    scipy.sparse.csr_matrix (K, K), float64

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[3.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    >>> confusion_graph(z, z.argmax(1)).toarray().round(2)
    array([[0.  , 1.  , 0.27],
           [1.  , 0.  , 0.73],
           [0.27, 0.73, 0.  ]])
    """
    from scipy import sparse

    check_input_kind(input)
    n, n_cols = check_shape(scores, source="scores")
    k = n_cols if k is None else int(k)
    leaves = np.asarray(leaves, dtype=np.int64)
    if leaves.shape != (n,) or (n and (leaves.min() < 0 or leaves.max() >= k)):
        raise InputError(f"leaves: expected {n} cluster ids in 0..{k - 1}")
    if top is None:
        top = k - 1 if k <= DENSE_MAX_K else TOP_CONFUSIONS
    top = max(1, min(int(top), k - 1))
    work = np.float32 if scores.dtype in (np.float16, np.float32) else np.float64

    def block_graph(start: int):
        """This block's C: a dense K×K array (all entries) or a sparse one (``top`` per row)."""
        h = leaves[start : start + block_rows]
        rows = np.arange(h.size)
        block = np.array(scores[start : start + block_rows], dtype=work)
        if input == "logits":
            block[rows, h] = -np.inf
            block -= block.max(axis=1, keepdims=True)
            np.exp(block, out=block)
        else:
            block[rows, h] = 0.0
        total = block.sum(axis=1)
        weight = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)  # q = weight · block row
        if top == k - 1:  # C[h] += q for every row: a weighted one-hot (K × rows) matrix times the block
            return sparse.csr_matrix((weight, (h, rows)), shape=(k, h.size)) @ block
        cols = np.argpartition(block, k - top, axis=1)[:, k - top :]
        values = (np.take_along_axis(block, cols, axis=1) * weight[:, None]).astype(np.float64)
        return sparse.coo_matrix((values.ravel(), (np.repeat(h, top), cols.ravel())), shape=(k, k)).tocsr()

    graph = np.zeros((k, k)) if top == k - 1 else sparse.csr_matrix((k, k), dtype=np.float64)
    for start in range(0, n, block_rows):
        graph += block_graph(start)
    graph = sparse.csr_matrix(graph)
    graph = graph + graph.T
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    return graph.tocsr()


def cut_curve(tree: Hierarchy, graph: sparse.spmatrix | ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Modularity terms of every cut of ``tree``: ``M[s]`` and ``V[s]`` after ``s`` merges (s = 0..K−1).

    ``M`` is the share of the graph's weight inside the groups, ``V`` = Σ_g (vol_g / W)², so the
    modularity at resolution γ is ``M − γ·V``. Computed in O(K log K + edges).
    """
    from scipy import sparse

    k = tree.k
    graph = sparse.csr_matrix(graph, dtype=np.float64)
    if graph.shape != (k, k):
        raise InputError(f"graph: expected shape ({k}, {k}) for K = {k}, got {graph.shape}")
    total = float(graph.sum())
    if not total > 0:
        raise InputError("graph: no confusion between clusters (every weight is 0), so no level can be scored")
    degree = np.asarray(graph.sum(axis=1)).ravel() / total
    upper = sparse.triu(graph, k=1).tocoo()
    steps = tree.merge_step(upper.row, upper.col)
    within = np.bincount(steps - 1, weights=upper.data, minlength=k - 1) * (2 / total)
    volume = np.concatenate([degree, np.zeros(k - 1)])
    for t, (a, b) in enumerate(tree.children.tolist()):
        volume[k + t] = volume[a] + volume[b]
    a, b = tree.children[:, 0], tree.children[:, 1]
    m = np.concatenate([[0.0], np.cumsum(within)])
    v = np.concatenate([[0.0], np.cumsum(2 * volume[a] * volume[b])]) + float((degree**2).sum())
    return m, v


def _hull(m: np.ndarray, v: np.ndarray) -> list[int]:
    """Merge counts ``s`` on the upper convex hull of the points (v[s], m[s]), left to right."""
    distinct = np.flatnonzero(np.r_[v[1:] > v[:-1], True])  # equal V: keep the last (largest M)
    hull: list[int] = []
    for s in distinct.tolist():
        while len(hull) >= 2:
            p, q = hull[-2], hull[-1]
            if (v[q] - v[p]) * (m[s] - m[p]) - (m[q] - m[p]) * (v[s] - v[p]) >= 0:
                hull.pop()  # q lies on or below the segment p -> s
            else:
                break
        hull.append(s)
    return hull


def _group_support(tree: Hierarchy, supports: np.ndarray, n_merges: int) -> float:
    """Mean support of the merged groups present after ``n_merges`` merges (1.0 if none)."""
    if n_merges == 0:
        return 1.0
    roots = np.setdiff1d(np.arange(tree.k, tree.k + n_merges), tree.children[:n_merges].ravel())
    return float(supports[roots - tree.k].mean())


def suggest_levels(
    tree: Hierarchy,
    scores: np.ndarray | None = None,
    *,
    leaves: ArrayLike | None = None,
    input: str = "logits",
    graph: sparse.spmatrix | np.ndarray | None = None,
    supports: ArrayLike | None = None,
    max_suggestions: int = 10,
    top: int | None = None,
) -> dict[str, Any]:
    """Rank the numbers of groups at which ``tree`` is best cut.

    Parameters
    ----------
    tree : Hierarchy
        An L2H (or any) hierarchy over K clusters; cuts follow its merge order (:meth:`Hierarchy.cut`).
    scores : array (N, K), optional
        The logits (or probabilities) the tree was built from; needed unless ``graph`` is given.
    leaves : int array (N,), optional
        Each point's cluster (default: the argmax of ``scores``).
    input : {"logits", "probs"}
    graph : sparse or dense (K, K), optional
        A symmetric confusion graph to use instead of :func:`confusion_graph` of ``scores``.
    supports : float array (K−1,), optional
        Bootstrap support of the node created at each merge step; multiplies each score by the mean
        support of the groups the cut produces.
    max_suggestions : int
        Length of the ranking.
    top : int, optional
        Entries kept per point in :func:`confusion_graph`.

    Returns
    -------
    dict
        ``suggestions``: a list, best first, of ``{"n_groups", "score", "gamma_range", "modularity"}``
        (plus ``"support"`` with supports); ``criterion``; ``baselines`` (:func:`baseline_levels`); ``note``
        when the graph is empty (no suggestions then). K < 3 gives no suggestions.

    Examples
    --------
    >>> import numpy as np
    >>> from l2h.algorithm import l2h
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(8), 50)
    >>> z = 3.0 * (y[:, None] // 4 == np.arange(8) // 4) + 4.0 * (y[:, None] == np.arange(8))
    >>> z = z + rng.normal(size=z.shape)
    >>> suggest_levels(l2h(z), z)["suggestions"][0]["n_groups"]
    2
    """
    k = tree.k
    if graph is None:
        if scores is None:
            raise InputError("suggest_levels: give the scores the tree was built from, or a confusion graph")
        if leaves is None:
            leaves = np.concatenate([np.asarray(scores[i : i + 65536]).argmax(1) for i in range(0, len(scores), 65536)])
        graph = confusion_graph(scores, leaves, input=input, k=k, top=top)
    if supports is not None:
        supports = np.asarray(supports, dtype=np.float64)
        if supports.shape != (k - 1,) or not np.all((supports >= 0) & (supports <= 1)):
            raise InputError(f"supports: expected K-1 = {k - 1} values in [0, 1], got shape {supports.shape}")
    result: dict[str, Any] = {
        "criterion": "width log(gamma_max/gamma_min) of the resolutions at which the cut maximises the "
        "modularity of the masked-softmax confusion graph among the tree's cuts"
        + (", times the mean bootstrap support of its groups" if supports is not None else ""),
        "suggestions": [],
        "baselines": baseline_levels(tree),
    }
    if not graph.sum() > 0:
        result["note"] = "no confusion between clusters (every point's masked softmax is 0), so no level is scored"
        return result
    m, v = cut_curve(tree, graph)
    hull = _hull(m, v)
    found = []
    for left, s, right in zip(hull, hull[1:], hull[2:]):
        gamma_high = max((m[s] - m[left]) / (v[s] - v[left]), _MIN_SLOPE)
        gamma_low = max((m[right] - m[s]) / (v[right] - v[s]), _MIN_SLOPE)
        item = {
            "n_groups": k - s,
            "score": math.log(gamma_high / gamma_low),
            "gamma_range": [gamma_low, gamma_high],
            "modularity": float(m[s] - v[s]),
        }
        if supports is not None:
            item["support"] = _group_support(tree, supports, s)
            item["score"] *= item["support"]
        found.append(item)
    found.sort(key=lambda item: (-item["score"], item["n_groups"]))
    result["suggestions"] = found[: max(0, int(max_suggestions))]
    return result


def tree_supports(tree: Hierarchy) -> np.ndarray | None:
    """The bootstrap support per merge that a tree carries (attribute ``support`` or ``info["support"]``),
    or None."""
    supports = getattr(tree, "support", None)
    if supports is None:
        supports = tree.info.get("support")
    return None if supports is None else np.asarray(supports, dtype=np.float64)


def baseline_levels(tree: Hierarchy) -> dict[str, int | None]:
    """Two simple level choices to compare with: the cut before the largest drop in merge affinity
    (``scores[:, 1]`` between consecutive merges; None without scores or K < 3) and ``round(√K)``."""
    k = tree.k
    out = {"sqrt_k": int(min(max(round(math.sqrt(k)), 1), k)), "largest_affinity_gap": None}
    if tree.scores is not None and tree.scores.ndim == 2 and k >= 3:
        affinity = tree.scores[:, 1]
        drop = affinity[:-1] - affinity[1:]  # drop[t]: from merge t+1 to merge t+2 (1-based)
        out["largest_affinity_gap"] = k - (int(np.argmax(drop)) + 1)
    return out
