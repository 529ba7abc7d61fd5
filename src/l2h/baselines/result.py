"""The output every baseline returns, and how it is written to disk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l2h.hierarchy import Hierarchy
from l2h.io import write_json, write_npy


@dataclass
class BaselineResult:
    """A baseline's tree and where the evaluated points hang on it.

    hierarchy: tree over ``hierarchy.k`` leaves (points for agglomerative, leaf clusters for DeepECT).
    leaves: int64 (n,), the leaf of each evaluated point. clusters: int64 (n,), the flat partition at K.
    info: JSON-friendly details; ``info["indices"]`` (int64 array or None) are the rows of the input
    features that were evaluated (None = all rows, in order). run_info: how the run went (wall-clock
    timings), logged by the stage and never saved, so that outputs are identical when a job is re-run.
    """

    hierarchy: Hierarchy
    leaves: np.ndarray
    clusters: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: str | os.PathLike) -> None:
        """Write tree.json, linkage.npy, tree.nwk, leaves.npy, clusters.npy, indices.npy (the evaluated
        rows of the input features; 0..n-1 when all were used) and info.json."""
        out_dir = Path(out_dir)
        self.hierarchy.write(out_dir)
        write_npy(out_dir / "leaves.npy", np.asarray(self.leaves, dtype=np.int64))
        write_npy(out_dir / "clusters.npy", np.asarray(self.clusters, dtype=np.int64))
        indices = self.info.get("indices")
        write_npy(
            out_dir / "indices.npy",
            np.arange(len(self.leaves), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64),
        )
        write_json(out_dir / "info.json", {key: value for key, value in self.info.items() if key != "indices"})
