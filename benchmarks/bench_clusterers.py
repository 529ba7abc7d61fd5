"""Speed of the trained clusterers at CIFAR-100 scale (50,000 train points, K=100), on CPU and on CUDA when
available: seconds per TURTLE outer step (two spaces, 768 + 1,536 dims, as CLIP ViT-L/14 + DINOv2 ViT-g/14)
and per TEMI epoch (768 dims, 16 heads, batch 1,024 → 48 iterations), plus the TEMI kNN graph.

Features are random Gaussian (speed does not depend on their values). Writes benchmarks/results/clusterers.json
with the machine's description and its load average (other work on a shared machine slows every number).

    python benchmarks/bench_clusterers.py [--threads 2] [--turtle-steps 3] [--temi-epochs 1] [--temi-points 50000]
                                          [--parts turtle temi]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info as describe_machine  # noqa: E402  (benchmarks/machine.py)

from l2h.clusterers import build_clusterer
from l2h.io import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "clusterers.json"
N, K, TURTLE_DIMS, TEMI_DIM = 50_000, 100, (768, 1536), 768


def machine_info() -> dict:
    return describe_machine(("numpy", "torch", "scikit-learn"))


def bench_turtle(
    device: str,
    steps: int,
    rng: np.random.Generator,
    *,
    n: int = N,
    dims: tuple[int, ...] = TURTLE_DIMS,
    k: int = K,
    warmup_steps: int = 0,
) -> dict:
    """Seconds per TURTLE outer step (the training loop only), after a fit of ``warmup_steps`` steps."""
    spaces = [rng.standard_normal((n, d), dtype=np.float32) for d in dims]
    cfg = {"kind": "turtle", "k": k, "device": device, "progress": False}
    if warmup_steps:  # CUDA context, kernels and allocator caches are set up here, not in the timed run
        build_clusterer({**cfg, "outer_steps": warmup_steps}).fit(spaces)
    model = build_clusterer({**cfg, "outer_steps": steps}).fit(spaces)
    per_step = model.run_info_["train_time_s"] / steps
    return {
        "points": n,
        "dims": list(dims),
        "k": k,
        "batch_size": model.info()["batch_size"],
        "inner_steps": 10,
        "steps_timed": steps,
        "products": model.run_info_["products"],
        "seconds_per_outer_step": per_step,
        "projected_seconds_for_6000_steps": per_step * 6000,
    }


def bench_temi(
    device: str,
    epochs: int,
    points: int,
    rng: np.random.Generator,
    *,
    dim: int = TEMI_DIM,
    k: int = K,
    overrides: dict | None = None,
) -> dict:
    """Seconds per TEMI epoch and of the kNN graph (the official recipe unless ``overrides``)."""
    x = rng.standard_normal((points, dim), dtype=np.float32)
    model = build_clusterer(
        {"kind": "temi", "k": k, "epochs": epochs, "device": device, "progress": False, **(overrides or {})}
    )
    model.fit([x])
    run = model.run_info_
    per_epoch = run["train_time_s"] / epochs
    return {
        "points": points,
        "dim": dim,
        "k": k,
        "heads": model.heads,
        "batch_size": model.info()["batch_size"],
        "iterations_per_epoch": model.info()["iters_per_epoch"],
        "epochs_timed": epochs,
        "knn_graph_seconds": run["knn_time_s"],
        "seconds_per_epoch": per_epoch,
        "projected_seconds_for_100_epochs": per_epoch * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--turtle-steps", type=int, default=3)
    parser.add_argument("--temi-epochs", type=int, default=1)
    parser.add_argument("--temi-points", type=int, default=N)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("turtle", "temi"),
        default=["turtle", "temi"],
        help="what to measure; the other parts' results already in --out are kept",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for part in {"turtle", "temi"} - set(args.parts):  # kept: with the machine and load they were measured at
        for row in results.get(part, {}).values():
            row.setdefault("machine_when_measured", results.get("machine"))
    results.update({"machine": machine_info(), "turtle": results.get("turtle", {}), "temi": results.get("temi", {})})
    if "cuda" not in devices:
        results["cuda"] = "not available on this machine: CUDA timings not measured"
    for device in devices:
        rng = np.random.default_rng(0)
        for part in args.parts:
            load = os.getloadavg()[0]
            row = (
                bench_turtle(device, args.turtle_steps, rng)
                if part == "turtle"
                else bench_temi(device, args.temi_epochs, args.temi_points, rng)
            )
            results[part][device] = {
                **row,
                "threads": args.threads,
                "load_average_1m_before": load,
                "load_average_1m_after": os.getloadavg()[0],
                "measured": time.strftime("%Y-%m-%d"),
            }
            print(part, device, results[part][device], flush=True)
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
