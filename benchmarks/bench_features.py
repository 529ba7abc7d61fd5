"""Feature-extraction throughput: the full pipeline (DataLoader + transform + H2D + model) against the bare
model's forward pass on the same, already-transformed batches.

    python benchmarks/bench_features.py [--n 128] [--batch-size 32] [--num-workers 0] [--threads 2] [--repeats 3]

Runs `efficientnet_lite0` (real weights) on CPU always; on a CUDA machine also `clip_vitl14` with random
weights on the GPU (autocast, pinned memory, workers; target: pipeline ≥ 80% of forward-only).
Writes benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from machine import machine_info as describe_machine  # noqa: E402  (benchmarks/machine.py)
from omegaconf import OmegaConf  # noqa: E402

from l2h.data.imageset import ImageSet  # noqa: E402
from l2h.features import build_backbone, extract_features  # noqa: E402
from l2h.features.extract import autocast_dtype, resolve_device  # noqa: E402
from l2h.io import write_json  # noqa: E402


def machine_info() -> dict:
    return describe_machine(("l2h", "numpy", "torch", "torchvision", "open-clip-torch", "timm"))


def random_cifar_like(n: int, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(
        labels=np.zeros(n, dtype=np.int64),
        class_names=["x"],
        pixels=rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
    )


def forward_only(
    backbone, images: ImageSet, batch_size: int, device: torch.device, precision: str, distinct_batches: int = 8
) -> float:
    """Images/s of backbone.encode alone on pre-transformed batches already on the device (up to
    ``distinct_batches`` batches, cycled until as many images as ``images`` holds went through)."""
    batches = [
        torch.stack([backbone.transform(images[i]) for i in range(s, min(s + batch_size, len(images)))]).to(device)
        for s in range(0, min(len(images), distinct_batches * batch_size), batch_size)
    ]
    n_batches = -(-len(images) // batch_size)
    amp = autocast_dtype(precision, device)
    backbone.to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        backbone.encode(batches[0]).float().cpu()  # warm-up
        _sync(device)
        start, done = time.perf_counter(), 0
        for b in range(n_batches):
            done += len(backbone.encode(batches[b % len(batches)]).float().cpu())
        _sync(device)
        return done / (time.perf_counter() - start)


def pipeline(
    backbone, images: ImageSet, batch_size: int, num_workers: int, device: torch.device, precision: str
) -> float:
    """Images/s of extract_features end to end (PIL images in, float32 features out)."""
    extract_features(
        backbone,
        images.subset(range(batch_size)),
        batch_size=batch_size,
        num_workers=0,
        device=device,
        precision=precision,
        progress=False,
    )  # warm-up
    _sync(device)
    start = time.perf_counter()
    extract_features(
        backbone,
        images,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
        progress=False,
    )
    _sync(device)
    return len(images) / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name: str, overrides: dict, n: int, batch_size: int, num_workers: int, device: str, repeats: int) -> dict:
    cfg = OmegaConf.merge(OmegaConf.load(REPO / "conf" / "backbone" / f"{name}.yaml"), overrides)
    backbone = build_backbone(cfg)
    dev = resolve_device(device)
    precision = cfg.get("precision", "auto")
    images = random_cifar_like(n)
    fwds, pipes = [], []
    for _ in range(repeats):  # interleaved, so that a change in machine load hits both alike
        fwds.append(forward_only(backbone, images, batch_size, dev, precision))
        pipes.append(pipeline(backbone, images, batch_size, num_workers, dev, precision))
    fwd, pipe = max(fwds), max(pipes)
    row = {
        "backbone": name,
        "pretrained": cfg.get("pretrained"),
        "device": str(dev),
        "precision": precision,
        "autocast_dtype": str(autocast_dtype(precision, dev)),
        "n_images": n,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "input": "32x32 RGB uint8 (CIFAR-sized), model transform applied",
        "repeats": repeats,
        "forward_only_img_s_each": [round(v, 2) for v in fwds],
        "pipeline_img_s_each": [round(v, 2) for v in pipes],
        "statistic": "best of repeats",
        "forward_only_img_s": round(fwd, 2),
        "pipeline_img_s": round(pipe, 2),
        "pipeline_over_forward": round(pipe / fwd, 3),
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=128, help="images for the CPU run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for the CPU run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the best is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--gpu-n", type=int, default=16384, help="images for the GPU run")
    parser.add_argument("--gpu-batch-size", type=int, default=256)
    parser.add_argument("--gpu-workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "features.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = {"machine": machine_info(), "runs": []}
    results["runs"].append(
        bench("efficientnet_lite0", {}, args.n, args.batch_size, args.num_workers, "cpu", args.repeats)
    )
    if torch.cuda.is_available():
        results["runs"].append(
            bench(
                "clip_vitl14",
                {"pretrained": None},
                args.gpu_n,
                args.gpu_batch_size,
                args.gpu_workers,
                "cuda",
                args.repeats,
            )
        )
        results["target"] = "clip_vitl14 on CUDA: pipeline_over_forward >= 0.8"
        results["target_met"] = results["runs"][-1]["pipeline_over_forward"] >= 0.8
    else:
        results["note"] = "no CUDA device on this machine: the clip_vitl14 GPU run was not made"
    results["load_average_1m_at_end"] = os.getloadavg()[0]  # the machine may be shared: load before and after
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
