"""Any open_clip image tower (`kind: open_clip`), e.g. OpenAI CLIP ViT-L/14 for the paper's TURTLE runs.

The model's own evaluation transform is used (for OpenAI CLIP: bicubic resize to 224 on the short side,
centre crop 224, RGB, CLIP mean/std). Features = ``encode_image`` (not L2-normalised). Only the image tower
is kept after loading. ``pretrained: null`` builds random weights (no download).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from l2h.errors import InputError
from l2h.features.backbone import Backbone, require, seeded, weights_dir


def _quick_gelu(cfg: Mapping) -> bool:
    """QuickGELU as the pretrained tag was trained with (OpenAI weights), unless the config says otherwise."""
    import open_clip

    if cfg.get("quick_gelu") is not None:
        return bool(cfg["quick_gelu"])
    if cfg.get("pretrained") is None:
        return False
    return bool(open_clip.get_pretrained_cfg(cfg["model"], cfg["pretrained"]).get("quick_gelu", False))


def build(cfg: Mapping, device: str = "cpu") -> Backbone:
    import open_clip
    import torch

    model_name = require(cfg, "model", "open_clip")
    pretrained = cfg.get("pretrained")
    if model_name not in open_clip.list_models():
        raise InputError(f"backbone '{cfg.get('name')}': unknown open_clip model {model_name!r}")
    if pretrained is not None and not open_clip.get_pretrained_cfg(model_name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise InputError(
            f"backbone '{cfg.get('name')}': open_clip {model_name} has no pretrained tag {pretrained!r} (known: {tags})"
        )
    quick_gelu = _quick_gelu(cfg)
    with seeded(int(cfg.get("seed", 0))), torch.device(device):
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=pretrained,
            force_quick_gelu=quick_gelu,
            force_image_size=cfg.get("image_size"),
            cache_dir=str(weights_dir(cfg)),
            device=device,
        )
    visual = model.visual
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    dim = getattr(visual, "output_dim", None) or model.text_projection.shape[1]
    return Backbone(
        name=cfg.get("name", model_name),
        module=visual,
        transform=preprocess,
        dim=int(dim),
        info={
            "kind": "open_clip",
            "model": model_name,
            "pretrained": pretrained,
            "quick_gelu": quick_gelu,
            "image_size": size,
        },
    )


def prefetch(cfg: Mapping, directory: Path) -> list[str]:
    """Download the checkpoint of ``cfg.pretrained`` into ``directory`` (what ``build`` will read)."""
    import open_clip

    model_name, pretrained = require(cfg, "model", "open_clip"), cfg.get("pretrained")
    if pretrained is None:
        return []
    pcfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not pcfg:
        raise InputError(f"backbone '{cfg.get('name')}': open_clip {model_name} has no pretrained tag {pretrained!r}")
    return [open_clip.download_pretrained(pcfg, cache_dir=str(directory))]
