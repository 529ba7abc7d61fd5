"""DeepECT baseline (Mautz et al., ICDM 2019) through ClustPy's implementation (``clustpy.deep.DeepECT``).

DeepECT is trained from scratch on the images' pixels (the ``pixels`` backbone: flat RGB in [0, 1]),
z-normalised as ClustPy's own pipelines do (``clustpy.data.z_normalization``, one global mean/std by
default), on the evaluation split itself (transductive, like the agglomerative baseline). Defaults
are ClustPy's (= the DeepECT paper's): autoencoder [d, 500, 500, 2000, 10] pretrained 100 epochs
(Adam, lr 1e-3), then 150 clustering epochs (lr 1e-4), batch 256, one leaf grown every 2 epochs,
pruning threshold 0.1, at most 20 leaves.

DeepECT grows its tree top-down by splitting leaves, so its tree converts to a linkage over its
leaves by undoing the splits latest-first: merge step t undoes the t-th most recent surviving split
(a split's time = the creation id of its first child). Cutting the tree at K therefore keeps DeepECT's
first K leaves. Points hang on their DeepECT leaf (nearest leaf centre in the embedding). Colour
images often collapse to 2–3 leaves (docs/paper.md §3.5); then the tree has fewer leaves than K, the flat
clusters are the leaves themselves and ``info["fewer_leaves_than_k"]`` is true.
"""

from __future__ import annotations

import time

import numpy as np

from l2h.baselines._common import check_features, leaf_tree_result
from l2h.baselines.result import BaselineResult
from l2h.errors import InputError

SCALINGS = ("znorm", "znorm_feature", "none")


def tree_to_linkage(tree) -> tuple[np.ndarray, np.ndarray]:
    """A ClustPy ``BinaryClusterTree`` as a scipy linkage over its leaves.

    Returns ``(Z, cluster_ids)``: leaf i of the linkage is the DeepECT leaf whose cluster label is
    ``cluster_ids[i]`` (sorted ascending); row t merges the two sides of the (t+1)-th most recent
    split, height t+1, 4th column = number of leaves under the new node.
    """
    leaf_nodes, split_nodes = tree.get_leaf_and_split_nodes()
    cluster_ids = np.array(sorted(int(node.labels[0]) for node in leaf_nodes), dtype=np.int64)
    node_id = {id(node): int(np.searchsorted(cluster_ids, node.labels[0])) for node in leaf_nodes}
    size = {id(node): 1 for node in leaf_nodes}
    n_leaves = cluster_ids.size
    order = sorted(split_nodes, key=lambda node: min(node.left_node_.node_id_, node.right_node_.node_id_), reverse=True)
    z = np.zeros((len(order), 4), dtype=np.float64)
    for t, node in enumerate(order):
        left, right = id(node.left_node_), id(node.right_node_)
        if left not in node_id or right not in node_id:
            raise RuntimeError("DeepECT tree: a split was undone before one of its children")
        z[t] = (node_id[left], node_id[right], t + 1, size[left] + size[right])
        node_id[id(node)] = n_leaves + t
        size[id(node)] = size[left] + size[right]
    return z, cluster_ids


def _scale(x: np.ndarray, scaling: str) -> np.ndarray:
    from clustpy.data import z_normalization

    if scaling == "none":
        return np.asarray(x, dtype=np.float32)
    return z_normalization(np.asarray(x, dtype=np.float64), feature_or_channel_wise=scaling == "znorm_feature").astype(
        np.float32
    )


def deepect(
    features,
    *,
    k: int,
    seed: int = 0,
    max_leaves: int | None = None,
    pretrain_epochs: int = 100,
    clustering_epochs: int = 150,
    batch_size: int = 256,
    embedding_size: int = 10,
    hidden_layers: tuple[int, ...] | list[int] = (500, 500, 2000),
    pretrain_lr: float = 1e-3,
    clustering_lr: float = 1e-4,
    grow_interval: int = 2,
    pruning_threshold: float = 0.1,
    scaling: str = "znorm",
    device: str | None = "cpu",
) -> BaselineResult:
    """Train ClustPy's DeepECT on ``features`` (N × d pixels) and return its tree over its leaves.

    max_leaves: the most leaves DeepECT may grow (null = max(k, 20), 20 being ClustPy's default).
    hidden_layers: the autoencoder's hidden widths between the input and the embedding (ClustPy's
    feed-forward autoencoder, mirrored in the decoder).
    scaling: "znorm" (global mean/std), "znorm_feature" (per feature) or "none". device: "cpu"
    (bit-reproducible for a seed), "cuda", or null (ClustPy picks). ``seed`` is ClustPy's random_state,
    from which it seeds torch, numpy and its k-means. Training time is ``run_info["train_time_s"]``.
    """
    from clustpy.deep import DeepECT
    from clustpy.deep import deepect as clustpy_deepect
    from clustpy.deep.neural_networks import FeedforwardAutoencoder, _abstract_neural_network

    from l2h.progress import routed_progress

    x = check_features(features, k=k)
    if scaling not in SCALINGS:
        raise InputError(f"deepect baseline: scaling must be one of {SCALINGS}, got {scaling!r}")
    max_leaves = max(k, 20) if max_leaves is None else int(max_leaves)
    if max_leaves < 2:
        raise InputError(f"deepect baseline: max_leaves must be ≥ 2, got {max_leaves}")
    hidden = [int(width) for width in hidden_layers]
    if any(width < 1 for width in hidden) or embedding_size < 1:
        raise InputError(
            f"deepect baseline: layer widths must be ≥ 1, got hidden_layers={hidden}, embedding_size={embedding_size}"
        )
    layers = [x.shape[1], *hidden, int(embedding_size)]
    x = _scale(x, scaling)
    model = DeepECT(
        max_n_leaf_nodes=max_leaves,
        batch_size=batch_size,
        pretrain_epochs=pretrain_epochs,
        clustering_epochs=clustering_epochs,
        embedding_size=embedding_size,
        neural_network=(FeedforwardAutoencoder, {"layers": layers}),
        pretrain_optimizer_params={"lr": pretrain_lr},
        clustering_optimizer_params={"lr": clustering_lr},
        grow_interval=grow_interval,
        pruning_threshold=pruning_threshold,
        device=device,
        random_state=seed,
    )
    start = time.perf_counter()
    with routed_progress(clustpy_deepect, _abstract_neural_network):  # ClustPy's bars: lines in log files
        model.fit(x)
    train_time = time.perf_counter() - start

    z, cluster_ids = tree_to_linkage(model.tree_)
    if cluster_ids.size < 2:
        raise RuntimeError(
            "DeepECT ended with a single leaf (its last pruning removed every split), so there is "
            "no tree to evaluate; use another seed or change clustering_epochs/pruning_threshold"
        )
    labels = np.asarray(model.labels_, dtype=np.int64)
    leaves = np.searchsorted(cluster_ids, labels)
    if np.any(leaves >= cluster_ids.size) or np.any(cluster_ids[np.minimum(leaves, cluster_ids.size - 1)] != labels):
        raise RuntimeError("DeepECT assigned points to a cluster that is not a leaf of its tree")
    n_leaves = int(cluster_ids.size)
    settings = {
        "max_leaves": max_leaves,
        "pretrain_epochs": pretrain_epochs,
        "clustering_epochs": clustering_epochs,
        "batch_size": batch_size,
        "embedding_size": embedding_size,
        "layers": layers,
        "pretrain_lr": pretrain_lr,
        "clustering_lr": clustering_lr,
        "grow_interval": grow_interval,
        "pruning_threshold": pruning_threshold,
        "scaling": scaling,
        "seed": seed,
    }
    info = {
        "method": "deepect",
        "implementation": "clustpy.deep.DeepECT",
        **settings,
        "n_points": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "k": int(k),
        "n_leaves": n_leaves,
        "deepect_cluster_ids": cluster_ids.tolist(),
    }
    info["device"] = str(next(model.neural_network_trained_.parameters()).device)
    return leaf_tree_result(z, leaves, k, info, "DeepECT", run_info={"train_time_s": train_time})
