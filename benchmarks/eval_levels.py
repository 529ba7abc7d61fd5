"""How well do the suggested levels (l2h.levels) find known levels? Versus two simple baselines.

Data with known levels: the shared CIFAR-100 predictions (20 superclasses), CIFAR-10 (vehicles/animals) and
synthetic logits with planted levels (confusions that follow a balanced class tree). For every known level,
the NMI (points, arithmetic) of the L2H tree cut at: our top suggestion; the best of our top 3; the largest
drop in merge affinity; round(√K); and the known number of groups (the tree's best case at that count).
Writes benchmarks/results/levels.json and prints the Markdown table of docs/analysis.md.

Run: .venv/bin/python benchmarks/eval_levels.py   (about 10 s)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from machine import machine_info  # noqa: E402  (benchmarks/machine.py)

from l2h.algorithm import l2h
from l2h.compare import read_reference
from l2h.io import write_json
from l2h.levels import suggest_levels
from l2h.metrics import nmi

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "levels.json"
LOGITS = REPO.parent / "shared" / "data" / "logits"
MAPPING = REPO / "benchmarks" / "cifar100_superclasses.csv"
CIFAR10_VEHICLES = (0, 1, 8, 9)  # airplane, automobile, ship, truck
SYNTHETIC = {  # name: (branching per level, logit scale per tree-distance step, noise)
    "planted 4x4x4": ((4, 4, 4), 2.0, 2.0),
    "planted 2x5x10": ((2, 5, 10), 2.0, 2.0),
    "planted 3x4x5": ((3, 4, 5), 3.0, 2.4),
    "planted 20x5 (CIFAR-100-like)": ((20, 5), 3.0, 2.0),
    "planted 4x4x4, weak": ((4, 4, 4), 1.0, 2.0),
}
SEEDS = (0, 1, 2)


def cifar100_fine_to_coarse() -> np.ndarray:
    """Superclass index of each CIFAR-100 class (classes in index order = alphabetical), from the mapping file
    beside this script (the standard mapping; tests/test_compare.py checks it against the test constant)."""
    reference = read_reference(MAPPING)
    [(_, groups)] = reference.levels()
    return groups[np.argsort(reference.leaves)]


def planted(branching: tuple[int, ...], scale: float, noise: float, seed: int, per_class: int = 100):
    """Logits whose confusions follow a balanced tree: z_j = −scale·(LCA height of y and j) + noise·ε."""
    k = int(np.prod(branching))
    path = np.array(np.unravel_index(np.arange(k), branching)).T  # (K, levels): digits of each class
    shared = np.cumprod(path[:, None, :] == path[None, :, :], axis=2).sum(2)
    height = len(branching) - shared  # LCA height, 0 on the diagonal
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), per_class)
    z = -scale * height[y] + noise * rng.normal(size=(y.size, k))
    levels = {
        int(np.prod(branching[:d])): np.ravel_multi_index(path[:, :d].T, branching[:d])
        for d in range(1, len(branching))
    }
    return z, "logits", y, levels


def evaluate(scores, input: str, fine: np.ndarray, levels: dict[int, np.ndarray]) -> list[dict]:
    tree, leaves = l2h(scores, input=input, return_assignment=True)
    start = time.perf_counter()
    found = suggest_levels(tree, scores, leaves=leaves, input=input)
    seconds = time.perf_counter() - start
    ranked = [s["n_groups"] for s in found["suggestions"]]
    rows = []
    for n_true, class_to_level in levels.items():
        truth = class_to_level[fine]

        def score(n, truth=truth):
            return None if n is None else nmi(truth, tree.cut(int(n))[leaves])

        rows.append(
            {
                "n_true": n_true,
                "suggestions": ranked[:5],
                "rank_of_n_true": (ranked.index(n_true) + 1 if n_true in ranked else None),
                "ours": {"n": ranked[0] if ranked else None, "nmi": score(ranked[0] if ranked else None)},
                "ours_best_of_3": max((score(n) for n in ranked[:3]), default=None),
                "largest_affinity_gap": {
                    "n": found["baselines"]["largest_affinity_gap"],
                    "nmi": score(found["baselines"]["largest_affinity_gap"]),
                },
                "sqrt_k": {"n": found["baselines"]["sqrt_k"], "nmi": score(found["baselines"]["sqrt_k"])},
                "known_n": {"n": n_true, "nmi": score(n_true)},
                "suggest_seconds": round(seconds, 3),
                "k": tree.k,
                "accuracy": float((leaves == fine).mean()),
            }
        )
    return rows


def main() -> None:
    results = {"machine": machine_info(("l2h", "numpy", "scipy")), "datasets": {}}
    with np.load(LOGITS / "wideresnet-16-4-cifar-100.npz") as data:
        probs, fine = data["predictions"], data["ground_truth"]
    results["datasets"]["CIFAR-100 (WRN-16-4)"] = evaluate(probs, "probs", fine, {20: cifar100_fine_to_coarse()})
    with np.load(LOGITS / "wideresnet-16-4-cifar-10.npz") as data:
        probs, fine = data["predictions"], data["ground_truth"]
    vehicles = np.isin(np.arange(10), CIFAR10_VEHICLES).astype(np.int64)
    results["datasets"]["CIFAR-10 (WRN-16-4)"] = evaluate(probs, "probs", fine, {2: vehicles})
    for name, (branching, scale, noise) in SYNTHETIC.items():
        for seed in SEEDS:
            z, input, y, levels = planted(branching, scale, noise, seed)
            results["datasets"][f"{name}, seed {seed}"] = evaluate(z, input, y, levels)
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    write_json(RESULT, results)
    print(table(results))


def table(results: dict) -> str:
    """The Markdown table of docs/analysis.md: synthetic seeds averaged (NMI) and listed (n)."""
    grouped: dict[tuple[str, int], list[dict]] = {}
    for name, rows in results["datasets"].items():
        for row in rows:
            grouped.setdefault((name.split(", seed")[0], row["n_true"]), []).append(row)
    lines = [
        "| data | K | known n | ours: n (NMI) | rank of known n in ours | best of our top 3 (NMI) | "
        "largest affinity gap: n (NMI) | √K: n (NMI) | known n (NMI) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(rows, key):
        ns = "/".join(str(r[key]["n"]) for r in rows)
        values = [r[key]["nmi"] for r in rows if r[key]["nmi"] is not None]
        return f"{ns} ({np.mean(values):.3f})" if values else f"{ns} (–)"

    for (name, n_true), rows in grouped.items():
        ranks = "/".join(str(r["rank_of_n_true"] or "–") for r in rows)
        best3 = np.mean([r["ours_best_of_3"] for r in rows])
        lines.append(
            f"| {name} | {rows[0]['k']} | {n_true} | {cell(rows, 'ours')} | {ranks} | {best3:.3f} | "
            f"{cell(rows, 'largest_affinity_gap')} | {cell(rows, 'sqrt_k')} | {cell(rows, 'known_n')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
