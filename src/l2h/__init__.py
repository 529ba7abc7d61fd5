"""l2h: hierarchies over the clusters of any flat clusterer, from its logits alone."""

__version__ = "0.1.0"
