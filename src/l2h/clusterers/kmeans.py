"""k-means (scikit-learn) with logits = −squared distance to each centroid / temperature.

Several representation spaces are concatenated (each one L2-normalised first when ``normalize`` is on, so
every space weighs the same). ``temperature="auto"`` sets T to the mean squared distance of the train
points to their nearest centroid (inertia / N): the logits are then unchanged by any rescaling of the
features, and a point at the typical distance from its centroid has logit −1 there.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from l2h.clusterers.base import Clusterer, l2_normalize


class KMeansClusterer(Clusterer):
    name = "kmeans"

    def __init__(
        self,
        *,
        k: int,
        seed: int = 0,
        n_init: int = 10,
        max_iter: int = 300,
        tol: float = 1e-4,
        normalize: bool = True,
        temperature: float | str = "auto",
        block_rows: int = 65536,
    ):
        super().__init__(
            k=k,
            seed=seed,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            normalize=normalize,
            temperature=temperature,
            block_rows=block_rows,
        )
        self.n_init, self.max_iter, self.tol = int(n_init), int(max_iter), float(tol)
        self.normalize, self.temperature, self.block_rows = bool(normalize), temperature, int(block_rows)
        self.centroids_: np.ndarray | None = None
        self.temperature_: float | None = None

    def _params(self) -> dict[str, Any]:
        return {
            "n_init": self.n_init,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "normalize": self.normalize,
            "temperature": self.temperature,
            "block_rows": self.block_rows,
        }

    def _features(self, spaces: list[np.ndarray]) -> np.ndarray:
        if self.normalize:
            spaces = [l2_normalize(x) for x in spaces]
        return spaces[0] if len(spaces) == 1 else np.concatenate(spaces, axis=1)

    def _fit(self, spaces: list[np.ndarray]) -> dict[str, Any]:
        from sklearn.cluster import KMeans

        x = self._features(spaces)
        start = time.perf_counter()
        km = KMeans(
            n_clusters=self.k, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol, random_state=self.seed
        ).fit(x)
        self.run_info_ = {"fit_time_s": time.perf_counter() - start}
        self.centroids_ = km.cluster_centers_.astype(np.float64)
        inertia = float(km.inertia_)
        if self.temperature == "auto":
            # all points on their centroids: any positive T gives the same (degenerate) argmax
            self.temperature_ = inertia / x.shape[0] if inertia > 0 else 1.0
        else:
            self.temperature_ = float(self.temperature)
        return {"inertia": inertia, "n_iter": int(km.n_iter_), "temperature": self.temperature_}

    def _logits(self, spaces: list[np.ndarray]) -> np.ndarray:
        x = self._features(spaces)
        c = self.centroids_
        c_sq = (c * c).sum(axis=1)
        out = np.empty((x.shape[0], self.k), dtype=np.float32)
        for lo in range(0, x.shape[0], self.block_rows):
            xb = x[lo : lo + self.block_rows].astype(np.float64)
            d2 = (xb * xb).sum(axis=1, keepdims=True) - 2.0 * xb @ c.T + c_sq
            out[lo : lo + self.block_rows] = -np.maximum(d2, 0.0) / self.temperature_
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids_, "temperature": np.float64(self.temperature_)}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids_ = arrays["centroids"].astype(np.float64)
        self.temperature_ = float(arrays["temperature"])
