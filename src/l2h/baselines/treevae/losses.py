"""The terms of TreeVAE's loss (ELBO terms and the contrastive regularisers), on batches of tensors.

Distributions are diagonal Gaussians given by mean and *variance*; ``EPS`` (1e-7, the official constant)
is added to variances and inside the decision KL's logarithms, as in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-7


def posterior(
    mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor, var_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted combination of the bottom-up estimate (mu_q, var_q) and the top-down prior (mu_p, var_p).

    Examples
    --------
    >>> import torch
    >>> posterior(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.0]))[0]
    tensor([1.0000])
    """
    prec_q, prec_p = 1 / (var_q + EPS), 1 / (var_p + EPS)
    var = 1 / (prec_q + prec_p)
    return (mu_q * prec_q + mu_p * prec_p) * var, var


def kl_gaussian(mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor, var_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, var_q + EPS) ‖ N(mu_p, var_p + EPS)) summed over the last axis (one value per row)."""
    vq, vp = var_q + EPS, var_p + EPS
    return 0.5 * (torch.log(vp) - torch.log(vq) + (vq + (mu_q - mu_p) ** 2) / vp - 1).sum(-1)


def kl_decision(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(q) ‖ Bernoulli(p)) per row, q = inference router, p = generative router (official
    smoothing: q·log(EPS + q/(p+EPS)) + (1−q)·log(EPS + (1−q)/(1−p+EPS)))."""
    return q * torch.log(EPS + q / (p + EPS)) + (1 - q) * torch.log(EPS + (1 - q) / (1 - p + EPS))


def reconstruction(
    x: torch.Tensor, recons: list[torch.Tensor], leaf_probs: list[torch.Tensor], activation: str
) -> torch.Tensor:
    """Σ_leaves P(leaf | x) · loss(x, x̂_leaf) per row; the loss is the summed squared error (``mse``) or the
    summed binary cross-entropy of a sigmoid output (``sigmoid``)."""
    x = x.flatten(1)
    total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for rec, prob in zip(recons, leaf_probs):
        rec = rec.flatten(1)
        if activation == "mse":
            err = (rec - x) ** 2
        else:
            err = F.binary_cross_entropy(rec, x, reduction="none")
        total = total + prob * err.sum(-1)
    return total


def _info_nce(v: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row InfoNCE of 2B L2-normalised rows where row i and row i ± B are the two views of one image."""
    half = v.shape[0] // 2
    sim = torch.exp(v @ v.T / temperature)
    positive = torch.exp((v[:half] * v[half:]).sum(-1) / temperature).repeat(2)
    return -torch.log(positive / (sim.sum(1) - sim.diagonal()))


def info_nce_router(q: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Contrastive loss on a router's decisions: the 2B inference-router outputs (two views, first half = view 1)
    as normalised vectors (q, 1 − q), InfoNCE at temperature 1, averaged with the (detached) probability of
    reaching the node as weight.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([0.9, 0.1, 0.9, 0.1])      # two images, two views each, perfectly consistent
    >>> round(float(info_nce_router(q, torch.ones(4))), 4)
    0.6504
    """
    v = F.normalize(torch.stack([q, 1 - q], 1), dim=1)
    weight = weight.detach()
    return (weight * _info_nce(v, 1.0)).sum() / weight.sum()


def info_nce_embeddings(embeddings: list[torch.Tensor], temperature: float = 0.5) -> torch.Tensor:
    """Instance-wise contrastive loss on the per-depth projections of the bottom-up features: InfoNCE at
    temperature 0.5 on each (2B × dim) projection, averaged over rows and over the projections."""
    total = embeddings[0].new_zeros(())
    for emb in embeddings:
        total = total + _info_nce(F.normalize(emb, dim=1), temperature).mean() / len(embeddings)
    return total
