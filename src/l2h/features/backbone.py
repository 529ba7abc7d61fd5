"""The Backbone object every feature extractor returns, and the config plumbing they share."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2h.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: `import l2h.features` stays fast
    import torch
    from torch import nn

#: Config keys that change how features are computed but not their values (excluded from the digest).
RUNTIME_KEYS = ("batch_size", "num_workers", "weights_dir")


@dataclass
class Backbone:
    """A frozen image encoder: ``transform`` turns one PIL image into a tensor, ``encode`` a batch into features.

    ``module`` maps a batch (B, ...) to features (B, dim); it is always in eval mode. ``info`` holds the
    descriptive part of :meth:`meta` (model, pretrained tag, image size, ...).
    """

    name: str
    module: nn.Module
    transform: Callable[[Any], torch.Tensor]
    dim: int | None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.module.eval()
        self.module.requires_grad_(False)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch)

    def to(self, device: str | torch.device) -> "Backbone":
        self.module.to(device)
        return self

    def meta(self) -> dict:
        """Model, pretrained tag, transform description, image size and feature dimension."""
        return {"backbone": self.name, **self.info, "transform": describe_transform(self.transform), "dim": self.dim}


def describe_transform(transform: Callable) -> str:
    """A one-line, deterministic description of a preprocessing pipeline (its repr, whitespace collapsed)."""
    return " ".join(repr(transform).split())


def config_dict(cfg: Mapping | Any) -> dict:
    """A plain dict from a Hydra/OmegaConf node or a mapping (interpolations resolved)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise InputError(f"backbone config: expected a mapping, got {type(cfg).__name__}")


def config_digest(cfg: Mapping | Any) -> str:
    """SHA-256 of the config keys that determine the feature values (runtime keys excluded)."""
    relevant = {k: v for k, v in sorted(config_dict(cfg).items()) if k not in RUNTIME_KEYS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def require(cfg: Mapping, key: str, kind: str) -> Any:
    if cfg.get(key) is None:
        raise InputError(f"backbone config '{cfg.get('name', '?')}' ({kind}): missing key '{key}'")
    return cfg[key]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch CPU seed without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def weights_dir(cfg: Mapping, override: str | os.PathLike | None = None) -> Path:
    """The one directory holding downloaded weights: ``override``, else ``cfg.weights_dir``, else
    ``$L2H_WEIGHTS_DIR``, else ``~/.cache/l2h/weights``."""
    chosen = override or cfg.get("weights_dir") or os.environ.get("L2H_WEIGHTS_DIR")
    path = Path(chosen) if chosen else Path.home() / ".cache" / "l2h" / "weights"
    return path.expanduser()
