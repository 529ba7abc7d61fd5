"""No run loses a valid result: bad inputs and faults on a finished pipeline run, through the real `snakemake`.

A small run (digits, raw pixels: L2H-kmeans and Ward agglomerative; nine jobs) is finished once in a fixed
directory and kept as a pristine copy. Every case starts from that copy in the same directory (so that paths
in provenance records are the same), hashes every file under results/, applies one bad input or fault, runs
the command, and checks:

* bad inputs: exit status non-zero, exactly one ``l2h: error:`` line, no job started, and every file
  byte-identical;
* missing or corrupt intermediates: the plain command ends with the full set of outputs byte-identical
  to the untouched run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import planned_jobs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RUN = "backbone=pixels clusterer=kmeans baseline=agglomerative"
KMEANS = "results/digits/pixels/kmeans_k10_s0"
TREE = f"{KMEANS}/l2h_sum_of_cluster_means_lowest_score"
FEATURES = "results/features/digits/pixels"
AGG = "results/digits/pixels/baseline_agglomerative_k10_s0"


def snakemake(
    workdir: Path, *args: str, overrides: str | None = RUN, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    config = ["--config", f"overrides={overrides}"] if overrides is not None else []
    return subprocess.run(
        [str(SNAKEMAKE), "--directory", str(workdir), "--cores", "2", *args, *config],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=workdir,
    )


def hashes(workdir: Path) -> dict[str, str]:
    """SHA-256 of every file under results/ except the logs (which hold timings) and the quarantine."""
    root = workdir / "results"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in ("logs", ".quarantine")
    }


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("l2h: error:")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(workdir, pristine copy, reference hashes): the finished small run, in a directory every case reuses."""
    base = tmp_path_factory.mktemp("safety")
    workdir = base / "run"
    workdir.mkdir()
    shutil.copy2(REPO / "Snakefile", workdir / "Snakefile")
    for folder in ("workflow", "conf"):
        shutil.copytree(REPO / folder, workdir / folder, ignore=shutil.ignore_patterns("__pycache__"))
    check(snakemake(workdir))
    pristine = base / "pristine"
    shutil.copytree(workdir, pristine, symlinks=True)
    return workdir, pristine, hashes(workdir)


@pytest.fixture
def run_dir(site):
    """The finished run, restored from the pristine copy (same path, same mtimes, same Snakemake metadata)."""
    workdir, pristine, reference = site
    shutil.rmtree(workdir)
    shutil.copytree(pristine, workdir, symlinks=True)
    assert hashes(workdir) == reference
    return workdir


BAD_OVERRIDES = [
    ("+clusterer.n_inti=20", "clusterer.n_inti: unknown key (did you mean 'n_init'?)"),
    ("++clusterer.foo=1", "clusterer.foo: unknown key"),
    ("clusterer.n_inti=3", "clusterer.n_inti: unknown key"),
    ("~clusterer.n_init", "clusterer.n_init: missing"),
    ("l2h.input=foo", "l2h.input = 'foo': must be one of logits, probs"),
    ("seed=4294967296", "seed = 4294967296: must be an integer in 0..4294967295"),
    ("seed=12345678901234567890", "seed = 12345678901234567890: must be an integer in 0..4294967295"),
    ("clusterer.k=100000", "cannot make more clusters than the 1257 points of digits's train split"),
    ("clusterer.k=1", "K must be an integer >= 2"),
    ("clusterer.k=5,abc", "clusterer.k = 'abc': K must be an integer >= 2"),
    ("clusterer.k='5", "cannot split into overrides"),
    ("dataset.offline=maybe", "dataset.offline = 'maybe': must be true or false"),
    ("dataset.sizes.test=-1", "dataset.sizes.test = -1: must be >= 1"),
    ("l2h.block_rows=-1", "l2h.block_rows = -1: must be >= 1"),
    ("l2h.aggregation=bogus", "l2h.aggregation = 'bogus': must be one of"),
    ("dataset=nope", "dataset 'nope': unknown"),
    ("backbone.image_size=0", "backbone.image_size = 0: must be >= 1"),
    ("clusterer.n_init=0", "clusterer.n_init = 0: must be >= 1"),
    ("clusterer.tol=abc", "clusterer.tol = 'abc': must be a number"),
    ("clusterer.normalize=3", "clusterer.normalize = 3: must be true or false"),
    ("clusterer.temperature=-1", "clusterer.temperature = -1: must be 'auto' or a positive number"),
    ("baseline.linkage=single", "baseline.linkage = 'single': must be one of ward, average"),
    ("baseline.memory_limit_gib=-5", "baseline.memory_limit_gib = -5: must be > 0"),
    ("paths.results=''", "paths.results = '': must not be empty"),
    ("hydra.run.dir=x", "is not allowed: the pipeline sets hydra"),
    ("nogroup.key=1", "does not name a config group"),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_line_and_touches_nothing(run_dir, override, message):
    before = hashes(run_dir)
    proc = snakemake(run_dir, overrides=f"{RUN} {override}")
    lines = error_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "Building DAG" not in proc.stderr  # refused before the DAG
    assert hashes(run_dir) == before


@pytest.mark.parametrize(
    "config, message",
    [
        (["experiment=nope"], "experiment 'nope': unknown"),
        (["tag=a/b"], "tag 'a/b': use letters"),
        (["experimnt=demo"], "--config.experimnt: unknown key (did you mean 'experiment'?)"),
    ],
)
def test_bad_config_key_is_one_line_and_touches_nothing(run_dir, config, message):
    before = hashes(run_dir)
    proc = subprocess.run(
        [str(SNAKEMAKE), "--directory", str(run_dir), "--cores", "2", "--config", *config],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = error_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    assert hashes(run_dir) == before


def test_a_second_concurrent_run_is_refused_in_one_line(run_dir):
    """While another snakemake works in the directory (it holds the lock), a second one says so, and does not
    report the first one's running jobs as incomplete."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from l2h.stages import session; "
                "session.hold_lock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
            ),
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = hashes(run_dir)
        proc = snakemake(run_dir, overrides=f"{RUN} clusterer.n_init=3")
        lines = error_lines(proc)
        assert proc.returncode != 0 and len(lines) == 1 and "another snakemake run is working in" in lines[0]
        assert f"pid {holder.pid}" in lines[0] and "Incomplete" not in proc.stderr
        assert hashes(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    check(snakemake(run_dir, "-n"))  # the lock goes with the process that held it


FAIL_HOOK = """
import os, sys
if "l2h.stages.train_clusterer" in sys.orig_argv:
    import l2h.clusterers
    def refuse(cfg):
        from l2h.errors import InputError
        raise InputError("simulated failure of the fit")
    l2h.clusterers.build_clusterer = refuse
"""


def test_a_failing_job_keeps_the_previous_outputs(run_dir, tmp_path):
    """A result-changing edit re-runs k-means; the new fit fails: its previous outputs are restored, nothing
    downstream runs, and the failure is repeated in one line on the console."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAIL_HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    before = hashes(run_dir)
    proc = snakemake(run_dir, overrides=f"{RUN} clusterer.n_init=3", env=env)
    assert proc.returncode != 0
    assert [line for line in error_lines(proc) if "simulated failure of the fit" in line], proc.stderr[-3000:]
    assert hashes(run_dir) == before
    assert not list((run_dir / KMEANS).glob(".staging-*"))


def _truncate(path: Path, size: int = 1000) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


FAULTS = {
    "rm logits": lambda w: (w / KMEANS / "logits.npy").unlink(),
    "rm model": lambda w: (w / KMEANS / "model.npz").unlink(),
    "rm tree.json": lambda w: (w / TREE / "tree.json").unlink(),
    "rm metrics": lambda w: (w / TREE / "metrics.json").unlink(),
    "rm test features": lambda w: (w / FEATURES / "test.npy").unlink(),
    "rm a provenance record": lambda w: (w / TREE / "build_tree.provenance.json").unlink(),
    "rm labels": lambda w: (w / "results/data/digits/labels.npz").unlink(),
    "truncate logits": lambda w: _truncate(w / KMEANS / "logits.npy"),
    "truncate test features": lambda w: _truncate(w / FEATURES / "test.npy"),
    "truncate labels": lambda w: _truncate(w / "results/data/digits/labels.npz", 100),
    "garbage metrics": lambda w: (w / AGG / "metrics.json").write_text("{not json"),
    "truncate a figure": lambda w: _truncate(next((w / "results/figures/demo").glob("*.png")), 100),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_missing_or_corrupt_intermediate_is_rebuilt(site, run_dir, fault):
    _, _, reference = site
    FAULTS[fault](run_dir)
    check(snakemake(run_dir))
    assert hashes(run_dir) == reference


def test_the_issues_truncate_fail_delete_sequence(site, run_dir):
    """Truncated logits, a run, the logits deleted, a run again: everything is back, byte-identical."""
    _, _, reference = site
    _truncate(run_dir / KMEANS / "logits.npy")
    check(snakemake(run_dir))
    (run_dir / KMEANS / "logits.npy").unlink()
    check(snakemake(run_dir))
    assert hashes(run_dir) == reference


def test_same_size_corruption_is_refused_then_rebuilt(site, run_dir):
    """A flipped byte (same size) in the features: the job that reads them refuses in one line, moves them to
    the quarantine and keeps its previous outputs; the next plain command rebuilds everything identically."""
    _, _, reference = site
    _flip_byte(run_dir / FEATURES / "test.npy")
    corrupt = hashes(run_dir)
    proc = snakemake(run_dir, overrides=f"{RUN} clusterer.n_init=3")  # re-runs the job that reads them
    lines = [line for line in error_lines(proc) if "test.npy: corrupt" in line]
    assert proc.returncode != 0 and lines and "run the same command again to rebuild it" in lines[0], proc.stderr
    after = hashes(run_dir)
    assert after == {name: digest for name, digest in corrupt.items() if name != "features/digits/pixels/test.npy"}
    assert list((run_dir / "results/.quarantine").rglob("test.npy"))
    check(snakemake(run_dir))
    assert hashes(run_dir) == reference


@pytest.mark.parametrize(
    "override",
    [
        "dataset.offline=true",
        "l2h.block_rows=1000",
        "clusterer.block_rows=7",
        "baseline.memory_limit_gib=8",
        "backbone.batch_size=3",
        "backbone.num_workers=2",
        "paths.data=elsewhere",
    ],
)
def test_runtime_knobs_schedule_nothing(run_dir, override):
    proc = snakemake(run_dir, "--summary", overrides=f"{RUN} {override}")
    check(proc)
    assert planned_jobs(proc.stdout) == {}, proc.stdout[-3000:]


def test_a_result_changing_key_reruns_what_depends_on_it(run_dir):
    proc = snakemake(run_dir, "--summary", overrides=f"{RUN} clusterer.n_init=3")
    check(proc)
    assert planned_jobs(proc.stdout) == {"train_clusterer": 1, "build_tree": 1, "evaluate": 1, "report": 1}


def test_killed_snakemake_then_plain_command(site, run_dir):
    """Snakemake killed while a job writes (power loss): the plain command redoes nothing it can trust less than
    before — the job's previous set stays complete, and after --rerun-incomplete the set is identical."""
    _, _, reference = site
    proc = subprocess.Popen(
        [
            str(SNAKEMAKE),
            "--directory",
            str(run_dir),
            "--cores",
            "2",
            "--config",
            f"overrides={RUN} clusterer.n_init=3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    staging = run_dir / KMEANS / ".staging-train_clusterer"
    deadline = time.monotonic() + 120
    while not staging.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, 9)
    proc.wait()
    names = {p.name for p in (run_dir / KMEANS).iterdir() if p.is_file()}
    assert {"logits.npy", "model.npz", "info.json"} <= names  # the previous set is whole
    check(snakemake(run_dir, "--unlock"))
    check(snakemake(run_dir, "--rerun-incomplete"))
    assert hashes(run_dir) == reference
