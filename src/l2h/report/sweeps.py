"""Which sweep plots an experiment gets, decided from its runs alone (no configuration), and their file names.

Light on purpose: the workflow's plan imports it to declare the report's outputs.

- ``k``: some setting (method, dataset, backbone, aggregation, strategy) is run at several K;
- ``aggregation`` / ``strategy``: some L2H setting is run with several aggregation functions / strategies;
- ``levels``: a dataset has coarse labels, so every run is also scored at a coarser level (``coarse_*``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

PLOTS = {"k": "sweep_k", "aggregation": "sweep_aggregation", "strategy": "sweep_strategy", "levels": "levels"}
FORMATS = ("png", "svg")
#: Dataset config keys that give a dataset coarse labels (CIFAR-100 superclasses, CIFAR-10's two groups,
#: iNaturalist ranks, ImageNet's WordNet ancestors): any of them set means the runs carry ``coarse_*``.
COARSE_KEYS = ("coarse_label_key", "coarse_groups", "coarse_level", "coarse_depth")


def _varies(runs: Iterable[Mapping[str, Any]], column: str, keys: tuple[str, ...]) -> bool:
    values: dict[tuple, set] = defaultdict(set)
    for run in runs:
        values[tuple(run.get(k) for k in keys)].add(run.get(column))
    return any(len(v) > 1 for v in values.values())


def sweep_kinds(runs: Iterable[Mapping[str, Any]], *, levels: bool = False) -> list[str]:
    """The plots (keys of :data:`PLOTS`) that ``runs`` call for.

    ``runs`` are mappings with kind, dataset, backbone, method, k, aggregation and strategy (seeds are
    averaged in every plot, so they never make a sweep); ``levels``: whether a dataset has coarse labels.

    Examples
    --------
    >>> runs = [{"kind": "l2h", "dataset": "d", "backbone": "b", "method": "kmeans", "k": k, "seed": 0,
    ...          "aggregation": "sum_all", "strategy": "lowest_score"} for k in (5, 10)]
    >>> sweep_kinds(runs)
    ['k']
    """
    runs = list(runs)
    l2h = [r for r in runs if r.get("kind") == "l2h"]
    out = []
    if _varies(runs, "k", ("kind", "dataset", "backbone", "method", "aggregation", "strategy")):
        out.append("k")
    if _varies(l2h, "aggregation", ("dataset", "backbone", "method", "k", "strategy")):
        out.append("aggregation")
    if _varies(l2h, "strategy", ("dataset", "backbone", "method", "k", "aggregation")):
        out.append("strategy")
    if levels:
        out.append("levels")
    return out


def has_levels(dataset_cfg: Mapping[str, Any]) -> bool:
    """Whether a dataset config gives coarse labels (see :data:`COARSE_KEYS`)."""
    return any(dataset_cfg.get(key) not in (None, "", {}, []) for key in COARSE_KEYS)


def plot_files(kind: str) -> list[str]:
    """The file names of plot ``kind`` (one per format)."""
    return [f"{PLOTS[kind]}.{fmt}" for fmt in FORMATS]
