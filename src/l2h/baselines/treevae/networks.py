"""TreeVAE's building blocks (architectures of the official lauramanduchi/treevae ``models/networks.py``).

Activations are leaky ReLUs with slope 0.3. Variances (not standard deviations) come out of softplus heads.
Images are N×C×H×W tensors; an MLP encoder/decoder flattens them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.3


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=SLOPE)


def _dense_bn(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out))


class MLPEncoder(nn.Module):
    """Flat image → ``out`` features: widths 4·out, 4·out, 2·out, out (bias-free linear, BatchNorm, activation)."""

    def __init__(self, n_in: int, out: int):
        super().__init__()
        widths = [n_in, 4 * out, 4 * out, 2 * out, out]
        self.layers = nn.ModuleList(_dense_bn(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers:
            x = act(layer(x))
        return x


class MLPDecoder(nn.Module):
    """Latent → image: hidden widths 128, 256, 512, 512, then a linear output (sigmoid for binary data)."""

    def __init__(self, n_in: int, shape: tuple[int, int, int], sigmoid: bool):
        super().__init__()
        widths = [n_in, 128, 256, 512, 512]
        self.layers = nn.ModuleList(_dense_bn(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(512, math.prod(shape))
        self.shape, self.sigmoid = shape, sigmoid

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = act(layer(z))
        x = self.out(z).view(-1, *self.shape)
        return torch.sigmoid(x) if self.sigmoid else x


class ResBlock(nn.Module):
    """Pre-activation residual block: shortcut (1×1 conv when the width changes) + 0.1 · two 3×3 convs."""

    def __init__(self, fin: int, fout: int):
        super().__init__()
        hidden = min(fin, fout)
        self.bn0, self.bn1 = nn.BatchNorm2d(fin), nn.BatchNorm2d(hidden)
        self.conv0 = nn.Conv2d(fin, hidden, 3, padding=1)
        self.conv1 = nn.Conv2d(hidden, fout, 3, padding=1)
        self.shortcut = nn.Conv2d(fin, fout, 1, bias=False) if fin != fout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.conv1(act(self.bn1(self.conv0(act(self.bn0(x))))))
        return (x if self.shortcut is None else self.shortcut(x)) + 0.1 * dx


def resnet_levels(size: int, s0: int = 4) -> int:
    """Number of ×2 resolution changes between ``size`` and ``s0`` (size/s0 must be a power of two)."""
    levels = round(math.log2(size / s0)) if size >= s0 else -1
    if levels < 0 or s0 * 2**levels != size:
        raise ValueError(f"image size {size} is not {s0}·2^n")
    return levels


def resnet_out_dim(size: int, nf: int = 32, nf_max: int = 256, s0: int = 4) -> int:
    """Feature size of :class:`ResNetEncoder` (4,096 for 32×32 images)."""
    return min(nf_max, nf * 2 ** resnet_levels(size, s0)) * s0 * s0


class ResNetEncoder(nn.Module):
    """The official ``cnn2`` encoder: 3×3 conv to ``nf`` maps, a residual block, then per level an average
    pool (3×3, stride 2) and a block doubling the width (capped at ``nf_max``), down to ``s0``×``s0``."""

    def __init__(self, channels: int, size: int, nf: int = 32, nf_max: int = 256, s0: int = 4):
        super().__init__()
        levels = resnet_levels(size, s0)
        blocks: list[nn.Module] = [ResBlock(nf, nf)]
        for i in range(levels):
            blocks += [
                nn.AvgPool2d(3, stride=2, padding=1),
                ResBlock(min(nf * 2**i, nf_max), min(nf * 2 ** (i + 1), nf_max)),
            ]
        self.conv_img = nn.Conv2d(channels, nf, 3, padding=1)
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(min(nf_max, nf * 2**levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return act(self.bn(self.blocks(self.conv_img(x)))).flatten(1)


class ResNetDecoder(nn.Module):
    """The official ``cnn2`` decoder: linear to ``s0``×``s0`` maps, per level a residual block halving the
    width and a bilinear ×2 upsampling, a last block, then BatchNorm, activation and a 3×3 transposed conv."""

    def __init__(
        self, n_in: int, channels: int, size: int, sigmoid: bool, nf: int = 32, nf_max: int = 256, s0: int = 4
    ):
        super().__init__()
        levels = resnet_levels(size, s0)
        self.nf0, self.s0, self.sigmoid = min(nf_max, nf * 2**levels), s0, sigmoid
        self.fc = nn.Linear(n_in, self.nf0 * s0 * s0)
        blocks: list[nn.Module] = []
        for i in range(levels):
            blocks += [
                ResBlock(min(nf * 2 ** (levels - i), nf_max), min(nf * 2 ** (levels - i - 1), nf_max)),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            ]
        blocks.append(ResBlock(nf, nf))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(nf)
        self.conv_img = nn.ConvTranspose2d(nf, channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.fc(z).view(-1, self.nf0, self.s0, self.s0))
        x = self.conv_img(act(self.bn(x)))
        return torch.sigmoid(x) if self.sigmoid else x


class GaussianMLP(nn.Module):
    """One hidden layer (bias-free linear, BatchNorm, activation) → (hidden, mean, variance). The top-down
    transformation of a node, a bottom-up step and a contrastive projection are all of this kind."""

    def __init__(self, n_in: int, n_out: int, hidden: int):
        super().__init__()
        self.hidden = _dense_bn(n_in, hidden)
        self.mu, self.var = nn.Linear(hidden, n_out), nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = act(self.hidden(x))
        return h, self.mu(h), F.softplus(self.var(h))


class GaussianDense(nn.Module):
    """Linear heads → (mean, variance): a node's bottom-up estimate from the deterministic feature ``d``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.mu, self.var = nn.Linear(n_in, n_out), nn.Linear(n_in, n_out)

    def forward(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu(d), F.softplus(self.var(d))


class Router(nn.Module):
    """Two hidden layers (bias-free linear, BatchNorm, activation) and a sigmoid unit: P(go left)."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(
            _dense_bn(n_in, hidden),
            nn.LeakyReLU(SLOPE),
            _dense_bn(hidden, hidden),
            nn.LeakyReLU(SLOPE),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layers(x)).squeeze(-1)
