"""Speed and memory of l2h.metrics at ImageNet scale.

Dendrogram purity for N = 1,281,167 points on a K = 1,000 leaf tree with 1,000 classes (target: ≤ 2 s),
plus leaf purity, the flat metrics, and DP on a point-level tree (K = N = 20,000, 100 classes).
Writes benchmarks/results/metrics.json.   Run: .venv/bin/python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
from machine import machine_info as describe_machine  # noqa: E402  (benchmarks/machine.py)
from scipy.cluster.hierarchy import linkage

from l2h.io import write_json
from l2h.metrics import dendrogram_purity, flat_metrics, leaf_purity

RESULT = Path(__file__).resolve().parent / "results" / "metrics.json"
DP_TARGET_S = 2.0


def machine_info() -> dict:
    return describe_machine(("numpy", "scipy"))


def timed(fn, *args, repeats: int) -> dict:
    """Wall times of ``repeats`` calls and the peak of Python-tracked allocations during one call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "best_s": round(min(times), 4),
        "median_s": round(float(np.median(times)), 4),
        "repeats": repeats,
        "peak_alloc_mib": round(peak / 2**20, 1),
        "value": value,
    }


def noisy_copy(labels: np.ndarray, k: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(labels.size) < noise
    return np.where(flip, rng.integers(0, k, labels.size), labels % k)


def main() -> None:
    rng = np.random.default_rng(0)
    n, k, n_classes = 1_281_167, 1000, 1000
    labels = rng.integers(0, n_classes, n)
    leaves = noisy_copy(labels, k, 0.3, rng)
    tree = linkage(rng.normal(size=(k, 16)), method="average")

    n_pts = 20_000
    pt_labels = rng.integers(0, 100, n_pts)
    pt_tree = linkage(rng.normal(size=(n_pts, 2)) + pt_labels[:, None], method="ward")

    results = {
        "dp_imagenet_scale": {
            "n": n,
            "k": k,
            "classes": n_classes,
            **timed(dendrogram_purity, tree, leaves, labels, repeats=5),
        },
        "lp_imagenet_scale": {"n": n, "k": k, **timed(leaf_purity, leaves, labels, repeats=3)},
        "flat_metrics_imagenet_scale": {"n": n, "k": k, **timed(flat_metrics, labels, leaves, repeats=1)},
        "dp_point_level": {
            "n": n_pts,
            "k": n_pts,
            "classes": 100,
            **timed(dendrogram_purity, pt_tree, np.arange(n_pts), pt_labels, repeats=3),
        },
    }
    results["dp_imagenet_scale"]["target_s"] = DP_TARGET_S
    results["dp_imagenet_scale"]["meets_target"] = results["dp_imagenet_scale"]["best_s"] <= DP_TARGET_S
    record = {"benchmark": "metrics", "machine": machine_info(), "results": results}
    write_json(RESULT, record)
    for name, r in results.items():
        print(f"{name}: best {r['best_s']:.3f} s, median {r['median_s']:.3f} s, peak {r['peak_alloc_mib']} MiB")


if __name__ == "__main__":
    main()
