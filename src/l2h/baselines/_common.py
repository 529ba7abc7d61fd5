"""What the baselines share: input checks, and the result of a tree over a model's own leaf clusters."""

from __future__ import annotations

import numpy as np

from l2h.baselines.result import BaselineResult
from l2h.errors import InputError


def check_features(features, *, k: int, name: str = "features", block_rows: int = 65536) -> np.ndarray:
    """``features`` as a 2-D float array with N ≥ 2 finite rows and 2 ≤ k ≤ N (checked in row blocks)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise InputError(f"{name}: expected an N×d array with N ≥ 2 and d ≥ 1, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise InputError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    for start in range(0, x.shape[0], block_rows):
        if not np.all(np.isfinite(x[start : start + block_rows])):
            raise InputError(f"{name}: contains NaN or inf (rows {start}..{start + block_rows - 1})")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= x.shape[0]:
        raise InputError(f"{name}: k must be an integer with 2 ≤ k ≤ N = {x.shape[0]}, got {k!r}")
    return x


def leaf_tree_result(z: np.ndarray, leaves: np.ndarray, k: int, info: dict, method: str, **extra) -> BaselineResult:
    """The result of a baseline whose tree is over its own leaf clusters (DeepECT, TreeVAE): the hierarchy of
    linkage ``z``, each point on its leaf, and the flat partition at ``k`` (its leaves when it has fewer, which
    ``info`` then says); ``extra`` goes to :class:`BaselineResult` (e.g. ``run_info``)."""
    from l2h.hierarchy import Hierarchy

    n_leaves = int(z.shape[0]) + 1
    hierarchy = Hierarchy.from_linkage(z, info=dict(info))
    fewer = n_leaves < k
    clusters = leaves.copy() if n_leaves <= k else np.asarray(hierarchy.cut(k), dtype=np.int64)[leaves]
    note = (
        f"{method}'s tree has {n_leaves} leaves, fewer than k = {k}: the flat clusters are its leaves"
        if fewer
        else f"flat clusters = the tree cut at k = {k}"
    )
    info = {
        **info,
        "fewer_leaves_than_k": fewer,
        "note": note,
        "leaf_sizes": np.bincount(leaves, minlength=n_leaves).tolist(),
        "indices": None,
    }
    return BaselineResult(hierarchy, leaves, clusters, info, **extra)
