"""Speed of TreeVAE training at CIFAR scale with the official CIFAR recipe: 10,000 images of 32×32×3, ``cnn2``
encoder/decoders, 64-d latents, MLPs [4096, 512, …], contrastive views (batch 256 = 128 images × 2 views →
78 iterations per epoch over 10,000 images).

Times a few iterations (after a warm-up one) of the two kinds of epoch and extrapolates:

* ``full``: the whole tree trained (the initial root + 2 leaves: 150 epochs in the recipe);
* ``small``: one split's depth-one subtree trained under the frozen tree (150 epochs per split, on the
  points of the split leaf only; the per-epoch number here is for all 10,000 points, an upper bound).

The projected recipe total assumes split s (of K − 2) trains on 2N / (s + 2) points (the points with
P(leaf) ≥ 1/leaves of the largest leaf; an estimate). Pixels are random (speed does not depend on them).
Writes benchmarks/results/treevae.json with the machine and its load (a shared machine slows every number).
:func:`time_epoch` is reusable on CUDA (``device="cuda"``).

    python benchmarks/bench_treevae.py [--threads 1 2] [--iters 3] [--k 10]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from machine import machine_info as describe_machine  # noqa: E402  (benchmarks/machine.py)

from l2h.baselines.treevae.model import ModelConfig, SmallTree, TreeVAE
from l2h.baselines.treevae.train import run_epoch, seeded, total_loss
from l2h.io import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "treevae.json"
N, SHAPE, BATCH, EPOCHS = 10_000, (3, 32, 32), 256, 150
CIFAR = ModelConfig(
    shape=SHAPE,
    encoder="cnn2",
    activation="mse",
    latent=(64,) * 6,
    hidden=(4096, 512, 512, 512, 512, 512),
    methods=("InfoNCE", "instancewise_full"),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(phase: str, *, device: str = "cpu", n_points: int = N, iters: int = 3, seed: int = 0) -> dict:
    """Seconds per training iteration of ``phase`` ("full" or "small") at the CIFAR recipe, timed over ``iters``
    iterations after one warm-up iteration, and the extrapolated seconds per epoch over ``n_points`` images."""
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    x = torch.rand((n_points, *SHAPE), generator=gen, device=dev)
    model = seeded(seed, lambda: TreeVAE.initial(CIFAR)).to(dev)
    if phase == "full":
        model.train()
        module = model

        def loss_fn(xb):
            return total_loss(model.terms(xb, gen, True), 0.01, 100.0)
    elif phase == "small":
        model.eval()
        module = seeded(seed + 1, lambda: SmallTree(CIFAR, 1)).to(dev).train()

        def loss_fn(xb):
            with torch.no_grad():
                feats, z, prob = model.leaf_sample(xb, 1, gen)
            return total_loss(module.terms(xb, feats, z, prob, gen, True), 0.01, 100.0)
    else:
        raise ValueError(f"phase must be 'full' or 'small', got {phase!r}")
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-5)
    rows = torch.arange(n_points, device=dev)
    kwargs = dict(batch=BATCH // 2, augment=True, strength=0.5, gen=gen)
    run_epoch(x, rows, loss_fn, opt, max_batches=1, **kwargs)  # warm-up (allocations, kernel choice)
    _sync(dev)
    start = time.perf_counter()
    run_epoch(x, rows, loss_fn, opt, max_batches=iters, **kwargs)
    _sync(dev)
    per_iter = (time.perf_counter() - start) / iters
    per_epoch_iters = n_points // (BATCH // 2)
    return {
        "phase": phase,
        "device": dev.type,
        "points": n_points,
        "batch_images": BATCH // 2,
        "views_per_batch": BATCH,
        "iterations_timed": iters,
        "seconds_per_iteration": per_iter,
        "iterations_per_epoch": per_epoch_iters,
        "seconds_per_epoch": per_iter * per_epoch_iters,
    }


def projected_recipe_seconds(full_epoch: float, small_epoch: float, k: int) -> float:
    """The recipe's total: 150 full epochs, then K − 2 splits of 150 epochs, split s (s = 0, 1, …, of a tree
    with s + 2 leaves) on ≈ 2N/(s + 2) points."""
    splits = sum(2 / (s + 2) for s in range(k - 2))
    return EPOCHS * full_epoch + EPOCHS * small_epoch * splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--k", type=int, default=10, help="num_clusters_tree for the projected total")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        load_before = os.getloadavg()[0]
        full = time_epoch("full", device=args.device, iters=args.iters)
        small = time_epoch("small", device=args.device, iters=args.iters)
        hours = projected_recipe_seconds(full["seconds_per_epoch"], small["seconds_per_epoch"], args.k) / 3600
        runs.append(
            {
                "torch_threads": threads,
                "load_average_1m_before": load_before,
                "load_average_1m_after": os.getloadavg()[0],
                "full": full,
                "small": small,
                f"projected_hours_recipe_k{args.k}": hours,
            }
        )
        print(
            f"{threads} thread(s): full {full['seconds_per_epoch']:.0f} s/epoch, small "
            f"{small['seconds_per_epoch']:.0f} s/epoch, recipe (K={args.k}) ≈ {hours:.1f} h "
            f"(load {load_before:.1f})",
            flush=True,
        )
    write_json(
        args.out,
        {
            "benchmark": "treevae_cifar_scale",
            "machine": describe_machine(("numpy", "torch")),
            "recipe": {
                "epochs_initial": EPOCHS,
                "epochs_per_split": EPOCHS,
                "batch_size": BATCH,
                "encoder": "cnn2",
                "latent_dim": list(CIFAR.latent),
                "mlp_layers": list(CIFAR.hidden),
                "augmentation": list(CIFAR.methods),
            },
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
