"""The pipeline on a real SLURM cluster: workflow/scripts/slurm_cluster.sh starts a single-node cluster (loopback
only, with accounting) for the session; the reduced demo runs through snakemake-executor-plugin-slurm with the
shipped profile (`--profile workflow/profiles/slurm`, its two EDIT values filled in) while one job is cancelled
with scancel, and is compared with a local run of the same experiment (no profile). A Hydra multirun of one stage
goes through the hydra-submitit-launcher config (conf/hydra/launcher/slurm.yaml) to the same cluster.

Needs root (it starts daemons), Debian's SLURM packages (the script installs them when missing) and a machine on
which no other slurmctld runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import planned_jobs
from test_workflow import pause_hook  # tests/ is on sys.path (pytest's default "prepend" import mode)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow" / "scripts" / "slurm_cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
SNAKEFILE = REPO / "Snakefile"
CONF = REPO / "conf"

# The reduced demo: the demo experiment with its raw-pixel backbone only (L2H-kmeans, L2H-TURTLE, Ward, DeepECT:
# 12 SLURM jobs, the rest local).
REDUCED = ["--config", "experiment=demo", "overrides=backbone=pixels"]
LOCAL_RULES = {"prepare_data", "prefetch_weights", "report", "all"}  # localrules: downloads, reports stay local
FAULT_RULE, FAULT_MATCH = "run_baseline", "agglomerative"  # this job is cancelled halfway through its writes
PARTITION, ACCOUNT = "main", "l2h"  # what slurm_cluster.sh creates
RUN_LIMIT_S = 480  # SIGKILL for a snakemake run (the plugin can hang)
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    state: Path
    env: dict


def _alive(pid: int) -> bool:
    """PID exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running test cluster; stopped (and checked to be gone) at the end of the session, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (CI runs the suite as root)")
    state = tmp_path_factory.mktemp("slurm-cluster")
    pids: dict[str, int] = {}
    try:
        start = subprocess.run(
            ["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=900
        )  # includes apt-get install on a machine without the packages
        pids = {p.name: int(p.read_text()) for p in (state / "pids").glob("*")} if (state / "pids").is_dir() else {}
        if start.returncode != 0:
            pytest.fail(f"the test cluster did not start:\n{start.stderr[-6000:]}")
        assert set(pids) == {"munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"}
        env = {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf")}
        # a stand-in for a job process that ignores SIGTERM and outlives its job: stop must kill it too
        straggler = subprocess.Popen(
            ["bash", "-c", "trap '' TERM; while :; do sleep 1; done"],
            env={**env, "SLURM_JOB_ID": "999999"},
            start_new_session=True,
        )
        pids["straggler"] = straggler.pid
        yield Cluster(state, env)
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=300)
        missed = []
        if "straggler" in pids:  # reap it; if stop missed it, kill it here and fail below
            try:
                straggler.wait(timeout=10)
            except subprocess.TimeoutExpired:
                straggler.kill()
                straggler.wait()
                missed = ["straggler job process"]
        alive = sorted(name for name, pid in pids.items() if _alive(pid)) + missed
        assert stop.returncode == 0, stop.stderr
        assert not alive, f"still running after stop: {alive}"
        assert not state.exists() and not DEFAULT_CONF.is_symlink()


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def snakemake_args(workdir: Path, *args: str) -> list[str]:
    """The command line of snakemake on the repository's workflow in `workdir`."""
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]


def snakemake(workdir: Path, *args: str, env: dict, out) -> subprocess.Popen:
    """Start snakemake on the repository's workflow in `workdir` (output to the file `out`), killed after
    RUN_LIMIT_S."""
    cmd = ["timeout", "-s", "KILL", str(RUN_LIMIT_S), *snakemake_args(workdir, *args)]
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)


def edited_profile(tmp: Path) -> Path:
    """The shipped profile with its two EDIT values set for the test cluster, as a user would edit it."""
    text = PROFILE.read_text()
    for key, value in (("slurm_partition", PARTITION), ("slurm_account", ACCOUNT)):
        assert text.count(f"{key}=CHANGE_ME") == 1, f"{PROFILE}: no '{key}=CHANGE_ME' to edit"
        text = text.replace(f"{key}=CHANGE_ME", f"{key}={value}")
    out = tmp / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(text)
    return out


def logged_jobs(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, rule, wildcard values) of every job block in a snakemake log; kind is 'rule' or 'localrule'."""
    jobs: list[list] = []
    for line in text.splitlines():
        head = re.fullmatch(r"(localrule|rule) (\w+):", line.strip())
        if head:
            jobs.append([head[1], head[2], ()])
        elif jobs and line.strip().startswith("wildcards: "):
            pairs = line.strip()[len("wildcards: ") :].split(", ")
            jobs[-1][2] = tuple(pair.split("=", 1)[1] for pair in pairs)
    return [tuple(job) for job in jobs]


def slurm_comment(rule: str, values: tuple[str, ...]) -> str:
    """The --comment the executor plugin gives a job: rule name, then wildcard values joined by '_'."""
    return f"rule_{rule}" + (f"_wildcards_{'_'.join(values).replace('/', '_')}" if values else "")


def sacct(env: dict, settle_s: float = 60) -> list[dict]:
    """Every job allocation in the cluster's accounting records, once none is still pending or running there
    (slurmdbd learns a job's end from slurmctld a moment after squeue shows it)."""
    cmd = ["sacct", "-X", "-n", "-P", "-S", "2000-01-01", "-o", "JobID,JobName,State,Comment,AllocTRES"]
    keys = ("id", "name", "state", "comment", "tres")
    deadline = time.monotonic() + settle_s
    while True:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=60).stdout
        records = [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]
        active = [r for r in records if r["state"] in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED")]
        if not active or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def cancel_when_paused(rule: str, match: str, marker: Path, env: dict, done: threading.Event, found: dict) -> None:
    """Once the paused stage wrote `marker`, scancel the RUNNING job of `rule` whose wildcards contain `match`;
    note which outputs it had written."""
    prefix = f"rule_{rule}_"
    while not done.is_set():
        if marker.exists():
            queue = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True, env=env, timeout=30
            ).stdout
            for line in queue.splitlines():
                jobid, comment = line.strip().split("|", 1)
                if comment.startswith(prefix) and f"_{match}_" in comment:
                    folder = Path(marker.read_text()).parent
                    written = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
                    subprocess.run(["scancel", jobid], env=env, check=True, timeout=30)
                    found.update(jobid=jobid, comment=comment, folder=folder, written=written)
                    return
        time.sleep(0.25)


# ---------------------------------------------------------------------------------------------------------
# the runs: local reference and SLURM (with one job cancelled), side by side
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Runs:
    local: Path
    slurm: Path
    local_log: str
    slurm_log: str
    cancelled: dict
    env: dict


@pytest.fixture(scope="session")
def runs(slurm_cluster, tmp_path_factory) -> Runs:
    tmp = tmp_path_factory.mktemp("pipeline")
    local, slurm = tmp / "local", tmp / "slurm"
    local.mkdir()
    slurm.mkdir()
    env = slurm_cluster.env
    slurm_env, marker = pause_hook(tmp, env, FAULT_RULE, f"baseline={FAULT_MATCH}")
    profile = edited_profile(tmp)
    done, cancelled = threading.Event(), {}
    watcher = threading.Thread(
        target=cancel_when_paused, args=(FAULT_RULE, FAULT_MATCH, marker, env, done, cancelled), daemon=True
    )
    t0 = time.monotonic()
    with (tmp / "slurm.log").open("w") as slurm_out, (tmp / "local.log").open("w") as local_out:
        slurm_proc = snakemake(
            slurm,
            "--profile",
            str(profile),
            *REDUCED,
            "--slurm-init-seconds-before-status-checks",
            "5",
            env=slurm_env,
            out=slurm_out,
        )
        local_proc = snakemake(local, *REDUCED, "--cores", "2", env=env, out=local_out)
        watcher.start()
        try:
            local_rc = local_proc.wait()
            slurm_rc = slurm_proc.wait()
        finally:
            done.set()
            for proc in (local_proc, slurm_proc):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            watcher.join(timeout=60)
    local_log, slurm_log = (tmp / "local.log").read_text(), (tmp / "slurm.log").read_text()
    assert local_rc == 0, f"local run failed (rc {local_rc}):\n{local_log[-5000:]}"
    assert slurm_rc == 0, f"SLURM run failed (rc {slurm_rc}; 137 = killed at {RUN_LIMIT_S} s):\n{slurm_log[-8000:]}"
    print(f"local and SLURM runs: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return Runs(local, slurm, local_log, slurm_log, cancelled, env)


def test_every_job_ran_on_slurm(runs):
    """Each non-local job of the experiment is in SLURM's accounting records under its rule and wildcards,
    completed once; localrules never went to SLURM; a job got a GPU exactly when its options ask for one (the
    schemas' ``gpu``: TURTLE with device auto does; k-means, pixels, Ward and DeepECT on cpu do not)."""
    import re as regex

    from l2h.stages.plan import Plan

    plan = Plan(REPO / "conf", experiment="demo", overrides=REDUCED[-1].split("=", 1)[1])
    jobs = set(logged_jobs(runs.local_log))
    assert {
        "prepare_data",
        "extract_features",
        "train_clusterer",
        "build_tree",
        "run_baseline",
        "evaluate",
        "report",
    } <= {rule for _, rule, _ in jobs}
    expected = {slurm_comment(rule, values): rule for _, rule, values in jobs if rule not in LOCAL_RULES}
    gpu = {}
    for _, rule, values in jobs:
        if rule not in LOCAL_RULES:
            names = list(dict.fromkeys(regex.findall(r"\{(\w+)\}", plan.output_patterns(rule)[0])))
            gpu[slurm_comment(rule, values)] = plan.needs_gpu(rule, dict(zip(names, values)))
    assert any(gpu.values()) and not all(gpu.values())
    records = sacct(runs.env)
    completed = [r for r in records if r["state"] == "COMPLETED" and r["comment"].startswith("rule_")]
    assert sorted(r["comment"] for r in completed) == sorted(expected)  # every job once, nothing else
    for r in completed:
        assert ("gres/gpu=1" in r["tres"]) == gpu[r["comment"]], r
    for rule in LOCAL_RULES:
        assert not any(re.fullmatch(f"rule_{rule}(_wildcards_.*)?", r["comment"]) for r in records), rule
    kinds = {(kind, rule) for kind, rule, _ in logged_jobs(runs.slurm_log)}
    assert {("localrule", "prepare_data"), ("localrule", "report")} <= kinds
    assert not {rule for kind, rule in kinds if kind == "rule"} & LOCAL_RULES


def result_files(workdir: Path) -> list[Path]:
    """The run's output files (logs aside), relative to its working directory."""
    return sorted(
        p.relative_to(workdir)
        for p in (workdir / "results").rglob("*")
        if p.is_file() and "logs" not in p.relative_to(workdir).parts
    )


def test_slurm_results_equal_local_run(runs):
    """Every result file of the SLURM run is byte-identical to the local run's, the table included."""
    files = result_files(runs.local)
    assert Path("results/tables/demo.csv") in files and Path("results/tables/demo.md") in files
    assert result_files(runs.slurm) == files
    assert [str(f) for f in files if (runs.local / f).read_bytes() != (runs.slurm / f).read_bytes()] == []


def test_cancelled_job_is_retried_and_leaves_nothing_partial(runs):
    """The job cancelled halfway through writing its outputs is CANCELLED in SLURM, Snakemake resubmitted it
    (retries), the rerun completed, and no temporary or incomplete output remains: a dry run finds nothing to do.
    (That its outputs equal the local run's is checked with all the others above.)"""
    assert runs.cancelled, f"no {FAULT_RULE} job was seen paused, so none was cancelled"
    written = runs.cancelled["written"]
    assert written and "info.json" not in written, f"not a partial output when cancelled: {written}"
    records = sacct(runs.env)
    by_id = {r["id"]: r for r in records}
    victim = by_id[runs.cancelled["jobid"]]
    assert victim["state"].startswith("CANCELLED") and victim["comment"] == runs.cancelled["comment"]
    reruns = [r for r in records if r["comment"] == victim["comment"] and int(r["id"]) > int(victim["id"])]
    assert [r["state"] for r in reruns] == ["COMPLETED"]
    assert "Trying to restart job" in runs.slurm_log  # (the attempt wrote only into its staging folder)
    assert not list((runs.slurm / "results").rglob(".staging-*")), "the cancelled attempt's staging folder remains"
    results = runs.slurm / "results"
    assert not list(results.rglob("*.tmp")), "temporaries of the cancelled attempt remain"
    incomplete = runs.slurm / ".snakemake" / "incomplete"
    assert not incomplete.exists() or not any(incomplete.iterdir())
    dry = subprocess.run(
        snakemake_args(runs.slurm, "--cores", "1", "--summary", *REDUCED),
        capture_output=True,
        text=True,
        env=runs.env,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert planned_jobs(dry.stdout) == {}


# ---------------------------------------------------------------------------------------------------------
# Hydra sweeps of one stage outside Snakemake (hydra-submitit-launcher)
# ---------------------------------------------------------------------------------------------------------


def test_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.account is None
    assert launcher.gpus_per_node == 1 and launcher.timeout_min > 0 and launcher.array_parallelism > 0


def test_hydra_multirun_of_a_stage_on_slurm(slurm_cluster, tmp_path):
    """`python -m l2h.stages.build_tree -m hydra/launcher=slurm ...` runs each sweep value as a task of one SLURM
    job array; each task's tree equals L2H computed here."""
    from l2h.algorithm import l2h
    from l2h.hierarchy import Hierarchy

    logits = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    aggregations = ["sum_all", "mean_of_cluster_means"]
    cmd = [
        "timeout",
        "-s",
        "KILL",
        "240",
        sys.executable,
        "-m",
        "l2h.stages.build_tree",
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={PARTITION}",
        f"hydra.launcher.account={ACCOUNT}",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=5",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        f"l2h.aggregation={','.join(aggregations)}",
        f"stage.inputs={{logits:'{tmp_path / 'logits.npy'}'}}",
        f"stage.output={tmp_path / 'out'}/${{l2h.aggregation}}",
    ]
    before = {r["id"] for r in sacct(slurm_cluster.env)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=slurm_cluster.env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    deadline = time.monotonic() + 60  # the records reach slurmdbd a moment after the jobs end
    while len(tasks := [r for r in sacct(slurm_cluster.env) if r["id"] not in before]) < len(aggregations):
        assert time.monotonic() < deadline, tasks
        time.sleep(0.5)
    assert len(tasks) == len(aggregations) and all(r["state"] == "COMPLETED" for r in tasks), tasks
    assert len({r["id"].split("_")[0] for r in tasks}) == 1  # one job array
    for aggregation in aggregations:
        tree = Hierarchy.load(tmp_path / "out" / aggregation / "tree.json")
        expected = l2h(logits, aggregation=aggregation)
        assert np.array_equal(tree.children, expected.children), aggregation
