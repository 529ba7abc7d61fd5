"""The TreeVAE model: a deterministic bottom-up chain and a probabilistic top-down binary tree.

Levels: the bottom-up chain has L levels, level 0 = the encoder's output, level i = a one-hidden-layer MLP of
level i−1, level L−1 feeds the root. A node at depth D reads level l = L−1−D and owns

* ``dense``: the bottom-up estimate (mean, variance) of its latent from the level-l feature;
* ``transform`` (all but the root): the top-down prior of its latent given its parent's sample;
* ``router`` (generative, from its own sample) and ``router_q`` (inference, from the level-l feature) when it
  is split: P(left child);
* ``decoder`` when it is a leaf.

The posterior of a node combines its bottom-up estimate with its top-down prior (precision-weighted); the
root's prior is N(0, I) and its posterior the bottom-up estimate. A node whose child was pruned has one child,
no router and no decoder: its probability passes through unchanged.

``latent`` and ``hidden`` are indexed by level (bottom first, as the official ``latent_dim``/``mlp_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from l2h.baselines.treevae import losses
from l2h.baselines.treevae.networks import (
    GaussianDense,
    GaussianMLP,
    MLPDecoder,
    MLPEncoder,
    ResNetDecoder,
    ResNetEncoder,
    Router,
)

CONTRASTIVE_METHODS = ("InfoNCE", "instancewise_full")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture: image shape (C, H, W), encoder ``cnn2`` or ``mlp``, reconstruction ``mse`` or ``sigmoid``,
    per-level latent sizes and MLP widths, contrastive methods (a subset of :data:`CONTRASTIVE_METHODS`)."""

    shape: tuple[int, int, int]
    encoder: str
    activation: str
    latent: tuple[int, ...]
    hidden: tuple[int, ...]
    methods: tuple[str, ...] = field(default=())

    @property
    def levels(self) -> int:
        return len(self.latent)


def sample(mu: torch.Tensor, var: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Reparameterised draw from N(mu, var + EPS) with noise from ``gen``."""
    noise = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
    return mu + torch.sqrt(var + losses.EPS) * noise


class TreeNode(nn.Module):
    """A node's networks; ``router``/``router_q``/``decoder`` are set (or cleared) as the tree changes."""

    def __init__(self, dense: nn.Module, transform: nn.Module | None):
        super().__init__()
        self.dense = dense
        self.register_module("transform", transform)
        for name in ("router", "router_q", "decoder"):  # fixed slots: a stable parameter order
            self.register_module(name, None)


def make_decoder(cfg: ModelConfig, n_in: int) -> nn.Module:
    channels, height, _ = cfg.shape
    sigmoid = cfg.activation == "sigmoid"
    if cfg.encoder == "cnn2":
        return ResNetDecoder(n_in, channels, height, sigmoid)
    return MLPDecoder(n_in, cfg.shape, sigmoid)


def make_node(cfg: ModelConfig, depth: int) -> TreeNode:
    """A node at ``depth`` with its bottom-up head and (below the root) its top-down transformation."""
    level = cfg.levels - 1 - depth
    transform = None if depth == 0 else GaussianMLP(cfg.latent[level + 1], cfg.latent[level], cfg.hidden[level + 1])
    return TreeNode(GaussianDense(cfg.hidden[level], cfg.latent[level]), transform)


def make_routers(cfg: ModelConfig, depth: int) -> tuple[Router, Router]:
    """(generative router from the node's latent, inference router from its bottom-up feature)."""
    level = cfg.levels - 1 - depth
    return Router(cfg.latent[level], cfg.hidden[level]), Router(cfg.hidden[level], cfg.hidden[level])


class SmallTree(nn.Module):
    """The depth-one subtree trained to split a leaf at ``depth`` (its router pair and two children)."""

    def __init__(self, cfg: ModelConfig, depth: int):
        super().__init__()
        self.cfg, self.depth = cfg, depth
        self.router, self.router_q = make_routers(cfg, depth)
        self.kids = nn.ModuleList(make_node(cfg, depth + 1) for _ in range(2))
        for kid in self.kids:
            kid.decoder = make_decoder(cfg, cfg.latent[cfg.levels - 2 - depth])

    def terms(
        self,
        x: torch.Tensor,
        feats: list[torch.Tensor],
        z_parent: torch.Tensor,
        p_parent: torch.Tensor,
        gen: torch.Generator,
        contrastive: bool,
    ) -> dict[str, torch.Tensor]:
        """Loss terms given the frozen tree's features, the leaf's sample and P(leaf | x)."""
        level = self.cfg.levels - 1 - self.depth
        p_left = self.router(z_parent)
        q_left = self.router_q(feats[level])
        probs = [p_parent * q_left, p_parent * (1 - q_left)]
        kl_decisions = (p_parent * losses.kl_decision(q_left, p_left)).mean()
        aug = x.new_zeros(())
        if contrastive and "InfoNCE" in self.cfg.methods:
            aug = aug + losses.info_nce_router(q_left, p_parent)
        kl_nodes, recons = x.new_zeros(()), []
        for kid, prob in zip(self.kids, probs):
            mu_hat, var_hat = kid.dense(feats[level - 1])
            _, mu_p, var_p = kid.transform(z_parent)
            mu_q, var_q = losses.posterior(mu_hat, var_hat, mu_p, var_p)
            kl_nodes = kl_nodes + (prob * losses.kl_gaussian(mu_q, var_q, mu_p, var_p)).mean()
            recons.append(kid.decoder(sample(mu_q, var_q, gen)))
        rec = losses.reconstruction(x, recons, probs, self.cfg.activation).mean()
        return {
            "rec": rec,
            "kl_root": x.new_zeros(()),
            "kl_decisions": kl_decisions,
            "kl_nodes": kl_nodes.clamp(-10, 1e10),
            "aug": aug,
        }


class TreeVAE(nn.Module):
    """Bottom-up chain, contrastive projections and the tree (``nodes`` keyed by node id; structure in
    ``kids``/``parent``/``depth``/``split_step``: node ids never change, children are listed left first)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        channels, height, width = cfg.shape
        encoder = (
            ResNetEncoder(channels, height)
            if cfg.encoder == "cnn2"
            else MLPEncoder(channels * height * width, cfg.hidden[0])
        )
        self.bottom_up = nn.ModuleList(
            [encoder] + [GaussianMLP(cfg.hidden[i - 1], cfg.latent[i], cfg.hidden[i]) for i in range(1, cfg.levels)]
        )
        self.contrastive = (
            nn.ModuleList(GaussianMLP(cfg.hidden[i], cfg.latent[i], min(cfg.hidden)) for i in range(cfg.levels))
            if "instancewise_full" in cfg.methods
            else None
        )
        self.nodes = nn.ModuleDict()
        self.kids: dict[int, list[int]] = {}
        self.parent: dict[int, int] = {}
        self.depth: dict[int, int] = {}
        self.split_step: dict[int, int] = {}
        self.next_id = 0

    # -- structure --------------------------------------------------------------------------------------
    @classmethod
    def initial(cls, cfg: ModelConfig) -> "TreeVAE":
        """Root and two leaves (the official ``initial_depth: 1``)."""
        model = cls(cfg)
        root = model._add_node(None)
        model.nodes[str(root)].router, model.nodes[str(root)].router_q = make_routers(cfg, 0)
        model.split_step[root] = 0
        for _ in range(2):
            leaf = model._add_node(root)
            model.nodes[str(leaf)].decoder = make_decoder(cfg, cfg.latent[cfg.levels - 2])
        return model

    def _add_node(self, parent: int | None, module: TreeNode | None = None) -> int:
        node = self.next_id
        self.next_id += 1
        depth = 0 if parent is None else self.depth[parent] + 1
        self.nodes[str(node)] = module if module is not None else make_node(self.cfg, depth)
        self.kids[node], self.depth[node] = [], depth
        if parent is not None:
            self.parent[node] = parent
            self.kids[parent].append(node)
        return node

    def structure(self) -> dict:
        """The tree's shape as plain data (rebuild with :meth:`from_structure`)."""
        return {
            "kids": {str(n): list(k) for n, k in self.kids.items()},
            "parent": {str(n): p for n, p in self.parent.items()},
            "split_step": {str(n): s for n, s in self.split_step.items()},
            "next_id": self.next_id,
        }

    @classmethod
    def from_structure(cls, cfg: ModelConfig, structure: dict) -> "TreeVAE":
        """A model with the networks of ``structure`` (fresh weights: load a state dict into it)."""
        model = cls(cfg)
        kids = {int(n): list(k) for n, k in structure["kids"].items()}
        model.parent = {int(n): int(p) for n, p in structure["parent"].items()}
        model.split_step = {int(n): int(s) for n, s in structure["split_step"].items()}
        model.next_id = int(structure["next_id"])
        for node in sorted(kids):  # ids grow with creation: parents come first
            model.depth[node] = 0 if node not in model.parent else model.depth[model.parent[node]] + 1
            module = make_node(cfg, model.depth[node])
            if node in model.split_step:
                module.router, module.router_q = make_routers(cfg, model.depth[node])
            elif not kids[node]:
                module.decoder = make_decoder(cfg, cfg.latent[cfg.levels - 1 - model.depth[node]])
            model.nodes[str(node)] = module
        model.kids = kids
        return model

    def bfs(self) -> list[int]:
        order, queue = [], [0]
        while queue:
            node = queue.pop(0)
            order.append(node)
            queue.extend(self.kids[node])
        return order

    def leaves_bfs(self) -> list[int]:
        return [n for n in self.bfs() if not self.kids[n]]

    def leaves_dfs(self) -> list[int]:
        out, stack = [], [0]
        while stack:
            node = stack.pop()
            if not self.kids[node]:
                out.append(node)
            stack.extend(reversed(self.kids[node]))
        return out

    def attach(self, leaf: int, small: SmallTree, step: int) -> tuple[int, int]:
        """Make ``leaf`` an internal node with the trained subtree's routers and children; returns their ids."""
        node = self.nodes[str(leaf)]
        node.router, node.router_q, node.decoder = small.router, small.router_q, None
        self.split_step[leaf] = step
        return tuple(self._add_node(leaf, kid) for kid in small.kids)

    def prune_leaf(self, leaf: int) -> list[int]:
        """Remove ``leaf``; a parent left without children is removed too (never the root). Returns the removed
        ids. A parent keeping one child is no longer a split: it loses its routers and passes its probability
        through."""
        removed, node = [], leaf
        while not self.kids[node] and node != 0:
            parent = self.parent.pop(node)
            self.kids[parent].remove(node)
            del self.kids[node], self.depth[node], self.nodes[str(node)]
            self.split_step.pop(node, None)
            removed.append(node)
            self.nodes[str(parent)].router = self.nodes[str(parent)].router_q = None
            self.split_step.pop(parent, None)
            node = parent
        return removed

    # -- computation ------------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The deterministic bottom-up features, level 0 (encoder) to L−1."""
        feats = [self.bottom_up[0](x)]
        for layer in self.bottom_up[1:]:
            feats.append(layer(feats[-1])[0])
        return feats

    def _latent(self, node: TreeNode, feat: torch.Tensor, z_parent: torch.Tensor | None):
        """(posterior mean, posterior variance, prior mean, prior variance) of a node."""
        mu_hat, var_hat = node.dense(feat)
        if z_parent is None:
            return mu_hat, var_hat, torch.zeros_like(mu_hat), torch.ones_like(var_hat)
        _, mu_p, var_p = node.transform(z_parent)
        return (*losses.posterior(mu_hat, var_hat, mu_p, var_p), mu_p, var_p)

    def terms(self, x: torch.Tensor, gen: torch.Generator, contrastive: bool) -> dict[str, torch.Tensor]:
        """The loss terms of the whole tree on a batch (rows 0..B−1 and B..2B−1 = two views when contrastive)."""
        feats = self.features(x)
        n, last = x.shape[0], self.cfg.levels - 1
        kl_root = kl_nodes = kl_decisions = x.new_zeros(n)
        aug = x.new_zeros(())
        recons, leaf_probs = [], []
        queue = [(0, x.new_ones(n), None)]
        while queue:
            node_id, prob, z_parent = queue.pop(0)
            node, feat = self.nodes[str(node_id)], feats[last - self.depth[node_id]]
            mu_q, var_q, mu_p, var_p = self._latent(node, feat, z_parent)
            z = sample(mu_q, var_q, gen)
            kl = (prob * losses.kl_gaussian(mu_q, var_q, mu_p, var_p)).clamp(-1, 1000)
            if z_parent is None:
                kl_root = kl
            else:
                kl_nodes = kl_nodes + kl
            kids = self.kids[node_id]
            if node.router is not None:
                p_left, q_left = node.router(z), node.router_q(feat)
                kl_decisions = kl_decisions + prob * losses.kl_decision(q_left, p_left)
                if contrastive and "InfoNCE" in self.cfg.methods:
                    aug = aug + losses.info_nce_router(q_left, prob)
                if contrastive and z_parent is None and self.contrastive is not None:
                    aug = aug + losses.info_nce_embeddings([proj(f)[1] for proj, f in zip(self.contrastive, feats)])
                queue += [(kids[0], prob * q_left, z), (kids[1], prob * (1 - q_left), z)]
            elif node.decoder is not None:
                leaf_probs.append(prob)
                recons.append(node.decoder(z))
            else:
                queue.append((kids[0], prob, z))
        rec = losses.reconstruction(x, recons, leaf_probs, self.cfg.activation).mean()
        return {
            "rec": rec,
            "kl_root": kl_root.mean(),
            "kl_decisions": kl_decisions.mean(),
            "kl_nodes": kl_nodes.mean().clamp(-10, 1e10),
            "aug": aug,
        }

    def path_to(self, leaf: int) -> list[int]:
        path = [leaf]
        while path[-1] != 0:
            path.append(self.parent[path[-1]])
        return path[::-1]

    def leaf_sample(
        self, x: torch.Tensor, leaf: int, gen: torch.Generator
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(bottom-up features, a sample of the leaf's latent, P(leaf | x)) down the root-to-leaf path."""
        feats = self.features(x)
        last, z, prob = self.cfg.levels - 1, None, x.new_ones(x.shape[0])
        path = self.path_to(leaf)
        for node_id, child in zip(path, path[1:] + [None]):
            node, feat = self.nodes[str(node_id)], feats[last - self.depth[node_id]]
            mu_q, var_q, _, _ = self._latent(node, feat, z)
            z = sample(mu_q, var_q, gen)
            if child is not None and node.router_q is not None:
                q_left = node.router_q(feat)
                prob = prob * (q_left if child == self.kids[node_id][0] else 1 - q_left)
        return feats, z, prob

    def leaf_probs(self, x: torch.Tensor, leaves: list[int]) -> torch.Tensor:
        """(n, len(leaves)) P(leaf | x) from the inference routers (deterministic; call in eval mode)."""
        feats = self.features(x)
        last = self.cfg.levels - 1
        probs = {0: x.new_ones(x.shape[0])}
        for node_id in self.bfs():
            kids, node = self.kids[node_id], self.nodes[str(node_id)]
            if node.router_q is not None:
                q_left = node.router_q(feats[last - self.depth[node_id]])
                probs[kids[0]], probs[kids[1]] = probs[node_id] * q_left, probs[node_id] * (1 - q_left)
            elif kids:
                probs[kids[0]] = probs[node_id]
        return torch.stack([probs[leaf] for leaf in leaves], 1)
