"""Input checks shared by the baselines."""

from __future__ import annotations

import numpy as np

from l2h.errors import InputError


def check_features(features, *, k: int, name: str = "features", block_rows: int = 65536) -> np.ndarray:
    """``features`` as a 2-D float array with N ≥ 2 finite rows and 2 ≤ k ≤ N (checked in row blocks)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise InputError(f"{name}: expected an N×d array with N ≥ 2 and d ≥ 1, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise InputError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    for start in range(0, x.shape[0], block_rows):
        if not np.all(np.isfinite(x[start : start + block_rows])):
            raise InputError(f"{name}: contains NaN or inf (rows {start}..{start + block_rows - 1})")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= x.shape[0]:
        raise InputError(f"{name}: k must be an integer with 2 ≤ k ≤ N = {x.shape[0]}, got {k!r}")
    return x
