"""Cold-process timings of the ``l2h`` command on a 50,000 × 1,000 float32 ``.npy`` (synthetic logits of
``bench_algorithm.planted_logits``).

Each scenario starts a fresh ``l2h`` process (the console script beside this Python), end to end: start-up,
imports, reading the file, L2H, writing the outputs:

* ``help``         ``l2h --help``                                          target ≤ 0.3 s
* ``tree``         ``l2h tree X.npy --out DIR --no-plot --quiet``          target ≤ 1.0 s
* ``tree_figure``  ``l2h tree X.npy --out DIR --quiet`` (with dendrogram.png) target ≤ 1.5 s

Every scenario runs ``--repeats`` times (the file's pages are in the page cache after the first); the
result keeps every run's wall and CPU time (user + system of the child) and the load average before and
after. ``import_s`` is ``python -X importtime -c "import l2h.cli"``'s total. The CLI's tree is checked
against ``l2h(x, cache_gib=0)`` in this process (the exact path): identical merges and G* scores.

Run: ``.venv/bin/python benchmarks/bench_cli.py [--repeats 5]``; writes ``benchmarks/results/cli.json``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_algorithm import planted_logits
from machine import machine_info, timed_command

from l2h.algorithm import l2h
from l2h.hierarchy import Hierarchy
from l2h.io import write_json

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "cli.json"
INPUT = HERE / "bench_cli.tmp.npy"
OUT = HERE / "bench_cli.tmp.out"
N, K = 50_000, 1_000
TARGETS = {"help": 0.3, "tree": 1.0, "tree_figure": 1.5}


def _command() -> list[str]:
    script = Path(sys.executable).parent / "l2h"
    if not script.is_file():
        raise SystemExit(f"the l2h console script is not installed beside {sys.executable}")
    return [str(script)]


def _import_seconds() -> float:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import l2h.cli"], capture_output=True, text=True, check=True
    )
    line = next(line for line in done.stderr.splitlines() if line.rstrip().endswith("| l2h.cli"))
    return int(re.split(r"\s*\|\s*", line)[1]) / 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    command = _command()
    scenarios = {
        "help": [*command, "--help"],
        "tree": [*command, "tree", str(INPUT), "--out", str(OUT), "--no-plot", "--quiet"],
        "tree_figure": [*command, "tree", str(INPUT), "--out", str(OUT), "--quiet"],
    }
    x = planted_logits(N, K)
    np.save(INPUT, x)
    try:
        result = {
            "description": __doc__.split("\n\n")[0],
            "n": N,
            "k": K,
            "dtype": "float32",
            "import_s": [round(_import_seconds(), 3) for _ in range(3)],
            "scenarios": {},
        }
        for name, argv_ in scenarios.items():
            runs = [timed_command(argv_) for _ in range(args.repeats)]
            walls = [run["wall_s"] for run in runs]
            result["scenarios"][name] = {
                "command": " ".join(Path(a).name if a.startswith(str(HERE)) else a for a in argv_),
                "best_wall_s": min(walls),
                "median_wall_s": float(np.median(walls)),
                "runs": runs,
                "target_s": TARGETS[name],
                "target_met_best": min(walls) <= TARGETS[name],
                "target_met_median": float(np.median(walls)) <= TARGETS[name],
            }
            print(
                f"[bench_cli] {name}: best {min(walls):.3f} s, median {np.median(walls):.3f} s "
                f"(target {TARGETS[name]} s)",
                file=sys.stderr,
            )
        tree = Hierarchy.load(OUT / "tree.json")
        exact = l2h(x, cache_gib=0)
        result["merges_identical_to_exact_path"] = tree.merges == exact.merges
        result["g_star_scores_identical_to_exact_path"] = bool(np.array_equal(tree.scores[:, 0], exact.scores[:, 0]))
        result["exp_cache"] = tree.info["exp_cache"]
        result["machine"] = machine_info()
        result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(args.out, result)
    finally:
        INPUT.unlink(missing_ok=True)
        shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
