"""The Snakemake workflow end to end, through the real `snakemake` command in a temporary directory.

A reduced demo (the demo on raw pixels only: k-means and TURTLE → L2H, Ward agglomerative, DeepECT) runs once
per module, as `snakemake --cores 2` with the repository's root Snakefile and no profile; the tests then check
its values against scikit-learn, that a second run is a no-op, that killing a stage process (or Snakemake with
it) mid-run leaves no partial output and the re-run finishes with byte-identical files, and that editing a
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
from conftest import planned_jobs

from l2h.stages.layout import TREE_FILES
from l2h.stages.plan import Plan, group_options

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REPO_SNAKEFILE = REPO / "Snakefile"
REDUCED = "backbone=pixels"  # the demo on raw pixels only (EfficientNet-Lite0 is exercised by the real demo)
L2H_RUN = "results/digits/pixels/kmeans_k10_s0/l2h_sum_of_cluster_means_lowest_score"
TURTLE_RUN = "results/digits/pixels/turtle_k10_s0/l2h_sum_of_cluster_means_lowest_score"
AGG_RUN = "results/digits/pixels/baseline_agglomerative_k10_s0"
DEEPECT_RUN = "results/digits/pixels/baseline_deepect_k10_s0"
METHODS = {"L2H-kmeans", "L2H-TURTLE", "Agglomerative (ward)", "DeepECT"}


def copy_workflow(dest: Path) -> Path:
    """A private copy of the Snakefile, workflow/ and conf/ (so that tests may edit configs)."""
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    shutil.copy2(REPO_SNAKEFILE, dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow", ignore=ignore)
    shutil.copytree(REPO / "conf", dest / "conf", ignore=ignore)
    return dest


def snakemake_args(workdir: Path, *args: str, snakefile: Path | None = None) -> list[str]:
    snakefile = snakefile or workdir / "Snakefile"
    return [str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", *args]


def snakemake(
    workdir: Path, *args: str, snakefile: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_args(workdir, *args, snakefile=snakefile), capture_output=True, text=True, timeout=timeout, env=env
    )


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """{rule: jobs that would run} of a ``snakemake --summary`` run ({} when there is nothing to do)."""
    check(proc)
    return planned_jobs(proc.stdout)


def outputs(workdir: Path) -> dict[str, bytes]:
    """Every file under results/ except the logs (which hold timings)."""
    root = workdir / "results"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "logs"
    }


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


# Imported by every Python process started with MODULES_HOOK's folder on PYTHONPATH: a stage process records,
# when it exits, the top-level packages it imported (into L2H_TEST_MODULES/<stage>.<pid>.json).
MODULES_HOOK = """
import atexit, json, os, sys
stages = [a.split("l2h.stages.", 1)[1] for a in sys.orig_argv if a.startswith("l2h.stages.")]
if stages:
    def record():
        names = sorted({m.split(".")[0] for m in sys.modules})
        with open(os.path.join(os.environ["L2H_TEST_MODULES"], f"{stages[0]}.{os.getpid()}.json"), "w") as f:
            json.dump({"argv": sys.orig_argv, "modules": names}, f)
    atexit.register(record)
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The reduced demo, run once: (working directory, snapshot of its outputs). Each stage process records the
    packages it imported (``workdir/modules``)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    hook, modules = workdir / "hook", workdir / "modules"
    hook.mkdir()
    modules.mkdir()
    (hook / "sitecustomize.py").write_text(MODULES_HOOK)
    env = {
        **os.environ,
        "L2H_TEST_MODULES": str(modules),
        "PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p),
    }
    proc = snakemake(workdir, "--config", f"overrides={REDUCED}", env=env)
    check(proc)
    assert "for setting default command line arguments" not in proc.stdout + proc.stderr  # no profile loaded
    return workdir, outputs(workdir)


def test_jobs_import_only_what_they_run(demo):
    """L2H, evaluation and the report import neither torch nor scikit-learn nor ClustPy; k-means and Ward jobs
    import no torch (the packages each stage process imported, recorded as it exited)."""
    workdir, _ = demo
    records = [json.loads(p.read_text()) for p in sorted((workdir / "modules").glob("*.json"))]
    seen = set()
    for rec in records:
        stage = next(a.split("l2h.stages.", 1)[1] for a in rec["argv"] if a.startswith("l2h.stages."))
        option = " ".join(rec["argv"])
        seen.add(stage)
        heavy = {"torch", "sklearn", "clustpy"} & set(rec["modules"])
        if stage in ("build_tree", "evaluate", "report"):
            assert not heavy, (stage, heavy)
        if (stage == "train_clusterer" and "clusterer=kmeans" in option) or (
            stage == "run_baseline" and "baseline=agglomerative" in option
        ):
            assert "torch" not in rec["modules"], stage
    assert {"build_tree", "evaluate", "report", "train_clusterer", "run_baseline"} <= seen


def test_the_root_snakefile_is_the_only_one():
    """The entry point is the repository root's Snakefile (rules in workflow/rules/), and no default profile
    exists that a local run would depend on (or that would be stacked on the SLURM profile)."""
    assert REPO_SNAKEFILE.is_file() and not list((REPO / "workflow").rglob("Snakefile"))
    assert 'include: "workflow/rules/common.smk"' in REPO_SNAKEFILE.read_text()
    assert not (REPO / "profiles").exists() and not (REPO / "workflow" / "profiles" / "default").exists()


@pytest.mark.parametrize("experiment", group_options(REPO / "conf", "experiment"))
def test_dry_run_builds_the_dag(dry_run, experiment):
    """Every experiment, from the repository root's Snakefile: prepare → features → clusterer → L2H → evaluate
    → report (clusterer and L2H where the experiment has L2H runs, baselines where it has them)."""
    workdir, proc = dry_run(experiment)
    check(proc)
    counts = job_counts(proc)
    kinds = {run.kind for run in Plan(REPO / "conf", experiment=experiment).runs}
    rules = ["prepare_data", "prefetch_weights", "extract_features", "evaluate"]
    rules += ["train_clusterer", "build_tree"] if "l2h" in kinds else []
    rules += ["run_baseline"] if "baseline" in kinds else []
    for rule in rules:
        assert counts.get(rule, 0) >= 1, (rule, counts)
    assert counts["report"] == 1
    assert counts["evaluate"] == counts.get("build_tree", 0) + counts.get("run_baseline", 0)
    assert not (workdir / "results").exists()


def test_sweep_is_one_command(tmp_path):
    proc = snakemake(
        tmp_path,
        "--summary",
        "--config",
        "overrides=clusterer.k=5,10,20 l2h.aggregation=sum_all,sum_of_cluster_means baseline=[]",
        snakefile=REPO_SNAKEFILE,
    )
    check(proc)
    counts = job_counts(proc)
    models = 3  # the demo's: k-means on each space, TURTLE on both together
    assert counts["train_clusterer"] == 3 * models and counts["build_tree"] == 6 * models
    assert "run_baseline" not in counts


def test_bad_override_fails_before_any_job(tmp_path):
    """(Every kind of bad override is checked on the plan in test_configs.py.)"""
    proc = snakemake(tmp_path, "--config", "overrides=clusterer.k=1", snakefile=REPO_SNAKEFILE)
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "l2h: error: clusterer.k = 1: K must be an integer >= 2 (grid value from --config overrides)"
    )
    assert not (tmp_path / "results").exists()


def table(workdir: Path) -> dict[str, dict[str, str]]:
    """The demo table's CSV rows by method (one row each in the reduced demo)."""
    lines = (workdir / "results" / "tables" / "demo.csv").read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert len({r["method"] for r in rows}) == len(rows)
    return {r["method"]: r for r in rows}


def test_reduced_demo_values_are_sane(demo):
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from threadpoolctl import threadpool_limits

    from l2h.metrics import acc

    workdir, _ = demo
    res = workdir / "results"
    rows = table(workdir)
    assert set(rows) == METHODS
    for row in rows.values():
        assert row["dataset"] == "digits" and row["backbone"] == "pixels" and row["k"] == "10"
        assert row["n_points"] == "540" and row["labels"] == "10 classes; coarse: 2"  # the demo's even/odd
        for m in ("nmi", "ari", "acc", "dp", "lp"):
            assert 0.0 <= float(row[m]) <= 1.0, (row["method"], m, row[m])  # also fails on nan

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    train = unit(np.load(res / "features/digits/pixels/train.npy"))
    test = unit(np.load(res / "features/digits/pixels/test.npy"))
    with np.load(res / "data/digits/labels.npz") as data:
        y = data["test"]
    with threadpool_limits(1):  # OpenMP threads on a busy 2-core machine make k-means 50x slower
        sk = [acc(y, KMeans(10, n_init=10, random_state=s).fit(train).predict(test)) for s in range(5)]
        ward = acc(y, AgglomerativeClustering(10, linkage="ward").fit_predict(test))
    l2h, agg = rows["L2H-kmeans"], rows["Agglomerative (ward)"]
    assert min(sk) - 0.02 <= float(l2h["acc"]) <= max(sk) + 0.02, (l2h["acc"], sk)
    assert float(l2h["lp"]) >= float(l2h["acc"]) - 1e-6  # L2H keeps the k-means clusters as its leaves
    assert abs(float(agg["acc"]) - ward) < 0.02, (agg["acc"], ward)
    assert float(agg["lp"]) == 1.0  # point-level tree: every leaf is one point

    md = (res / "tables" / "demo.md").read_text()
    for method in METHODS:
        assert f"| {method} | digits | pixels | 10 |" in md
    assert "DP" in md and "LP" in md


def test_reduced_demo_report_page_and_latex(demo):
    """results/reports/demo.html holds every run's tree and loads nothing from the network (its browser checks
    are in test_report_browser.py); results/tables/demo.tex is a booktabs table of every method."""
    workdir, _ = demo
    res = workdir / "results"
    page = (res / "reports" / "demo.html").read_text()
    assert not re.search(r"https?://", page) and page.count('<div class="tree-view"') == len(METHODS)
    tex = (res / "tables" / "demo.tex").read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert all(method in tex for method in METHODS)


def test_reduced_demo_turtle_and_deepect_rows(demo):
    """TURTLE and DeepECT ran with the demo's settings and gave real clusterings (far above chance = 0.1)."""
    from l2h.hierarchy import Hierarchy

    workdir, _ = demo
    rows = table(workdir)
    import yaml

    folder = (workdir / TURTLE_RUN).parent
    assert yaml.safe_load((folder / "train_clusterer.config.yaml").read_text())["clusterer"]["outer_steps"] == 2000
    assert json.loads((folder / "info.json").read_text())["empty_clusters"] == 0
    turtle = rows["L2H-TURTLE"]
    assert float(turtle["acc"]) > 0.25 and float(turtle["lp"]) >= float(turtle["acc"]) - 1e-6, turtle
    assert Hierarchy.load(workdir / TURTLE_RUN / "tree.json").k == 10

    deepect_info = json.loads((workdir / DEEPECT_RUN / "info.json").read_text())
    assert (deepect_info["pretrain_epochs"], deepect_info["clustering_epochs"], deepect_info["grow_interval"]) == (
        20,
        20,
        1,
    )  # the demo's settings
    tree = Hierarchy.load(workdir / DEEPECT_RUN / "tree.json")
    assert tree.k == deepect_info["n_leaves"] >= 10 and not deepect_info["fewer_leaves_than_k"]
    deepect = rows["DeepECT"]
    assert float(deepect["acc"]) > 0.4 and float(deepect["nmi"]) > 0.4, deepect
    metrics = json.loads((workdir / DEEPECT_RUN / "metrics.json").read_text())["metrics"]
    assert metrics["coarse_groups"] == 2
    assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for k, v in metrics.items() if k != "coarse_groups"), metrics


def test_turtle_writes_its_per_space_logits(demo):
    """Besides logits.npy = log(mean softmax), TURTLE's job writes logits_<space>.npy, its per-space logits."""
    from scipy.special import log_softmax

    from l2h.clusterers import load_clusterer

    workdir, _ = demo
    folder = (workdir / TURTLE_RUN).parent
    space = np.load(folder / "logits_pixels.npy")
    test = np.load(workdir / "results/features/digits/pixels/test.npy")
    assert space.dtype == np.float32 and space.shape == (540, 10)
    assert np.array_equal(space, load_clusterer(folder / "model.npz").space_logits([test])[0])
    np.testing.assert_allclose(
        np.load(folder / "logits.npy"), log_softmax(space.astype(np.float64), axis=1), atol=1e-5
    )  # one space: log(mean softmax) = log softmax
    prov = json.loads((folder / "train_clusterer.provenance.json").read_text())
    assert prov["space_logits"] == ["logits_pixels.npy"]
    assert not list((workdir / "results/digits/pixels/kmeans_k10_s0").glob("logits_*"))  # k-means has none


def test_turtle_stage_on_two_spaces_by_hand(demo, tmp_path):
    """The stage run by hand (as docs/pipeline.md shows) on two spaces: one logits file per space, named after the
    spaces of stage.run.backbone, and logits.npy is the log of the mean of their softmaxes."""
    from scipy.special import log_softmax, logsumexp

    from l2h.stages.overrides import hydra_value

    workdir, _ = demo
    feats = workdir / "results/features/digits/pixels"
    rotation = np.random.default_rng(0).normal(size=(192, 24)).astype(np.float32)  # a second, different space
    inputs = {"train": [str(feats / "train.npy")], "test": [str(feats / "test.npy")]}
    for split in ("train", "test"):
        np.save(tmp_path / f"{split}_b.npy", np.load(feats / f"{split}.npy") @ rotation)
        inputs[split].append(str(tmp_path / f"{split}_b.npy"))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "l2h.stages.train_clusterer",
        "clusterer=turtle",
        "clusterer.outer_steps=20",
        "clusterer.progress=false",
        f"stage.inputs={hydra_value(inputs)}",
        f"stage.output={hydra_value(str(out))}",
        "stage.run={backbone:'pixels+rotated'}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spaces = [np.load(out / f"logits_{name}.npy").astype(np.float64) for name in ("pixels", "rotated")]
    assert all(s.shape == (540, 10) for s in spaces) and not np.allclose(spaces[0], spaces[1])
    combined = logsumexp(np.stack([log_softmax(s, axis=1) for s in spaces]), axis=0) - np.log(2)
    np.testing.assert_allclose(np.load(out / "logits.npy"), combined, atol=1e-5)
    assert not list(out.glob(".*.tmp"))


def test_outputs_and_records(demo):
    from l2h.hierarchy import Hierarchy
    from l2h.io import sha256_file

    workdir, _ = demo
    res = workdir / "results"
    for run in (L2H_RUN, TURTLE_RUN, AGG_RUN, DEEPECT_RUN):
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
    for rec in ("data/digits/prepare_data", "features/digits/pixels/extract_features", "tables/demo", "weights/pixels"):
        assert (res / f"{rec}.config.yaml").is_file() and (res / f"{rec}.provenance.json").is_file()
    figures = sorted((res / "figures" / "demo").glob("digits_*.png"))  # one dendrogram per L2H run
    assert [f.name.split("_")[2] for f in figures] == ["kmeans", "turtle"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    names = json.loads((workdir / L2H_RUN / "leaf_names.json").read_text())
    assert len(names) == 10 and all(re.fullmatch(r"\d \(\d+%\)", n) for n in names)
    assert not list(res.rglob("*.tmp"))


def test_second_run_is_a_no_op(demo):
    workdir, _ = demo
    proc = snakemake(workdir, "--summary", "--config", f"overrides={REDUCED}")
    check(proc)
    assert job_counts(proc) == {}


# Imported by every Python process started with pause_hook's environment (PYTHONPATH): in the process of the
# stage named by L2H_TEST_PAUSE_STAGE (whose command line also contains L2H_TEST_PAUSE_MATCH), and only until the
# marker file exists, the first .npy the stage writes is followed by a long pause, during which a test kills or
# cancels the job. So the killed attempt has written part of its outputs.
PAUSE_HOOK = """
import os, sys
if ("l2h.stages." + os.environ["L2H_TEST_PAUSE_STAGE"] in sys.orig_argv
        and any(os.environ["L2H_TEST_PAUSE_MATCH"] in arg for arg in sys.orig_argv)):
    marker = os.environ["L2H_TEST_PAUSE_MARKER"]
    if not os.path.exists(marker):
        import time
        import l2h.io
        _write_npy = l2h.io.write_npy
        def write_npy(path, obj):
            _write_npy(path, obj)
            if not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(os.path.abspath(path))
                time.sleep(120)
        l2h.io.write_npy = write_npy
"""


def pause_hook(tmp: Path, env: dict, stage: str, match: str = "") -> tuple[dict, Path]:
    """The environment that makes the first job of `stage` (whose command line has an argument containing
    `match`) pause after its first .npy (see PAUSE_HOOK), and the marker file it then writes."""
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    marker = tmp / "paused"
    path = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PYTHONPATH": path,
        "L2H_TEST_PAUSE_STAGE": stage,
        "L2H_TEST_PAUSE_MATCH": match,
        "L2H_TEST_PAUSE_MARKER": str(marker),
    }, marker


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


@pytest.mark.parametrize("victim", ["stage", "snakemake_and_stage"])
def test_killed_job_leaves_no_partial_output_and_rerun_is_identical(demo, tmp_path, victim):
    """Delete k-means and what follows it, SIGKILL the k-means job halfway through its writes, then resume.

    A job writes into a staging folder and moves its outputs into place only when all exist, so a killed job
    leaves none of its new files among the outputs, whether only the stage process dies or Snakemake dies with it
    (a power loss; then Snakemake's own lock must be released with `--unlock`, docs/pipeline.md). The same bare command
    then redoes the job, and the results are byte-identical."""
    workdir, reference = demo
    res = workdir / "results"
    for folder in ("digits/pixels/kmeans_k10_s0", "tables", "figures", "reports"):
        shutil.rmtree(res / folder)
    untouched = {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file() and "logs" not in p.parts}
    env, marker = pause_hook(tmp_path, dict(os.environ), "train_clusterer")
    proc = subprocess.Popen(
        snakemake_args(workdir, "--config", f"overrides={REDUCED}"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the train_clusterer stage never paused after its first array"
    model = res / "digits/pixels/kmeans_k10_s0"
    assert Path(marker.read_text()).parent == (model / ".staging-train_clusterer").resolve()

    def written() -> list[str]:
        return sorted(p.name for p in model.glob("*") if p.is_file() and not p.name.startswith("."))

    assert written() == []  # halfway through its writes, all of them in the staging folder
    if victim == "stage":
        os.kill(_find_stage(proc.pid, "train_clusterer"), signal.SIGKILL)
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode != 0, log[-3000:]
    else:
        os.killpg(proc.pid, signal.SIGKILL)  # nobody cleans up
        proc.communicate(timeout=60)
        check(snakemake(workdir, "--unlock"))  # Snakemake's lock outlives it (docs/pipeline.md)
    assert written() == [], "the killed job's outputs were left behind"
    check(snakemake(workdir, "--config", f"overrides={REDUCED}"))
    assert outputs(workdir) == reference  # byte-identical
    assert not list(model.glob(".staging-*"))  # the killed attempt's staging folder is gone
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
        proc = snakemake(workdir, "--summary", "--config", f"overrides={REDUCED}")
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


def test_killed_turtle_job_resumes_from_its_checkpoint(demo):
    """TURTLE's job keeps checkpoints in its own folder (the pipeline's default): killed after one, the same
    command resumes from it and ends byte-identical to the uninterrupted run."""
    workdir, reference = demo
    res = workdir / "results"
    folder = res / "digits/pixels/turtle_k10_s0"
    for path in (folder, res / "tables", res / "figures"):
        shutil.rmtree(path)
    overrides = f"overrides={REDUCED}"  # TURTLE checkpoints every 500 of its 2,000 steps
    proc = subprocess.Popen(
        snakemake_args(workdir, "--config", overrides),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoints = folder / ".checkpoints" / "train_clusterer"

    def saved() -> list[Path]:  # complete checkpoints (not the temporary file of one being written)
        return [p for p in checkpoints.glob("*") if not p.name.startswith(".")] if checkpoints.is_dir() else []

    deadline = time.monotonic() + 300
    while not saved() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    stage = _find_stage(proc.pid, "train_clusterer")
    assert stage is not None and saved(), "no TURTLE checkpoint appeared"
    os.kill(stage, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    check(snakemake(workdir, "--config", overrides))
    log = (res / "logs/train_clusterer/digits/pixels/turtle_k10_s0.log").read_text()
    assert re.search(r"resumed_from_step=(\d+)", log), log[-2000:]
    assert int(re.search(r"resumed_from_step=(\d+)", log).group(1)) >= 500
    assert outputs(workdir) == reference
    assert not checkpoints.exists()  # removed once the job succeeded
