"""The readable definition of L2H: the merge loop of "From Logits to Hierarchies", transcribed literally.

:func:`literal_l2h` follows the paper's loop step by step in plain Python and numpy: every step scores every
group over all N points, takes the group of lowest score, re-assigns its points with the masked softmax and
picks the group they join with the highest affinity. It costs O(K²·N) and is meant to be read, not run on
large data: :func:`l2h.algorithm.l2h` computes the same merges and scores in O(N·K) + Σ_t |D_{G*_t}|·K, and the
tests compare the two merge for merge and score for score, to the last bit.

Definitions (the paper leaves ties, empty clusters and the all-pairs score open; both implementations use
these rules):

* The logits ``z`` are read in the *compute dtype*: float32 for float16/float32 input, float64 otherwise.
* ``p = softmax(z)``; ``h(x) = argmax_k p_k`` (the first one on ties), ``g(x) = max_k p_k =
  1 / Σ_k exp(z_k − max z)``; ``D_c = {x : h(x) = c}``.
* Masked softmax for a group G (the clusters of G do not exist): ``h^m(x; G)`` = the first argmax of ``z``
  over the columns outside G, ``g^m(x; G) = 1 / Σ_{k∉G} exp(z_k − max_{j∉G} z_j)``. With ``input="probs"``:
  ``g = max_k p_k`` and ``g^m = max_{k∉G} p_k / Σ_{k∉G} p_k`` (0 where that sum is 0).
* Every sum over points or clusters is exactly rounded (:func:`math.fsum`), so no result depends on the
  order of the points.
* Cluster mean ``m_c = Σ_{x∈D_c} g(x) / |D_c|``, 0 for an empty cluster. Group scores (``aggregation``):
  ``sum_of_cluster_means`` = Σ_{c∈G} m_c (the default, the paper's ICML version), ``mean_of_cluster_means`` =
  that / |G|, ``sum_all`` = Σ_{x∈D_G} g(x) (the first version's), ``mean_all`` = that / |D_G| (0 if empty).
* Affinity of a group G for G*: ``a(G) = Σ g^m(x; G*) over x ∈ D_{G*} with h^m(x; G*) ∈ G, / |G|``.
* Ties go to the earliest group in list order (singletons 0..K−1, then merged groups in creation order).
  When every affinity is 0 (e.g. D_{G*} is empty), G† is the first other group.
* ``strategy="all_pairs"`` (the paper's ablation, which gives no formula; a reconstruction): for each group G,
  ``A(G, G') = Σ g^m(x; G) over x ∈ D_G with h^m(x; G) ∈ G', / |G'| / max(|D_G|, 1)``; the pair (G, G') with
  the highest ``A(G, G') + A(G', G)`` merges (ties: the earliest pair in lexicographic list order), G* being
  the one with the lower group score (the earlier one on ties).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["literal_l2h"]

Group = tuple[int, ...]


def literal_l2h(
    scores, aggregation: str = "sum_of_cluster_means", strategy: str = "lowest_score", input: str = "logits"
) -> tuple[list[tuple[Group, Group]], list[tuple[float, float]]]:
    """L2H by its definition: the paper's merge loop over all N points at every step.

    Parameters
    ----------
    scores : array_like, shape (N, K)
        Logits (``input="logits"``) or softmax probabilities (``input="probs"``).
    aggregation : {"sum_of_cluster_means", "mean_of_cluster_means", "sum_all", "mean_all"}
        Group score (see the module's definitions).
    strategy : {"lowest_score", "all_pairs"}
        The paper's loop, or the all-pairs ablation (a reconstruction).
    input : {"logits", "probs"}
        What ``scores`` holds.

    Returns
    -------
    merges : list of (G*, G†)
        Per step, the two merged groups as tuples of cluster ids (G* first); the merged group is G* + G†.
    recorded : list of (float, float)
        Per step, the score of G* and the affinity of G† (all pairs: the lower group score and the pair score).

    Examples
    --------
    Four clusters of 50 points each, where clusters 0 and 1 (and 2 and 3) are often confused:

    >>> import numpy as np
    >>> y = np.repeat(np.arange(4), 50)
    >>> z = 2.0 * (y[:, None] // 2 == np.arange(4) // 2) + 3.0 * (y[:, None] == np.arange(4))
    >>> z = z + np.random.default_rng(0).normal(size=z.shape)
    >>> merges, recorded = literal_l2h(z)
    >>> merges
    [((2,), (3,)), ((0,), (1,)), ((2, 3), (0, 1))]

    The fast implementation gives the same merges and G* scores, bit for bit:

    >>> from l2h.algorithm import l2h
    >>> tree = l2h(z, cache_gib=0)
    >>> tree.merges == merges and tree.scores.tolist() == [list(r) for r in recorded]
    True
    """
    z = np.asarray(scores)
    z = np.ascontiguousarray(z, dtype=np.float32 if z.dtype in (np.float16, np.float32) else np.float64)
    k = z.shape[1]
    h, g = assignment(z, input)

    groups: list[Group] = [(c,) for c in range(k)]
    merges, recorded = [], []
    for _ in range(k - 1):
        if strategy == "lowest_score":
            # 1. score every group; 2. G* = the group with the lowest score
            s = [group_score(G, h, g, aggregation) for G in groups]
            star = s.index(min(s))
            # 3. re-assign the points of D_{G*} with the masked softmax (mask = G*)
            hm, gm = masked_softmax(z[np.isin(h, groups[star])], groups[star], input)
            # 4. the affinity of every other group; 5. G† = the group with the highest affinity
            best, dagger = -1.0, None
            for j, G in enumerate(groups):
                if j != star:
                    a = affinity(hm, gm, G)
                    if a > best:
                        best, dagger = a, j
            record = (s[star], best)
        else:
            star, dagger, record = _best_pair(z, h, g, groups, aggregation, input)
        # 6. replace G* and G† by G* + G†, at the end of the list; 7. record the merge
        merges.append((groups[star], groups[dagger]))
        recorded.append(record)
        merged = groups[star] + groups[dagger]
        groups = [G for j, G in enumerate(groups) if j not in (star, dagger)] + [merged]
    return merges, recorded


def assignment(z: np.ndarray, input: str) -> tuple[np.ndarray, np.ndarray]:
    """``h`` (first argmax) and ``g`` (max softmax, float64) of every row of ``z`` (compute dtype)."""
    h = z.argmax(axis=1)
    if input == "probs":
        g = z.max(axis=1)
    else:
        g = 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)
    return h, g.astype(np.float64)


def masked_softmax(rows: np.ndarray, group: Group, input: str) -> tuple[np.ndarray, np.ndarray]:
    """``h^m`` and ``g^m`` (float64) of ``rows`` (a copy, overwritten) with the clusters of ``group`` removed."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if input == "probs":
        rows[:, list(group)] = 0
        hm = rows.argmax(axis=1)
        total = rows.sum(axis=1)
        gm = np.zeros_like(total)
        np.divide(rows.max(axis=1), total, out=gm, where=total > 0)
    else:
        rows[:, list(group)] = -np.inf
        hm = rows.argmax(axis=1)
        gm = 1.0 / np.exp(rows - rows.max(axis=1, keepdims=True)).sum(axis=1)
    return hm, gm.astype(np.float64)


def cluster_mean(c: int, h: np.ndarray, g: np.ndarray) -> float:
    """``m_c``: the mean confidence of the points of cluster ``c`` (0 if it has none)."""
    confidences = g[h == c]
    return math.fsum(confidences.tolist()) / confidences.size if confidences.size else 0.0


def group_score(group: Group, h: np.ndarray, g: np.ndarray, aggregation: str) -> float:
    """The score s(G) of ``group`` under ``aggregation``."""
    if aggregation == "sum_of_cluster_means":
        return math.fsum([cluster_mean(c, h, g) for c in group])
    if aggregation == "mean_of_cluster_means":
        return math.fsum([cluster_mean(c, h, g) for c in group]) / len(group)
    confidences = g[np.isin(h, group)]
    if aggregation == "sum_all":
        return math.fsum(confidences.tolist())
    return math.fsum(confidences.tolist()) / confidences.size if confidences.size else 0.0  # mean_all


def affinity(hm: np.ndarray, gm: np.ndarray, group: Group) -> float:
    """``a(G)``: the re-assigned confidence ``g^m`` of the points that go to ``group``, per cluster of it."""
    return math.fsum(gm[np.isin(hm, group)].tolist()) / len(group)


def _best_pair(
    z: np.ndarray, h: np.ndarray, g: np.ndarray, groups: list[Group], aggregation: str, input: str
) -> tuple[int, int, tuple[float, float]]:
    """All-pairs strategy: (G*, G†, (lower group score, pair score)) of the pair with the highest pair score."""
    reassigned = []  # per group G: h^m, g^m of D_G with mask G, and |D_G|
    for G in groups:
        in_group = np.isin(h, G)
        reassigned.append((*masked_softmax(z[in_group], G, input), int(in_group.sum())))

    def directed(i: int, j: int) -> float:  # A(G_i, G_j)
        hm, gm, size = reassigned[i]
        return affinity(hm, gm, groups[j]) / max(size, 1)

    best = None
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            pair = directed(i, j) + directed(j, i)
            if best is None or pair > best:
                best, first, second = pair, i, j
    s_first = group_score(groups[first], h, g, aggregation)
    s_second = group_score(groups[second], h, g, aggregation)
    star, dagger = (second, first) if s_second < s_first else (first, second)
    return star, dagger, (min(s_first, s_second), best)
