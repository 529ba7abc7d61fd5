"""The `pixels` backbone: the raw image as a flat float32 vector in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from l2h.errors import InputError
from l2h.features.backbone import Backbone

if TYPE_CHECKING:
    import torch

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class PixelTransform:
    """PIL image → float32 (H, W, C) tensor in [0, 1], optionally resized to ``size``×``size``; the backbone
    flattens it (H×W×C order). Kept 3-d so that images of different shapes never stack into one batch."""

    def __init__(self, size: int | None = None, mode: str = "RGB", interpolation: str = "bilinear"):
        if mode not in ("RGB", "L"):
            raise InputError(f"pixels backbone: mode must be 'RGB' or 'L', got {mode!r}")
        if interpolation not in _RESAMPLE:
            raise InputError(
                f"pixels backbone: interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}"
            )
        self.size, self.mode, self.interpolation = size, mode, interpolation

    def __call__(self, img: Image.Image) -> torch.Tensor:
        import torch

        img = img.convert(self.mode)
        if self.size is not None and img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), _RESAMPLE[self.interpolation])
        pixels = np.asarray(img, dtype=np.float32).reshape(img.height, img.width, -1)
        return torch.from_numpy(pixels / np.float32(255.0))

    def __repr__(self) -> str:
        return (
            f"PixelTransform(size={self.size}, mode={self.mode}, interpolation={self.interpolation}, "
            f"scale=1/255, layout=HWC-flat)"
        )


def build(cfg: Mapping, device: str = "cpu") -> Backbone:
    from torch import nn

    size = cfg.get("image_size")
    mode = cfg.get("mode", "RGB")
    transform = PixelTransform(size, mode, cfg.get("interpolation", "bilinear"))
    dim = None if size is None else size * size * (3 if mode == "RGB" else 1)
    return Backbone(
        name=cfg.get("name", "pixels"),
        module=nn.Flatten(),
        transform=transform,
        dim=dim,
        info={"kind": "pixels", "model": "identity", "pretrained": None, "image_size": size},
    )
