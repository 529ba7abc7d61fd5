"""Flat clusterers that turn feature spaces into the N×K logits L2H reads: k-means, TURTLE, TEMI.

``build_clusterer(cfg)`` takes the Hydra ``clusterer`` group node (or a plain mapping): its ``kind`` picks the
class (the target of its schema, ``l2h/schemas/clusterer/<kind>.yaml``, imported on first use, so importing
this package loads neither torch nor scikit-learn), every other key but ``name`` is a constructor parameter
(``k`` and ``seed`` included).
"""

from __future__ import annotations

from typing import Any

from l2h.clusterers.base import Clusterer
from l2h.errors import InputError
from l2h.schema import implementation, options

_CLASSES = {"KMeansClusterer": "kmeans", "TurtleClusterer": "turtle", "TemiClusterer": "temi"}


def build_clusterer(cfg: Any) -> Clusterer:
    """A new (unfitted) clusterer from the ``clusterer`` config node."""
    params = options("clusterer", cfg)
    params.pop("name", None)
    kind = params.pop("kind", None)
    if kind is None:
        raise InputError("clusterer config: no 'kind' (the clusterer to build, e.g. kmeans)")
    cls = implementation("clusterer", kind)
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"clusterer config for {kind!r}: {exc}") from exc


def load_clusterer(path) -> Clusterer:
    """Read any model written by ``Clusterer.save``."""
    return Clusterer.load(path)


def __getattr__(name: str) -> Any:  # the classes, imported when first asked for
    if name in _CLASSES:
        return implementation("clusterer", _CLASSES[name])
    raise AttributeError(f"module 'l2h.clusterers' has no attribute {name!r}")


__all__ = ["Clusterer", "KMeansClusterer", "TemiClusterer", "TurtleClusterer", "build_clusterer", "load_clusterer"]
