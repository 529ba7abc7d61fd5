"""The official CIFAR augmentation of TreeVAE's contrastive views, on batches of tensors on the device.

Per image, as the official torchvision pipeline (``utils/data_utils.py``, ``aug_strength`` s = 0.5):
RandomResizedCrop(scale 0.2–1, ratio 3/4–4/3, bicubic), horizontal flip (p = 0.5), ColorJitter(0.8·s, 0.8·s,
0.8·s, 0.2·s) in random order with p = 0.8, grayscale with p = 0.2. All draws come from one generator, so a
seed fixes the views. Differences: the crop is resampled with ``grid_sample``'s bicubic kernel (a = −0.75;
PIL's is a = −0.5) and clamped to [0, 1]; images with one channel skip saturation, hue and grayscale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GREY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


def _uniform(shape, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, device=device)


def crop_boxes(
    n: int,
    height: int,
    width: int,
    gen: torch.Generator,
    device,
    scale=(0.2, 1.0),
    ratio=(3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """(n, 4) float boxes (top, left, h, w) as RandomResizedCrop draws them: up to ``attempts`` tries of a random
    area and log-uniform aspect ratio; when none fits, the central crop with the ratio clamped to ``ratio``."""
    area = _uniform((n, attempts), scale[0], scale[1], gen, device) * (height * width)
    aspect = torch.exp(_uniform((n, attempts), math.log(ratio[0]), math.log(ratio[1]), gen, device))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    top = torch.floor(torch.rand(n, generator=gen, device=device) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=gen, device=device) * (width - w + 1))
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], 1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each image's box resampled (bicubic) to the full image size, mirrored where ``flip``."""
    n, _, height, width = x.shape
    top, left, h, w = boxes.unbind(1)
    sx = w / width * torch.where(flip, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, (2 * left + w) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = h / height, (2 * top + h) / height - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp(0, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) luma of RGB images (a grey image is returned as is)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    same = maxc == minc
    chroma = maxc - minc
    s = chroma / torch.where(same, torch.ones_like(maxc), maxc)
    div = torch.where(same, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    return torch.stack([torch.remainder(hue / 6.0, 1.0), s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.long() % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for i, channels in enumerate(table):
        mask = (sector == i).unsqueeze(1)
        out = torch.where(mask, torch.stack(channels, 1), out)
    return out


def _adjust(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    if op == 0:  # brightness
        return _blend(x, torch.zeros_like(x), factor)
    if op == 1:  # contrast
        return _blend(x, grayscale(x).mean((1, 2, 3), keepdim=True), factor)
    if x.shape[1] == 1:
        return x
    if op == 2:  # saturation
        return _blend(x, grayscale(x), factor)
    hsv = rgb_to_hsv(x)  # hue
    hsv = torch.stack([torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1), 1.0), hsv[:, 1], hsv[:, 2]], 1)
    return hsv_to_rgb(hsv)


def color_jitter(x: torch.Tensor, strength: float, gen: torch.Generator, p: float = 0.8) -> torch.Tensor:
    """ColorJitter(brightness, contrast, saturation = 0.8·strength, hue = 0.2·strength), each image's four
    adjustments in its own random order, applied to each image with probability ``p``."""
    n, device = x.shape[0], x.device
    apply = torch.rand(n, generator=gen, device=device) < p
    bcs, hue = 0.8 * strength, 0.2 * strength
    factors = torch.stack(
        [_uniform(n, max(0.0, 1 - bcs), 1 + bcs, gen, device) for _ in range(3)]
        + [_uniform(n, -hue, hue, gen, device)],
        1,
    )
    order = torch.argsort(torch.rand(n, 4, generator=gen, device=device), 1)
    out = x.clone()
    for slot in range(4):
        for op in range(4):
            rows = torch.nonzero(apply & (order[:, slot] == op)).squeeze(1)
            if rows.numel():
                out[rows] = _adjust(out[rows], op, factors[rows, op])
    return out


def augment(x: torch.Tensor, gen: torch.Generator, strength: float = 0.5) -> torch.Tensor:
    """One random view of each image of ``x`` (n, C, H, W) in [0, 1] (see the module docstring)."""
    n, _, height, width = x.shape
    boxes = crop_boxes(n, height, width, gen, x.device)
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    out = color_jitter(resized_crop(x, boxes, flip), strength, gen)
    if x.shape[1] == 3:
        grey = torch.rand(n, generator=gen, device=x.device) < 0.2
        out = torch.where(grey.view(-1, 1, 1, 1), grayscale(out).expand_as(out), out)
    return out
