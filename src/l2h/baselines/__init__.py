"""Baseline hierarchical clusterers, written through the same tree and metrics path as L2H.

``run_baseline(cfg, features, k=..., seed=...)`` dispatches on ``cfg.kind`` to the function its schema names
(``l2h/schemas/baseline/<kind>.yaml``, imported on first use):

* ``agglomerative`` (:mod:`l2h.baselines.agglomerative`): Ward or average linkage on the L2-normalised
  backbone features; a point-level tree (leaves = points), flat clusters = the tree cut at K.
* ``deepect`` (:mod:`l2h.baselines.deepect`): ClustPy's DeepECT trained from scratch on pixels; a tree
  over its leaf clusters, flat clusters = its tree cut at K.
* ``treevae`` (:mod:`l2h.baselines.treevae`): TreeVAE trained from scratch on pixels; a tree over its
  leaves, flat clusters = its tree cut at K.

The config node is the Hydra ``baseline`` group (``conf/baseline/<name>.yaml``). Besides the
method's own options it has ``name``, ``kind`` and ``features_backbone`` (which backbone's features the
pipeline must pass in; null = the experiment's backbone), which are read by the pipeline, not here.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from l2h.baselines.result import BaselineResult
from l2h.errors import InputError
from l2h.io import format_run_info
from l2h.schema import implementation
from l2h.schema import options as schema_options

__all__ = ["BaselineResult", "run_baseline"]

_PIPELINE_KEYS = ("name", "kind", "features_backbone")

log = logging.getLogger(__name__)


def run_baseline(cfg: Any, features: np.ndarray, *, k: int, seed: int) -> BaselineResult:
    """Run the baseline configured by ``cfg`` on ``features`` (N × d, the evaluation split).

    ``k``: number of flat clusters (the tree is cut at k); ``seed``: the run's seed (DeepECT's
    initialisation and batch order; the agglomerative subsample when ``subsample_seed`` is null).
    Unknown config keys raise :class:`~l2h.errors.InputError` naming them.
    """
    options = schema_options("baseline", cfg)
    method = options.get("kind")
    if method is None:
        raise InputError(f"baseline config {options.get('name')!r}: no 'kind' (the baseline to run, e.g. deepect)")
    func = implementation("baseline", method)
    params = inspect.signature(func).parameters
    kwargs = {key: value for key, value in options.items() if key not in _PIPELINE_KEYS}
    unknown = sorted(set(kwargs) - set(params) | {key for key in ("features", "k", "seed") if key in kwargs})
    if unknown:
        raise InputError(
            f"baseline config {options.get('name')!r}: unknown option(s) {unknown} for method "
            f"{method!r}; allowed: {sorted(set(params) - {'features', 'k', 'seed'})}"
        )
    result = func(features, k=k, seed=seed, **kwargs)
    result.info.setdefault("baseline", options.get("name", method))
    if result.run_info:
        log.info("%s: %s", result.info["baseline"], format_run_info(result.run_info))
    return result
