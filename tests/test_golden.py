"""Golden outputs: results that must not change unless a change means to change them.

* L2H's merges (children, G* scores, affinities) on the probabilities of the two shared logit files, for
  every aggregation and strategy, are compared exactly with ``tests/data/golden/l2h-<dataset>.json``.
  Probabilities, not logits: no ``exp`` is involved, so the results cannot depend on the CPU's maths library
  (the exactness of the logits path is checked against the literal definition in tests/test_algorithm.py).
* The demo's table ``results/tables/demo.csv``, from a fresh run of the full demo, is compared byte for byte
  with ``tests/data/golden/demo.csv`` (slow: it runs the whole demo).

A change that is meant to alter results regenerates the files (docs/testing.md):

    pytest tests/test_golden.py --update-golden

then review ``git diff tests/data/golden`` and commit the files with the change that explains them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from l2h.algorithm import AGGREGATIONS, STRATEGIES, l2h
from l2h.io import sha256_file, write_text

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
DATASETS = ("cifar-10", "cifar-100")
INFO_KEYS = ("input", "aggregation", "strategy", "n_points", "k", "empty_clusters", "compute_dtype")
UPDATE = "pytest tests/test_golden.py --update-golden"


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden"))


def cases() -> list[tuple[str, str]]:
    """(aggregation, strategy) of every stored tree."""
    return [(aggregation, strategy) for strategy in STRATEGIES for aggregation in AGGREGATIONS]


def record(tree) -> dict:
    """The stored form of a tree: its options and one row per merge step [G*, G†, score of G*, affinity]."""
    merges = [[a, b, s, g] for (a, b), (s, g) in zip(tree.children.tolist(), tree.scores.tolist())]
    return {"info": {key: tree.info[key] for key in INFO_KEYS}, "merges": merges}


def build(probs: np.ndarray, aggregation: str, strategy: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no cluster of these real models is empty
        return l2h(probs, input="probs", aggregation=aggregation, strategy=strategy)


def to_text(golden: dict) -> str:
    """JSON with one merge step per line, so that ``git diff`` shows which steps changed."""
    trees = []
    for name, tree in golden["trees"].items():
        rows = ",\n".join(f"        {json.dumps(row)}" for row in tree["merges"])
        trees.append(
            f'    {json.dumps(name)}: {{\n      "info": {json.dumps(tree["info"])},\n'
            f'      "merges": [\n{rows}\n      ]\n    }}'
        )
    head = {key: value for key, value in golden.items() if key != "trees"}
    return json.dumps(head, indent=2)[:-2] + ',\n  "trees": {\n' + ",\n".join(trees) + "\n  }\n}\n"


def first_difference(expected: dict, actual: dict) -> str:
    if expected["info"] != actual["info"]:
        return f"info {actual['info']} != stored {expected['info']}"
    for step, (old, new) in enumerate(zip(expected["merges"], actual["merges"]), start=1):
        if old != new:
            return f"step {step}: [G*, G†, score, affinity] = {new}, stored {old}"
    return f"{len(actual['merges'])} merges, stored {len(expected['merges'])}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_l2h_merges_match_the_golden_file(shared_data, dataset, update_golden):
    source = shared_data / "logits" / f"wideresnet-16-4-{dataset}.npz"
    with np.load(source) as data:
        probs = data["predictions"]
    fresh = {
        "source": f"../shared/data/logits/{source.name}",
        "key": "predictions",
        "sha256": sha256_file(source),
        "regenerate": UPDATE,
        "trees": {"/".join(case): record(build(probs, *case)) for case in cases()},
    }
    path = GOLDEN / f"l2h-{dataset}.json"
    if update_golden:
        write_text(path, to_text(fresh))
        pytest.skip(f"--update-golden: wrote {path.relative_to(REPO)}; review git diff and commit it")
    assert path.is_file(), f"{path} is missing; create it with: {UPDATE}"
    golden = json.loads(path.read_text())
    assert golden["sha256"] == fresh["sha256"], f"{source} is not the file the golden trees were made from"
    assert set(golden["trees"]) == set(fresh["trees"]), f"the stored cases differ; if meant: {UPDATE}"
    changed = {
        name: first_difference(golden["trees"][name], tree)
        for name, tree in fresh["trees"].items()
        if tree != golden["trees"][name]
    }
    assert not changed, f"L2H's results changed on {source.name} (if meant: {UPDATE}): {changed}"


@pytest.mark.slow
def test_demo_table_matches_the_golden_file(tmp_path, update_golden):
    """The full demo (`snakemake --cores 2`, the repository's Snakefile, workflow/ and conf/ in a temporary
    folder) writes exactly the stored results/tables/demo.csv."""
    shutil.copy2(REPO / "Snakefile", tmp_path / "Snakefile")
    for folder in ("workflow", "conf"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(snakemake), "-s", str(tmp_path / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    table = tmp_path / "results" / "tables" / "demo.csv"
    path = GOLDEN / "demo.csv"
    if update_golden:
        write_text(path, table.read_text())
        pytest.skip(f"--update-golden: wrote {path.relative_to(REPO)}; review git diff and commit it")
    assert path.is_file(), f"{path} is missing; create it with: {UPDATE}"
    fresh, stored = table.read_text().splitlines(), path.read_text().splitlines()
    assert fresh == stored, f"the demo's table changed (if meant: {UPDATE})"
