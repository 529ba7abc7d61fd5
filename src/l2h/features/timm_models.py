"""Any timm image model (`kind: timm`), e.g. DINOv2 ViT-g/14 (``vit_giant_patch14_dinov2.lvd142m``).

Weights come from the Hugging Face hub through timm (no GitHub / torch.hub at run time). Features = the
model's pooled pre-logits output (``num_classes=0``; for DINOv2 the normalised CLS token). The transform is
timm's evaluation transform from the model's pretrained config, with ``image_size``, ``crop_pct``,
``interpolation``, ``mean`` and ``std`` overridable from the config (DINOv2 as in TURTLE: Resize 256 bicubic,
CentreCrop 224, ImageNet mean/std). ``pretrained: null`` builds random weights (no download).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from l2h.errors import InputError
from l2h.features.backbone import Backbone, require, seeded, weights_dir

_OVERRIDES = ("crop_pct", "interpolation", "mean", "std")


def _full_name(cfg: Mapping) -> str:
    model = require(cfg, "model", "timm")
    return model if cfg.get("pretrained") is None else f"{model}.{cfg['pretrained']}"


def _transform(model, cfg: Mapping):
    import timm.data

    data_cfg = timm.data.resolve_data_config(model=model)
    if cfg.get("image_size") is not None:
        data_cfg["input_size"] = (3, int(cfg["image_size"]), int(cfg["image_size"]))
    data_cfg.update(
        {k: (tuple(cfg[k]) if k in ("mean", "std") else cfg[k]) for k in _OVERRIDES if cfg.get(k) is not None}
    )
    return timm.data.create_transform(**data_cfg, is_training=False), data_cfg


def build(cfg: Mapping, device: str = "cpu") -> Backbone:
    import timm
    import timm.models

    name = _full_name(cfg)
    kwargs = {"num_classes": 0}
    pcfg = timm.models.get_pretrained_cfg(name)
    if cfg.get("image_size") is not None and pcfg is not None and pcfg.fixed_input_size:
        kwargs["img_size"] = int(cfg["image_size"])  # e.g. ViT position embeddings (resampled from the weights)
    try:
        with seeded(int(cfg.get("seed", 0))):
            model = timm.create_model(
                name,
                pretrained=cfg.get("pretrained") is not None,
                cache_dir=str(weights_dir(cfg)),
                device=device,
                **kwargs,
            )
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
            raise InputError(f"backbone '{cfg.get('name')}': {exc}") from exc
        raise
    transform, data_cfg = _transform(model, cfg)
    return Backbone(
        name=cfg.get("name", name),
        module=model,
        transform=transform,
        dim=int(model.num_features),
        info={
            "kind": "timm",
            "model": cfg["model"],
            "pretrained": cfg.get("pretrained"),
            "image_size": data_cfg["input_size"][-1],
        },
    )


def prefetch(cfg: Mapping, directory: Path) -> list[str]:
    """Download the weights file timm will load for ``model.pretrained`` into ``directory``."""
    import timm.models
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    if cfg.get("pretrained") is None:
        return []
    pcfg = timm.models.get_pretrained_cfg(_full_name(cfg))
    if pcfg is None:
        raise InputError(f"backbone '{cfg.get('name')}': timm has no pretrained weights {_full_name(cfg)!r}")
    if pcfg.hf_hub_id:
        repo, _, revision = pcfg.hf_hub_id.partition("@")
        filename = pcfg.hf_hub_filename or "pytorch_model.bin"
        # timm prefers a safetensors file when the hub repo has one
        candidates = ["model.safetensors", filename] if filename == "pytorch_model.bin" else [filename]
        for i, fname in enumerate(candidates):
            try:
                return [hf_hub_download(repo, fname, revision=revision or None, cache_dir=str(directory))]
            except EntryNotFoundError:
                if i == len(candidates) - 1:
                    raise
    if pcfg.url:  # timm reads these through torch.hub.load_state_dict_from_url(model_dir=cache_dir)
        import torch.hub

        target = Path(directory) / Path(urlparse(pcfg.url).path).name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(pcfg.url, str(target))
        return [str(target)]
    raise InputError(f"backbone '{cfg.get('name')}': {_full_name(cfg)} has no download location")
