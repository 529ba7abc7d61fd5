"""Frozen image backbones, batched feature extraction and the on-disk feature cache."""

from l2h.features.backbone import Backbone, config_digest
from l2h.features.cache import CachedFeatures, extract_to_cache, images_identity
from l2h.features.extract import extract_features
from l2h.features.registry import build_backbone, prefetch

__all__ = [
    "Backbone",
    "CachedFeatures",
    "build_backbone",
    "config_digest",
    "extract_features",
    "extract_to_cache",
    "images_identity",
    "prefetch",
]
