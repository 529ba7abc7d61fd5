"""The Snakemake workflow end to end, through the real `snakemake` command in a temporary directory.

A reduced demo (digits, raw pixels, k-means → L2H, Ward agglomerative) runs once per module; the tests
then check its values against scikit-learn, that a second run is a no-op, that killing a stage process
mid-run leaves no partial output and the re-run finishes with byte-identical files, and that editing a
config file re-runs exactly the jobs that depend on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from l2h.stages.plan import TREE_FILES, group_options

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REPO_SNAKEFILE = REPO / "workflow" / "Snakefile"
REDUCED = "backbone=pixels"  # the demo on raw pixels only (EfficientNet-Lite0 is exercised by the real demo)
L2H_RUN = "results/digits/pixels/kmeans_k10_s0/l2h_sum_of_cluster_means_lowest_score"
AGG_RUN = "results/digits/pixels/baseline_agglomerative_k10_s0"


def copy_workflow(dest: Path) -> Path:
    """A private copy of workflow/ and conf/ (so that tests may edit configs)."""
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    shutil.copytree(REPO / "workflow", dest / "workflow", ignore=ignore)
    shutil.copytree(REPO / "conf", dest / "conf", ignore=ignore)
    return dest


def snakemake_args(workdir: Path, *args: str, snakefile: Path | None = None) -> list[str]:
    snakefile = snakefile or workdir / "workflow" / "Snakefile"
    return [str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", *args]


def snakemake(workdir: Path, *args: str, snakefile: Path | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_args(workdir, *args, snakefile=snakefile), capture_output=True, text=True,
                          timeout=timeout)


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """{rule: jobs} from a dry run's 'Job stats' table ({} when there is nothing to do)."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m.group(1) not in ("total", "all")}


def outputs(workdir: Path) -> dict[str, bytes]:
    """Every file under results/ except the logs (which hold timings)."""
    root = workdir / "results"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != "logs"}


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The reduced demo, run once: (working directory, snapshot of its outputs)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    check(snakemake(workdir, "--config", f"overrides={REDUCED}"))
    return workdir, outputs(workdir)


@pytest.mark.parametrize("experiment", group_options(REPO / "conf", "experiment"))
def test_dry_run_builds_the_dag(tmp_path, experiment):
    proc = snakemake(tmp_path, "-n", "--config", f"experiment={experiment}", snakefile=REPO_SNAKEFILE,
                     timeout=300)
    check(proc)
    counts = job_counts(proc)
    assert counts["report"] == 1 and counts["evaluate"] >= 1 and counts["prepare_data"] >= 1
    assert not (tmp_path / "results").exists()


def test_sweep_is_one_command(tmp_path):
    proc = snakemake(tmp_path, "-n", "--config",
                     "overrides=clusterer.k=5,10,20 l2h.aggregation=sum_all,sum_of_cluster_means baseline=[]",
                     snakefile=REPO_SNAKEFILE)
    check(proc)
    counts = job_counts(proc)
    backbones = 2  # the demo's
    assert counts["train_clusterer"] == 3 * backbones and counts["build_tree"] == 6 * backbones
    assert "run_baseline" not in counts


def test_bad_override_fails_before_any_job(tmp_path):
    """(Every kind of bad override is checked on the plan in test_configs.py.)"""
    proc = snakemake(tmp_path, "--config", "overrides=clusterer.k=1", snakefile=REPO_SNAKEFILE)
    assert proc.returncode != 0
    assert "configuration error: K must be an integer >= 2, got 1" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_reduced_demo_values_are_sane(demo):
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from threadpoolctl import threadpool_limits

    from l2h.metrics import acc

    workdir, _ = demo
    res = workdir / "results"
    lines = (res / "tables" / "demo.csv").read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert {r["method"] for r in rows} == {"L2H-kmeans", "Agglomerative (ward)"}
    l2h = next(r for r in rows if r["method"] == "L2H-kmeans")
    agg = next(r for r in rows if r["method"] != "L2H-kmeans")
    for row in rows:
        assert row["dataset"] == "digits" and row["backbone"] == "pixels" and row["k"] == "10"
        assert row["n_points"] == "540" and row["labels"] == "10 classes"
        for m in ("nmi", "ari", "acc", "dp", "lp"):
            assert 0.0 <= float(row[m]) <= 1.0

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    train = unit(np.load(res / "features/digits/pixels/train.npy"))
    test = unit(np.load(res / "features/digits/pixels/test.npy"))
    with np.load(res / "data/digits/labels.npz") as data:
        y = data["test"]
    with threadpool_limits(1):  # OpenMP threads on a busy 2-core machine make k-means 50x slower
        sk = [acc(y, KMeans(10, n_init=10, random_state=s).fit(train).predict(test)) for s in range(5)]
        ward = acc(y, AgglomerativeClustering(10, linkage="ward").fit_predict(test))
    assert min(sk) - 0.02 <= float(l2h["acc"]) <= max(sk) + 0.02, (l2h["acc"], sk)
    assert float(l2h["lp"]) >= float(l2h["acc"]) - 1e-6  # L2H keeps the k-means clusters as its leaves
    assert abs(float(agg["acc"]) - ward) < 0.02, (agg["acc"], ward)
    assert float(agg["lp"]) == 1.0  # point-level tree: every leaf is one point

    md = (res / "tables" / "demo.md").read_text()
    assert "| L2H-kmeans | digits | pixels | 10 |" in md and "DP" in md and "LP" in md


def test_outputs_and_records(demo):
    from l2h.hierarchy import Hierarchy
    from l2h.io import sha256_file

    workdir, _ = demo
    res = workdir / "results"
    for run in (L2H_RUN, AGG_RUN):
        folder = workdir / run
        for name in (*TREE_FILES, "metrics.json", "leaf_names.json", "evaluate.config.yaml"):
            assert (folder / name).is_file(), folder / name
        metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
        assert {"nmi", "ari", "acc", "dp", "lp"} <= set(metrics)
        tree = Hierarchy.load(folder / "tree.json")
        leaves = np.load(folder / "leaves.npy")
        assert leaves.dtype == np.int64 and leaves.shape == (540,) and leaves.max() < tree.k
        assert np.load(folder / "clusters.npy").max() < 10
    assert Hierarchy.load(workdir / L2H_RUN / "tree.json").k == 10
    prov = json.loads((workdir / L2H_RUN / "build_tree.provenance.json").read_text())
    logits = f"{L2H_RUN.rsplit('/', 1)[0]}/logits.npy"
    assert prov["inputs"] == {logits: sha256_file(workdir / logits)}
    assert prov["config"]["l2h"]["aggregation"] == "sum_of_cluster_means"
    assert "aggregation: sum_of_cluster_means" in (workdir / L2H_RUN / "build_tree.config.yaml").read_text()
    for rec in ("data/digits/prepare_data", "features/digits/pixels/extract_features", "tables/demo",
                "weights/pixels"):
        assert (res / f"{rec}.config.yaml").is_file() and (res / f"{rec}.provenance.json").is_file()
    figures = list((res / "figures" / "demo").glob("*.png"))
    assert len(figures) == 1 and figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = json.loads((workdir / L2H_RUN / "leaf_names.json").read_text())
    assert len(names) == 10 and all(re.fullmatch(r"\d \(\d+%\)", n) for n in names)
    assert not list(res.rglob("*.tmp"))


def test_second_run_is_a_no_op(demo):
    workdir, _ = demo
    proc = snakemake(workdir, "-n", "--config", f"overrides={REDUCED}")
    check(proc)
    assert job_counts(proc) == {}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _find_stage(root: int, stage: str) -> int | None:
    for pid in _descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" in cmd and f"l2h.stages.{stage}".encode() in cmd:
            return pid
    return None


def test_killed_job_leaves_no_partial_output_and_rerun_is_identical(demo):
    """Delete k-means and what follows it, SIGKILL the k-means stage process mid-run, then resume."""
    workdir, reference = demo
    res = workdir / "results"
    for folder in ("digits/pixels/kmeans_k10_s0", "tables", "figures"):
        shutil.rmtree(res / folder)
    untouched = {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file() and "logs" not in p.parts}
    proc = subprocess.Popen(snakemake_args(workdir, "--config", f"overrides={REDUCED}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim, deadline = None, time.monotonic() + 300
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        victim = _find_stage(proc.pid, "train_clusterer")
        time.sleep(0.02)
    assert victim is not None, "the train_clusterer stage never started"
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, log[-3000:]
    model = res / "digits/pixels/kmeans_k10_s0"
    assert not [p.name for p in model.glob("*") if p.is_file() and not p.name.startswith(".")], \
        "a killed job left output files"

    check(snakemake(workdir, "--config", f"overrides={REDUCED}"))
    assert outputs(workdir) == reference  # byte-identical, and the killed attempt's temporaries are gone
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # finished jobs were not redone


def test_config_edit_reruns_exactly_the_affected_jobs(demo):
    workdir, _ = demo
    conf = workdir / "conf"
    original = {p: p.read_text() for p in conf.rglob("*.yaml")}

    def edit(rel: str, old: str, new: str) -> None:
        path = conf / rel
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))

    def dry() -> dict[str, int]:
        proc = snakemake(workdir, "-n", "--config", f"overrides={REDUCED}")
        check(proc)
        return job_counts(proc)

    try:
        edit("backbone/pixels.yaml", "batch_size: 1024", "batch_size: 512")  # a runtime knob: no re-run
        edit("dataset/cifar10.yaml", "num_classes: 10", "num_classes: 10  # edited")  # another dataset
        edit("clusterer/kmeans.yaml", "n_init: 10", "n_init: 3")
        assert dry() == {"train_clusterer": 1, "build_tree": 1, "evaluate": 1, "report": 1}
        edit("clusterer/kmeans.yaml", "n_init: 3", "n_init: 10")  # back to the value the outputs were made with
        edit("baseline/agglomerative.yaml", "linkage: ward ", "linkage: average ")
        assert dry() == {"run_baseline": 1, "evaluate": 1, "report": 1}
        check(snakemake(workdir, "--config", f"overrides={REDUCED}"))
        assert "Agglomerative (average)" in (workdir / "results/tables/demo.csv").read_text()
        assert dry() == {}
    finally:
        for path, text in original.items():
            path.write_text(text)
