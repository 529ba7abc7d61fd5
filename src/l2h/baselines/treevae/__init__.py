"""TreeVAE baseline (Manduchi et al., NeurIPS 2023), written after the official PyTorch code
(lauramanduchi/treevae: ``models/``, ``train/``, ``utils/``, configs ``cifar10.yml``/``cifar100.yml``/``mnist.yml``).

A variational autoencoder whose latent space is a binary tree grown top-down: :mod:`.model` (the tree and its
loss terms), :mod:`.networks` (encoders, decoders, routers), :mod:`.losses` (ELBO and contrastive terms),
:mod:`.augment` (the contrastive views), :mod:`.train` (training, growing, pruning, checkpoints).

Like DeepECT it trains from scratch on the images (the ``pixels`` backbone's flat H×W×C values in [0, 1]) of
the evaluation split itself. Points hang on their most probable leaf (argmax over leaves of the inference
routers' path probabilities). The tree over the leaves becomes a linkage by undoing the splits latest-first
(the root's split is the last merge), so cutting it at K keeps TreeVAE's first K leaves; a node left with one
child by pruning disappears. This module imports torch only inside :func:`treevae`.
"""

from __future__ import annotations

import math

import numpy as np

from l2h.baselines._common import check_features, leaf_tree_result
from l2h.baselines.result import BaselineResult
from l2h.errors import InputError

__all__ = ["treevae", "infer_image_shape", "tree_linkage"]

ENCODERS = ("cnn2", "mlp")
ACTIVATIONS = ("mse", "sigmoid")


def infer_image_shape(d: int, image_shape=None) -> tuple[int, int, int]:
    """(H, W, C) of flat images with ``d`` values: ``image_shape`` when given, else square RGB (d = 3·s²) or
    square grey (d = s²), e.g. 3072 → 32×32×3, 64 → 8×8×1, 192 → 8×8×3.

    Examples
    --------
    >>> infer_image_shape(3072)
    (32, 32, 3)
    """
    if image_shape is not None:
        shape = tuple(int(v) for v in image_shape)
        if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != d:
            raise InputError(
                f"treevae baseline: image_shape {list(image_shape)} is not [H, W, C] with H·W·C = {d} "
                f"(the features' dimension)"
            )
        return shape
    for channels in (3, 1):
        side = math.isqrt(d // channels)
        if d % channels == 0 and side * side * channels == d:
            return side, side, channels
    raise InputError(
        f"treevae baseline: cannot infer the image shape from {d} features (neither s×s×3 nor s×s "
        f"pixels); set baseline.image_shape to [H, W, C]"
    )


def tree_linkage(kids: dict[int, list[int]], split_step: dict[int, int], leaves: list[int]) -> np.ndarray:
    """Scipy linkage over ``leaves`` (node ids; linkage leaf i = ``leaves[i]``) of a tree rooted at node 0.

    ``kids``: children per node (two for a split, one for a node whose other child was pruned, none for a
    leaf); ``split_step``: when each two-child node was split. Row t merges the two sides of the (t+1)-th most
    recent split, height t+1.

    Examples
    --------
    >>> tree_linkage({0: [1, 2], 1: [], 2: [3, 4], 3: [], 4: []}, {0: 0, 2: 1}, [1, 3, 4])[:, :2].tolist()
    [[1.0, 2.0], [0.0, 3.0]]
    """
    n = len(leaves)
    rep = {leaf: i for i, leaf in enumerate(leaves)}
    size = dict.fromkeys(range(n), 1)

    def node_of(node: int) -> int:
        while node not in rep:
            if len(kids[node]) != 1:
                raise RuntimeError(f"TreeVAE tree: node {node} was merged before its children")
            node = kids[node][0]
        return rep[node]

    splits = sorted(split_step, key=split_step.get, reverse=True)
    z = np.zeros((len(splits), 4), dtype=np.float64)
    for t, node in enumerate(splits):
        a, b = node_of(kids[node][0]), node_of(kids[node][1])
        z[t] = (a, b, t + 1, size[a] + size[b])
        rep[node], size[n + t] = n + t, size[a] + size[b]
    return z


def _levels(values, name: str) -> list[int]:
    try:
        if isinstance(values, str):
            raise TypeError
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"treevae baseline: {name} must be a list of positive integers, got {values!r}") from None
    if len(out) < 2 or min(out) < 1:
        raise InputError(f"treevae baseline: {name} must list ≥ 2 positive sizes (one per level), got {out}")
    return out


def treevae(
    features,
    *,
    k: int,
    seed: int = 0,
    image_shape: list[int] | None = None,
    encoder: str = "cnn2",
    activation: str = "mse",
    latent_dim: list[int] | tuple[int, ...] = (64,) * 6,
    mlp_layers: list[int] | tuple[int, ...] = (4096, 512, 512, 512, 512, 512),
    max_depth: int | None = None,
    num_epochs: int = 150,
    num_epochs_smalltree: int = 150,
    num_epochs_intermediate_fulltrain: int = 0,
    num_epochs_finetuning: int = 0,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    decay_lr: float = 0.1,
    decay_stepsize: int = 100,
    decay_kl: float = 0.01,
    kl_start: float = 0.01,
    grow: bool = True,
    prune: bool = True,
    augment: bool = True,
    augmentation_method: list[str] | tuple[str, ...] = ("InfoNCE", "instancewise_full"),
    aug_decisions_weight: float = 100.0,
    aug_strength: float = 0.5,
    device: str = "auto",
    progress: bool = True,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 10,
) -> BaselineResult:
    """Train TreeVAE on images given as flat pixels and return its tree over its leaves.

    Parameters
    ----------
    features : array (N, H·W·C)
        Pixels in [0, 1], H×W×C order (the ``pixels`` backbone).
    k : int
        ``num_clusters_tree``: growing stops at k effective leaves; flat clusters = the tree cut at k (its
        leaves when it has fewer).
    seed : int
        Fixes the networks' initialisation, batch order, views and latent samples.
    image_shape : [H, W, C] or None
        None infers it from the dimension (:func:`infer_image_shape`).
    encoder, activation, latent_dim, mlp_layers
        ``cnn2`` (residual CNN; its output size must be ``mlp_layers[0]``, 4,096 for 32×32) or ``mlp``;
        reconstruction loss ``mse`` (summed squared error) or ``sigmoid`` (binary cross-entropy); latent size and
        MLP width per level, bottom (encoder output) first.
    max_depth : int or None
        Deepest leaf; None = max(len(latent_dim) − 1, ⌈log2 k⌉). Levels missing from the lists repeat their last
        (root-side) entry.
    num_epochs, num_epochs_smalltree, num_epochs_intermediate_fulltrain, num_epochs_finetuning, batch_size,
    lr, weight_decay, decay_lr, decay_stepsize, decay_kl, kl_start, grow, prune
        The official schedule (:mod:`l2h.baselines.treevae.train`).
    augment, augmentation_method, aug_decisions_weight, aug_strength
        Two random views per image (:mod:`.augment`) and the contrastive terms: ``InfoNCE`` on the inference
        routers, ``instancewise_full`` on per-level projections of the bottom-up features; their weight.
    device : "auto", "cpu" or "cuda"
        "auto" = CUDA when available. CPU runs are bit-reproducible for a seed and thread count.
    progress, checkpoint_dir, checkpoint_every
        tqdm bars; a folder for a resumable checkpoint saved every ``checkpoint_every`` epochs of each phase.

    Returns
    -------
    BaselineResult
        Tree over the leaves, each point's most probable leaf, the flat clusters; ``info`` (config and seed
        only) and ``run_info`` (timings, resumption).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> x = (load_digits().data / 16).astype("float32")
    >>> result = treevae(x, k=10, encoder="mlp", activation="sigmoid", latent_dim=[8] * 5,
    ...                  mlp_layers=[128] * 5, num_epochs=30, num_epochs_smalltree=30, batch_size=64,
    ...                  augment=False, device="cpu", progress=False)          # doctest: +SKIP
    """
    from l2h.baselines.treevae.model import CONTRASTIVE_METHODS, ModelConfig
    from l2h.baselines.treevae.networks import resnet_out_dim
    from l2h.baselines.treevae.train import Recipe, assign, fit
    from l2h.clusterers._torch import resolve_device

    x = check_features(features, k=k)
    height, width, channels = infer_image_shape(x.shape[1], image_shape)
    if encoder not in ENCODERS:
        raise InputError(f"treevae baseline: encoder must be one of {ENCODERS}, got {encoder!r}")
    if activation not in ACTIVATIONS:
        raise InputError(f"treevae baseline: activation must be one of {ACTIVATIONS}, got {activation!r}")
    latent, hidden = _levels(latent_dim, "latent_dim"), _levels(mlp_layers, "mlp_layers")
    if len(latent) != len(hidden):
        raise InputError(
            f"treevae baseline: latent_dim and mlp_layers need one entry per level, got {len(latent)} and {len(hidden)}"
        )
    if encoder == "cnn2":
        if height != width or height < 4 or height & (height - 1):  # the side must be 4·2^n
            raise InputError(
                f"treevae baseline: encoder cnn2 needs square images of side 4·2^n, got "
                f"{height}×{width}; use encoder: mlp"
            )
        if hidden[0] != resnet_out_dim(height):
            raise InputError(
                f"treevae baseline: encoder cnn2 on {height}×{width} images outputs "
                f"{resnet_out_dim(height)} features, so mlp_layers[0] must be that, got {hidden[0]}"
            )
    depth = max(len(latent) - 1, math.ceil(math.log2(k))) if max_depth is None else int(max_depth)
    if depth < 1:
        raise InputError(f"treevae baseline: max_depth must be ≥ 1, got {max_depth}")
    latent += [latent[-1]] * (depth + 1 - len(latent))
    hidden += [hidden[-1]] * (depth + 1 - len(hidden))
    methods = tuple(augmentation_method or ()) if augment else ()
    if set(methods) - set(CONTRASTIVE_METHODS):
        raise InputError(
            f"treevae baseline: augmentation_method must be a subset of {list(CONTRASTIVE_METHODS)}, "
            f"got {list(augmentation_method)}"
        )
    epochs = {
        "num_epochs": num_epochs,
        "num_epochs_smalltree": num_epochs_smalltree,
        "num_epochs_intermediate_fulltrain": num_epochs_intermediate_fulltrain,
        "num_epochs_finetuning": num_epochs_finetuning,
        "decay_stepsize": decay_stepsize,
        "checkpoint_every": checkpoint_every,
    }
    for name, value in epochs.items():
        if (
            isinstance(value, bool)
            or int(value) != value
            or value < (1 if name in ("num_epochs", "decay_stepsize", "checkpoint_every") else 0)
        ):
            raise InputError(
                f"treevae baseline: {name} must be a non-negative integer (≥ 1 for num_epochs, "
                f"decay_stepsize, checkpoint_every), got {value!r}"
            )
    if int(batch_size) != batch_size or batch_size < 2 or (augment and batch_size % 2):
        raise InputError(
            f"treevae baseline: batch_size must be an integer ≥ 2 (even with augment: half the batch "
            f"are first views), got {batch_size!r}"
        )
    dev = resolve_device(str(device))

    cfg = ModelConfig(
        shape=(channels, height, width),
        encoder=encoder,
        activation=activation,
        latent=tuple(latent),
        hidden=tuple(hidden),
        methods=methods,
    )
    recipe = Recipe(
        k=int(k),
        num_epochs=int(num_epochs),
        num_epochs_smalltree=int(num_epochs_smalltree),
        num_epochs_intermediate_fulltrain=int(num_epochs_intermediate_fulltrain),
        num_epochs_finetuning=int(num_epochs_finetuning),
        batch_size=int(batch_size),
        lr=float(lr),
        weight_decay=float(weight_decay),
        decay_lr=float(decay_lr),
        decay_stepsize=int(decay_stepsize),
        decay_kl=float(decay_kl),
        kl_start=float(kl_start),
        grow=bool(grow),
        prune=bool(prune),
        augment=bool(augment),
        aug_decisions_weight=float(aug_decisions_weight),
        aug_strength=float(aug_strength),
        max_depth=depth,
    )
    images = np.ascontiguousarray(
        np.asarray(x, dtype=np.float32).reshape(-1, height, width, channels).transpose(0, 3, 1, 2)
    )
    model, record, run_info = fit(
        images,
        cfg,
        recipe,
        seed=int(seed),
        device=dev,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=int(checkpoint_every),
    )
    leaf_nodes, probs = assign(model, images, dev)
    if len(leaf_nodes) < 2:
        raise RuntimeError(
            "TreeVAE ended with a single leaf (pruning removed every split), so there is no tree to "
            "evaluate; use another seed or more epochs"
        )
    leaves = probs.argmax(1).astype(np.int64)
    z = tree_linkage(model.kids, model.split_step, leaf_nodes)
    n_leaves = len(leaf_nodes)
    settings = {
        "image_shape": [height, width, channels],
        "encoder": encoder,
        "activation": activation,
        "latent_dim": latent,
        "mlp_layers": hidden,
        "max_depth": depth,
        **{n: int(v) for n, v in epochs.items() if n != "checkpoint_every"},
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "decay_lr": float(decay_lr),
        "decay_kl": float(decay_kl),
        "kl_start": float(kl_start),
        "grow": bool(grow),
        "prune": bool(prune),
        "augment": bool(augment),
        "augmentation_method": list(methods),
        "aug_decisions_weight": float(aug_decisions_weight),
        "aug_strength": float(aug_strength),
        "seed": int(seed),
    }
    info = {
        "method": "treevae",
        "implementation": "l2h.baselines.treevae (after lauramanduchi/treevae)",
        **settings,
        "n_points": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "k": int(k),
        "n_leaves": n_leaves,
        "leaf_nodes": leaf_nodes,
        "leaf_depths": [model.depth[n] for n in leaf_nodes],
    }
    info.update({**record, "device": dev.type})
    return leaf_tree_result(z, leaves, k, info, "TreeVAE", run_info=run_info)
