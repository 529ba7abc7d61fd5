"""Peak memory of the agglomerative baseline (scipy linkage) as a function of N.

Each N runs in a fresh subprocess on random L2-normalised features; the extra peak RSS of the
linkage call (peak RSS minus RSS before the call) is fitted to ``bytes_per_pair * N(N-1)/2`` and
written with machine info to ``benchmarks/results/agglomerative_memory.json``. The fitted constant
is the one used by ``l2h.baselines.agglomerative`` for its memory guard.

    python benchmarks/agglomerative_memory.py [--sizes 2000 4000 8000 12000] [--dim 768]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from machine import machine_info as describe_machine  # noqa: E402  (benchmarks/machine.py)

CHILD = r"""
import json, resource, sys, time
import numpy as np
from l2h.baselines.agglomerative import agglomerative
n, d, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
t = time.perf_counter()
agglomerative(x, k=10, linkage=method, memory_limit_gib=None)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"n": n, "dim": d, "linkage": method, "rss_before": before, "peak_rss": peak,
                  "extra_bytes": peak - before, "seconds": seconds}))
"""


def machine() -> dict:
    return describe_machine(("numpy", "scipy"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000, 12000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--linkages", nargs="+", default=["ward", "average"])
    parser.add_argument("--refit", action="store_true", help="refit the runs stored in --out, run nothing")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "agglomerative_memory.json")
    args = parser.parse_args()
    from l2h.baselines.agglomerative import GIB, max_points, peak_bytes
    from l2h.io import write_json

    if args.refit:
        stored = json.loads(args.out.read_text())
        machine_info, runs = stored["machine"], stored["runs"]
    else:
        machine_info, runs = machine(), []
        for method in args.linkages:
            for n in args.sizes:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(n), str(args.dim), method],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
                print(runs[-1], file=sys.stderr)
    design = np.array([[r["n"] * (r["n"] - 1) / 2, r["n"] * r["dim"], 1.0] for r in runs])
    extra = np.array([r["extra_bytes"] for r in runs], dtype=float)
    (per_pair, per_value, intercept), *_ = np.linalg.lstsq(design, extra, rcond=None)
    for r in runs:
        r["model_bytes"] = peak_bytes(r["n"], r["dim"])
    result = {
        "machine": machine_info,
        "runs": runs,
        "fit": {
            "model": "extra_peak_bytes = bytes_per_pair * N(N-1)/2 + bytes_per_feature * N*d + intercept",
            "bytes_per_pair": float(per_pair),
            "bytes_per_feature": float(per_value),
            "intercept_bytes": float(intercept),
        },
        "limit": {
            "memory_gib": 24,
            "dim": 768,
            "max_points": max_points(24, 768),
            "peak_gib_at_max": peak_bytes(max_points(24, 768), 768) / GIB,
        },
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("fit", "limit")}, indent=2))


if __name__ == "__main__":
    main()
