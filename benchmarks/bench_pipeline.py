"""Wall time of the default experiment (`demo`) through the real `snakemake` command, and of the no-op re-run.

Targets (README): the demo finishes in ≤ 3 min once installed, a second run is a no-op in ≤ 15 s. Runs in a
temporary copy of workflow/ and conf/ (so the repository's results/ stay untouched) with this interpreter's
snakemake and `--cores all`; writes ``benchmarks/results/pipeline.json`` with the machine description and the
load average before and after (a shared machine makes wall times pessimistic).

    python benchmarks/bench_pipeline.py [--experiment demo] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from l2h.io import write_json  # noqa: E402
from machine import machine_info  # noqa: E402  (benchmarks/machine.py)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TARGETS = {"first_run_s": 180.0, "noop_run_s": 15.0}


def timed(cmd: list[str], cwd: Path) -> dict:
    """Wall time and the children's CPU time of one command; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(after.ru_utime + after.ru_stime
                                                     - before.ru_utime - before.ru_stime, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--repeats", type=int, default=1, help="fresh runs to time (each followed by a no-op run)")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="l2h-bench-") as tmp:
            work = Path(tmp)
            for name in ("workflow", "conf"):
                shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            cmd = [str(SNAKEMAKE), "--cores", "all", "--config", f"experiment={args.experiment}"]
            load_before = os.getloadavg()[0]
            first = timed(cmd, work)
            noop = timed(cmd, work)
            runs.append({"first_run": first, "noop_run": noop, "load_average_1m_before": load_before,
                         "load_average_1m_after": os.getloadavg()[0]})
            print(f"{args.experiment}: first run {first['wall_s']} s (CPU {first['cpu_s']} s), "
                  f"no-op {noop['wall_s']} s", flush=True)
    best = {"first_run_s": min(r["first_run"]["wall_s"] for r in runs),
            "noop_run_s": min(r["noop_run"]["wall_s"] for r in runs)}
    result = {"benchmark": "pipeline", "experiment": args.experiment, "command": "snakemake --cores all",
              "runs": runs, "best": best, "targets": TARGETS,
              "meets_targets": {k: best[k] <= TARGETS[k] for k in TARGETS},
              "machine": machine_info(("l2h", "snakemake", "hydra-core", "torch"))}
    out = REPO / "benchmarks" / "results" / "pipeline.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
