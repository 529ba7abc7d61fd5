"""Flat clusterers that turn feature spaces into the N×K logits L2H reads: k-means, TURTLE, TEMI.

``build_clusterer(cfg)`` takes the Hydra ``clusterer`` group node (or a plain mapping): ``name`` picks the
class, every other key is a constructor parameter (``k`` and ``seed`` included).
"""

from __future__ import annotations

from typing import Any

from l2h.clusterers.base import Clusterer
from l2h.clusterers.kmeans import KMeansClusterer
from l2h.clusterers.temi import TemiClusterer
from l2h.clusterers.turtle import TurtleClusterer
from l2h.errors import InputError
from l2h.schema import options

REGISTRY: dict[str, type[Clusterer]] = {cls.name: cls for cls in (KMeansClusterer, TurtleClusterer, TemiClusterer)}


def build_clusterer(cfg: Any) -> Clusterer:
    """A new (unfitted) clusterer from the ``clusterer`` config node."""
    params = options("clusterer", cfg)
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


__all__ = ["Clusterer", "KMeansClusterer", "REGISTRY", "TemiClusterer", "TurtleClusterer", "build_clusterer",
           "load_clusterer"]
