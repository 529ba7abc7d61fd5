"""Flat clusterers that turn feature spaces into the N×K logits L2H reads: k-means, TURTLE, TEMI.

``build_clusterer(cfg)`` takes the Hydra ``clusterer`` group node (or a plain mapping): ``name`` picks the
class, every other key is a constructor parameter (``k`` and ``seed`` included).

The clusterer modules are imported on first use (``REGISTRY[name]``, ``build_clusterer``, or an attribute
such as ``l2h.clusterers.TurtleClusterer``): a k-means job never loads torch, and a job that only needs
:func:`~l2h.clusterers.base.l2_normalize` loads neither torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from l2h.clusterers.base import Clusterer
from l2h.errors import InputError

#: clusterer name → (module, class); the module is imported when the class is first asked for.
_CLASSES = {"kmeans": ("l2h.clusterers.kmeans", "KMeansClusterer"),
            "turtle": ("l2h.clusterers.turtle", "TurtleClusterer"),
            "temi": ("l2h.clusterers.temi", "TemiClusterer")}


class _Registry(Mapping):
    """Read-only mapping name → clusterer class that imports a class's module on first access."""

    def __getitem__(self, name: str) -> type[Clusterer]:
        module, cls = _CLASSES[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_CLASSES)

    def __len__(self) -> int:
        return len(_CLASSES)


REGISTRY: Mapping[str, type[Clusterer]] = _Registry()


def build_clusterer(cfg: Any) -> Clusterer:
    """A new (unfitted) clusterer from the ``clusterer`` config node.

    Examples
    --------
    >>> from l2h.clusterers import build_clusterer
    >>> build_clusterer({"name": "kmeans", "k": 3}).k
    3
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise InputError(f"clusterer config: expected a mapping, got {type(cfg).__name__}")
    params = dict(cfg)
    name = params.pop("name", None)
    if name not in REGISTRY:
        raise InputError(f"clusterer config: unknown name {name!r}; choose one of {sorted(REGISTRY)}")
    try:
        return REGISTRY[name](**params)
    except TypeError as exc:
        raise InputError(f"clusterer config for {name!r}: {exc}") from exc


def load_clusterer(path) -> Clusterer:
    """Read any model written by ``Clusterer.save``."""
    return Clusterer.load(path)


def __getattr__(name: str) -> type[Clusterer]:
    for key, (_, cls) in _CLASSES.items():
        if cls == name:
            return REGISTRY[key]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Clusterer", "KMeansClusterer", "REGISTRY", "TemiClusterer", "TurtleClusterer", "build_clusterer",
           "load_clusterer"]
