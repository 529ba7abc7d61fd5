"""Wall time of the default experiment (`demo`) through the real `snakemake` command, and of the no-op re-run.

Targets (docs/benchmarks.md): once installed, the demo finishes in ≤ 3 min and a second run is a no-op in ≤ 15 s; from a
fresh clone, README's main command (install + demo) finishes in ≤ 10 min.

* default: runs in a temporary copy of the Snakefile, workflow/ and conf/ (the repository's results/ stay
  untouched) with this interpreter's snakemake and `--cores all`;
* ``--fresh-clone``: copies the repository's files (what git tracks or would track, as a clone of the working
  tree has) to a temporary folder and times README's main command there verbatim (venv, uv, install, demo).

Writes ``benchmarks/results/pipeline.json`` with the machine description, the load average before and after
each run (a shared machine makes wall times pessimistic) and the table each installed run produced.

    python benchmarks/bench_pipeline.py [--experiment demo] [--repeats 1] [--fresh-clone]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, timed_command  # noqa: E402  (benchmarks/machine.py)

from l2h.io import write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
OUT = REPO / "benchmarks" / "results" / "pipeline.json"
TARGETS = {"first_run_s": 180.0, "noop_run_s": 15.0, "fresh_clone_s": 600.0}


def readme_main_command() -> str:
    """The first command of README's Quick start (install + demo), verbatim."""
    quick = re.search(r"^## Quick start\n(.*?)^## ", (REPO / "README.md").read_text(), re.S | re.M).group(1)
    return re.search(r"```bash\n(.+?)\n```", quick, re.S).group(1).strip()


def copy_checkout(dest: Path) -> None:
    """The files a clone of the working tree would have: tracked and untracked-but-not-ignored ones."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def installed_run(experiment: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="l2h-bench-") as tmp:
        work = Path(tmp)
        shutil.copy2(REPO / "Snakefile", work / "Snakefile")
        for name in ("workflow", "conf"):
            shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        cmd = [str(SNAKEMAKE), "--cores", "all", "--config", f"experiment={experiment}"]
        first = timed_command(cmd, work)
        noop = timed_command(cmd, work)
        table = (work / "results" / "tables" / f"{experiment}.md").read_text()
    print(
        f"{experiment}: first run {first['wall_s']} s (CPU {first['cpu_s']} s, load "
        f"{first['load_average_1m_before']}→{first['load_average_1m_after']}), no-op {noop['wall_s']} s",
        flush=True,
    )
    return {"first_run": first, "noop_run": noop, "table": table}


def fresh_clone_run() -> dict:
    command = readme_main_command()
    with tempfile.TemporaryDirectory(prefix="l2h-clone-") as tmp:
        work = Path(tmp)
        copy_checkout(work)
        total = timed_command(command, work)
        noop = timed_command([str(work / ".venv" / "bin" / "snakemake"), "--cores", "all"], work)
    print(
        f"fresh clone: `{command}` took {total['wall_s']} s (load {total['load_average_1m_before']}→"
        f"{total['load_average_1m_after']}), then a no-op {noop['wall_s']} s",
        flush=True,
    )
    return {"command": command, "total": total, "noop_run": noop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--repeats", type=int, default=1, help="fresh runs to time (each followed by a no-op run)")
    parser.add_argument("--fresh-clone", action="store_true", help="also time README's main command from a clone")
    args = parser.parse_args()
    runs = [installed_run(args.experiment) for _ in range(args.repeats)]
    best = {
        "first_run_s": min(r["first_run"]["wall_s"] for r in runs),
        "noop_run_s": min(r["noop_run"]["wall_s"] for r in runs),
    }
    result = {"benchmark": "pipeline", "experiment": args.experiment, "command": "snakemake --cores all", "runs": runs}
    if args.fresh_clone:
        result["fresh_clone"] = fresh_clone_run()
        best["fresh_clone_s"] = result["fresh_clone"]["total"]["wall_s"]
    result.update(
        {
            "best": best,
            "targets": {k: TARGETS[k] for k in best},
            "meets_targets": {k: best[k] <= TARGETS[k] for k in best},
            "machine": machine_info(("l2h", "snakemake", "hydra-core", "torch")),
        }
    )
    write_json(OUT, result)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
