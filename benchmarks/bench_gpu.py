"""GPU speed of the pipeline's heavy parts, each with its peak GPU memory (one script, ≤ 8 minutes on an H100):

* feature extraction with ``clip_vitl14`` and ``dinov2_vitg14`` (``pretrained: null``: random weights, the same
  speed as the real ones, no download): images/s through the pipeline's extractor (DataLoader, transform,
  host-to-device copy, autocast model, features back on the host) against the bare forward pass on batches
  already transformed and on the device (target: the pipeline ≥ 90 % of the forward pass);
* TURTLE at CIFAR-100 scale (50,000 points, 768 + 1,536 dims, K = 100, batch 10,000): seconds per outer step
  and the projected time of the official T = 6,000;
* one TEMI epoch at the same scale (50,000 points of the 768-d space, the official recipe) and its kNN graph;
* TreeVAE's epoch time through ``benchmarks/bench_treevae.py``'s ``time_epoch(device)`` when it exists.

    python benchmarks/bench_gpu.py              # CUDA; writes benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --smoke      # CPU, tiny models and sizes: checks that the script runs

Without CUDA (and without ``--smoke``) it stops at once with a message. Results are written after every part,
so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results" / "gpu.json"
TARGET_RATIO = 0.9

#: part → settings of the real run and of the CPU smoke run (tiny models of the same kinds, tiny sizes).
FULL = {
    "extraction": [("clip_vitl14", {}, 8192), ("dinov2_vitg14", {}, 4096)],  # backbone, overrides, images
    "turtle": {"n": 50_000, "dims": (768, 1536), "k": 100, "steps": 30, "warmup_steps": 3},
    "temi": {"points": 50_000, "dim": 768, "k": 100, "epochs": 1, "overrides": {}},
}
SMOKE = {
    "extraction": [
        ("clip_vitl14", {"model": "ViT-B-32", "image_size": 64, "batch_size": 8, "num_workers": 0}, 16),
        (
            "dinov2_vitg14",
            {"model": "vit_small_patch14_dinov2", "image_size": 56, "batch_size": 8, "num_workers": 0},
            16,
        ),
    ],
    "turtle": {"n": 600, "dims": (16, 32), "k": 10, "steps": 3, "warmup_steps": 1},
    "temi": {
        "points": 600,
        "dim": 16,
        "k": 10,
        "epochs": 1,
        "overrides": {"heads": 2, "batch_size": 128, "hidden_dim": 32, "bottleneck_dim": 16, "knn": 5},
    },
}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measured(device: str, part: Callable[[], dict]) -> dict:
    """``part()``'s result with its wall time and, on CUDA, the peak GPU memory it allocated."""
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = part()
    _sync(device)
    out["wall_s"] = round(time.perf_counter() - start, 2)
    out["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None
    print(out, flush=True)
    return out


def extraction(name: str, overrides: dict, n: int, device: str, repeats: int) -> dict:
    """Pipeline extractor vs bare forward pass for one backbone config with random weights."""
    import torch
    from bench_features import forward_only, pipeline, random_cifar_like
    from omegaconf import OmegaConf

    from l2h.features import build_backbone
    from l2h.features.extract import autocast_dtype

    cfg = OmegaConf.merge(
        OmegaConf.load(REPO / "conf" / "backbone" / f"{name}.yaml"), {"pretrained": None, **overrides}
    )
    batch_size, workers, precision = int(cfg.batch_size), int(cfg.num_workers), str(cfg.precision)
    dev = torch.device(device)
    backbone = build_backbone(cfg, device=device)
    images = random_cifar_like(n)
    forward, through = [], []
    for _ in range(repeats):  # interleaved, so that a change in load hits both alike
        forward.append(forward_only(backbone, images, batch_size, dev, precision))
        through.append(pipeline(backbone, images, batch_size, workers, dev, precision))
    ratio = max(through) / max(forward)
    return {
        "backbone": name,
        "model": str(cfg.model),
        "pretrained": None,
        "device": device,
        "autocast_dtype": str(autocast_dtype(precision, dev)),
        "images": n,
        "batch_size": batch_size,
        "num_workers": workers,
        "input": "32x32 RGB uint8 (CIFAR-sized), the model's own transform",
        "forward_only_img_s_each": [round(v, 1) for v in forward],
        "pipeline_img_s_each": [round(v, 1) for v in through],
        "statistic": "best of repeats",
        "forward_only_img_s": round(max(forward), 1),
        "pipeline_img_s": round(max(through), 1),
        "pipeline_over_forward": round(ratio, 3),
        "target": f">= {TARGET_RATIO}",
        "meets_target": ratio >= TARGET_RATIO,
    }


def turtle(device: str, settings: dict) -> dict:
    from bench_clusterers import bench_turtle

    return bench_turtle(
        device,
        settings["steps"],
        np.random.default_rng(0),
        n=settings["n"],
        dims=settings["dims"],
        k=settings["k"],
        warmup_steps=settings["warmup_steps"],
    )


def temi(device: str, settings: dict) -> dict:
    from bench_clusterers import bench_temi

    return bench_temi(
        device,
        settings["epochs"],
        settings["points"],
        np.random.default_rng(1),
        dim=settings["dim"],
        k=settings["k"],
        overrides=settings["overrides"],
    )


def treevae(device: str, smoke: bool) -> dict:
    """TreeVAE's seconds per epoch at CIFAR scale (``bench_treevae.time_epoch``): the whole tree and one split's
    depth-one subtree; with ``smoke``, 256 images and one timed iteration."""
    try:
        from bench_treevae import time_epoch
    except ImportError as exc:
        return {"status": f"not available: {exc}"}
    sizes = {"n_points": 256, "iters": 1} if smoke else {}
    return {"status": "measured", **{phase: time_epoch(phase, device=device, **sizes) for phase in ("full", "small")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models and sizes (checks the script)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved extraction repeats (best reported)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results file (default: {RESULTS.relative_to(REPO)}; with --smoke: none)",
    )
    args = parser.parse_args()

    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit(
            "bench_gpu.py: CUDA is not available on this machine (no GPU or a CPU-only torch build); "
            "run it on a GPU node, or with --smoke for a CPU check at tiny sizes"
        )
    device, settings = ("cpu", SMOKE) if args.smoke else ("cuda", FULL)
    out_path = args.out if args.out is not None else (None if args.smoke else RESULTS)
    from machine import machine_info

    from l2h.io import write_json

    start = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "gpu",
        "mode": "smoke (CPU, tiny models and sizes)" if args.smoke else "cuda",
        "machine": machine_info(("l2h", "numpy", "torch", "torchvision", "open-clip-torch", "timm")),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "extraction": [],
    }

    def save() -> None:
        results["wall_s"] = round(time.perf_counter() - start, 1)
        results["load_average_1m_at_end"] = os.getloadavg()[0]
        if out_path is not None:
            write_json(out_path, results)

    for name, overrides, n in settings["extraction"]:
        results["extraction"].append(measured(device, partial(extraction, name, overrides, n, device, args.repeats)))
        save()
    results["turtle"] = measured(device, partial(turtle, device, settings["turtle"]))
    save()
    results["temi"] = measured(device, partial(temi, device, settings["temi"]))
    save()
    results["treevae"] = measured(device, partial(treevae, device, args.smoke))
    save()
    print(f"done in {results['wall_s']} s" + (f"; wrote {out_path}" if out_path else ""))


if __name__ == "__main__":
    main()
