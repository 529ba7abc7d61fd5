"""`pip install l2h` without extras: the core (algorithm, Hierarchy, metrics, the `l2h` command) installs and runs
with numpy, scipy and a few light packages, without torch, Snakemake or Hydra."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, **kwargs)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_core_install_runs_l2h_tree_without_the_heavy_packages(tmp_path, shared_data):
    source = tmp_path / "source"  # what a wheel is built from: the project files, none of the checkout's state
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(UV, "pip", "install", "-q", "-p", python, source)
    installed = {line.split()[0].lower() for line in run(UV, "pip", "list", "-p", python).stdout.splitlines()[2:]}
    assert "l2h" in installed and {"numpy", "scipy"} <= installed
    assert not installed & {
        "torch",
        "snakemake",
        "hydra-core",
        "omegaconf",
        "open-clip-torch",
        "timm",
        "clustpy",
        "scikit-learn",
        "pandas",
    }, sorted(installed)
    logits = shared_data / "logits" / "wideresnet-16-4-cifar-100.npz"
    out = tmp_path / "tree"
    proc = run(
        venv / "bin" / "l2h",
        "tree",
        logits,
        "--key",
        "predictions",
        "--input",
        "probs",
        "--labels",
        logits,
        "--labels-key",
        "ground_truth",
        "--out",
        out,
        cwd=tmp_path,
    )
    assert "metrics: nmi" in proc.stdout
    assert {"tree.json", "tree.nwk", "linkage.npy", "metrics.json", "levels.json", "dendrogram.png", "tree.html"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "tree.json").read_text())["k"] == 100
    probe = "import l2h.algorithm, l2h.hierarchy, l2h.metrics, l2h.kernels; print(l2h.kernels.build())"
    assert run(python, "-c", probe, cwd=tmp_path).stdout.strip() == "compiled"  # the C extension was built
