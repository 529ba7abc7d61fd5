"""The `pixels` backbone: the raw image as a flat float32 vector in [0, 1]."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn

from l2h.errors import InputError
from l2h.features.backbone import Backbone

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class PixelTransform:
    """PIL image → flat float32 tensor in [0, 1] (H×W×C order), optionally resized to ``size``×``size``."""

    def __init__(self, size: int | None = None, mode: str = "RGB", interpolation: str = "bilinear"):
        if mode not in ("RGB", "L"):
            raise InputError(f"pixels backbone: mode must be 'RGB' or 'L', got {mode!r}")
        if interpolation not in _RESAMPLE:
            raise InputError(f"pixels backbone: interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
        self.size, self.mode, self.interpolation = size, mode, interpolation

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.convert(self.mode)
        if self.size is not None and img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), _RESAMPLE[self.interpolation])
        return torch.from_numpy(np.asarray(img, dtype=np.float32).reshape(-1) / np.float32(255.0))

    def __repr__(self) -> str:
        return (f"PixelTransform(size={self.size}, mode={self.mode}, interpolation={self.interpolation}, "
                f"scale=1/255, layout=HWC-flat)")


def build(cfg: Mapping, device: str = "cpu") -> Backbone:
    size = cfg.get("image_size")
    mode = cfg.get("mode", "RGB")
    transform = PixelTransform(size, mode, cfg.get("interpolation", "bilinear"))
    dim = None if size is None else size * size * (3 if mode == "RGB" else 1)
    return Backbone(name=cfg.get("name", "pixels"), module=nn.Flatten(), transform=transform, dim=dim,
                    info={"kind": "pixels", "model": "identity", "pretrained": None, "image_size": size})
