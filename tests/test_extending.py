"""docs/extending.md, followed literally.

Every code block of the guide that has a ``title`` is written to that path: ``~/my-l2h/...`` into a temporary
package folder of the user's own, anything else into a temporary copy of the repository (Snakefile, workflow/,
conf/ and src/l2h, the copy's src/ standing for the repository's editable install); a block marked ``append``
is appended. Then the guide's commands of "Running them" run as written, with ``--cores 2``: the toy clusterer
and the toy stage on the digits' pixels, then all four toy components together, through the real
``snakemake``. So the guide and this test cannot drift apart.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2h import schema
from l2h.errors import InputError

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "extending.md"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
HOME = "~/my-l2h"  # the guide's folder of the user's own package
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)
L2H_RUN = "results/digits/pixels/nearest_point_k10_s0/l2h_sum_of_cluster_means_lowest_score"
STRIPES_RUN = "results/stripes/thumbnail/nearest_point_k4_s0/l2h_sum_of_cluster_means_lowest_score"


def guide_files() -> dict[str, tuple[str, bool]]:
    """{title: (code, append)} of the guide's titled code blocks."""
    out = {}
    for _, attrs, code in BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        title = re.search(r'title="([^"]+)"', attrs)
        if title:
            assert title.group(1) not in out, f"two blocks write {title.group(1)}"
            out[title.group(1)] = (code, bool(re.search(r"\bappend\b", attrs)))
    return out


def guide_commands(home: Path) -> tuple[dict[str, str], list[list[str]]]:
    """The environment the guide exports and its snakemake command lines (``~/my-l2h`` = ``home``)."""
    blocks = [
        code
        for lang, _, code in BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
        if lang == "bash" and "L2H_SCHEMA_PATH=" in code
    ]
    assert len(blocks) == 1, "the guide has one block of commands that sets L2H_SCHEMA_PATH"
    env, commands = {}, []
    for line in blocks[0].replace(HOME, str(home)).splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:])
        elif words[:1] == [".venv/bin/snakemake"]:
            commands.append(words[1:])
    assert env.keys() == {"PYTHONPATH", "L2H_SCHEMA_PATH"} and len(commands) == 2, (env, commands)
    return env, commands


def snakemake(repo: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` in ``repo`` as the guide runs it, with --cores 2."""
    args = list(args)
    args[args.index("--cores") + 1] = "2"
    return subprocess.run([str(SNAKEMAKE), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(repository copy, package folder, environment) with every file of the guide in place."""
    root = tmp_path_factory.mktemp("extending")
    repo, home = root / "repo", root / "my-l2h"
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    repo.mkdir()
    shutil.copy2(REPO / "Snakefile", repo / "Snakefile")
    for folder in ("workflow", "conf", "src/l2h"):
        shutil.copytree(REPO / folder, repo / folder, ignore=ignore)
    for title, (code, append) in guide_files().items():
        dest = home / title[len(HOME) + 1 :] if title.startswith(HOME + "/") else repo / title
        dest.parent.mkdir(parents=True, exist_ok=True)
        if append:
            assert dest.is_file(), f"{title}: the guide appends to a file the repository does not have"
            with open(dest, "a", encoding="utf-8") as fh:
                fh.write(code)
        else:
            assert not dest.exists(), f"{title}: the guide would overwrite a file of the repository"
            dest.write_text(code, encoding="utf-8")
    exported, commands = guide_commands(home)
    env = {**os.environ, **exported}
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), exported["PYTHONPATH"]])  # the repository's install
    return repo, home, env, commands


def test_the_guide_adds_an_implementation_a_schema_and_an_option_of_each_kind(project):
    repo, home, _, _ = project
    for group, name in (
        ("clusterer", "nearest_point"),
        ("baseline", "centroid_ward"),
        ("backbone", "thumbnail"),
        ("dataset", "stripes"),
    ):
        option = (repo / "conf" / group / f"{name}.yaml").read_text()
        assert f"kind: {name}" in option
        target = re.search(
            r"^target: (\S+)", (home / "my_l2h" / "schemas" / group / f"{name}.yaml").read_text(), re.M
        ).group(1)
        assert (home / (target.split(":")[0].replace(".", "/") + ".py")).is_file(), target
    assert (repo / "src/l2h/stages/count_merges.py").is_file()
    assert 'include: "workflow/rules/merges.smk"' in (repo / "Snakefile").read_text()


@pytest.fixture(scope="module")
def ran(project):
    """Both commands of the guide, in order; the table of the first is kept (the second rewrites it)."""
    repo, _, env, commands = project
    first = snakemake(repo, commands[0], env)
    check(first)
    table = (repo / "results/tables/demo.csv").read_text()
    second = snakemake(repo, commands[1], env)
    check(second)
    return repo, table


def rows(table: str) -> list[dict[str, str]]:
    return list(csv.DictReader(table.splitlines()))


@pytest.mark.slow  # two small pipeline runs (about 20 s)
def test_the_toy_clusterer_and_stage_run_through_the_pipeline(ran, project, monkeypatch):
    repo, table = ran
    (row,) = rows(table)
    assert (row["method"], row["dataset"], row["backbone"], row["k"]) == ("L2H-nearest_point", "digits", "pixels", "10")
    assert float(row["nmi"]) > 0.2  # random training points as centres still cluster the digits far above chance
    merges = json.loads((repo / L2H_RUN / "merges.json").read_text())
    tree = json.loads((repo / L2H_RUN / "tree.json").read_text())
    assert merges["merges"] == 9 and 0 < merges["singleton_g_star"] <= 9
    assert merges["singleton_g_star"] == sum(len(g) == 1 for g, _ in _merges(tree))
    assert json.loads((repo / L2H_RUN / "count_merges.provenance.json").read_text())["merges"] == 9
    # the model file names its class, which the schema folder of L2H_SCHEMA_PATH makes loadable
    monkeypatch.setenv("L2H_SCHEMA_PATH", project[2]["L2H_SCHEMA_PATH"])
    monkeypatch.syspath_prepend(str(project[1]))
    from l2h.clusterers import load_clusterer

    folder = repo / L2H_RUN.rsplit("/", 1)[0]
    model = load_clusterer(folder / "model.npz")
    assert type(model).__name__ == "NearestPoint" and model.params() == {"k": 10, "seed": 0, "scale": 10.0}
    test = np.load(repo / "results/features/digits/pixels/test.npy")
    assert np.array_equal(model.logits([test]), np.load(folder / "logits.npy"))


def _merges(tree: dict) -> list:
    from l2h.hierarchy import Hierarchy

    return Hierarchy.from_dict(tree).merges


@pytest.mark.slow  # shares the runs above
def test_all_four_toys_run_together(ran):
    repo, _ = ran
    table = rows((repo / "results/tables/demo.csv").read_text())
    assert {(r["method"], r["dataset"], r["backbone"]) for r in table} == {
        ("L2H-nearest_point", "stripes", "thumbnail"),
        ("centroid_ward", "stripes", "thumbnail"),
    }
    assert np.load(repo / "results/features/stripes/thumbnail/test.npy").shape == (200, 64)  # 8 × 8 thumbnails
    assert json.loads((repo / STRIPES_RUN / "merges.json").read_text())["merges"] == 3
    baseline = json.loads((repo / "results/stripes/thumbnail/baseline_centroid_ward_k4_s0/metrics.json").read_text())
    assert baseline["tree_leaves"] == 4 and baseline["n_points"] == 200


@pytest.mark.slow  # one more plan of the pipeline
def test_a_second_run_changes_nothing(ran, project):
    repo, _ = ran
    _, _, env, commands = project
    before = {p: p.stat().st_mtime_ns for p in (repo / "results").rglob("*") if "logs" not in p.parts}
    check(snakemake(repo, commands[1], env))
    assert {p: p.stat().st_mtime_ns for p in (repo / "results").rglob("*") if "logs" not in p.parts} == before


@pytest.mark.slow  # a dry run of the pipeline
def test_without_the_schema_folder_the_plan_stops_in_one_line(project):
    repo, _, env, commands = project
    env = {key: value for key, value in env.items() if key != "L2H_SCHEMA_PATH"}
    proc = snakemake(repo, [*commands[0], "-n"], env)
    assert proc.returncode == 1
    assert "l2h: error: clusterer.kind = 'nearest_point': must be one of" in proc.stderr


def test_schema_path_adds_kinds_and_refuses_a_second_definition(tmp_path, monkeypatch):
    extra = tmp_path / "schemas" / "clusterer"
    extra.mkdir(parents=True)
    (extra / "toy.yaml").write_text("type: object\ntarget: toy_module:Toy\nproperties: {kind: {const: toy}}\n")
    monkeypatch.setenv(schema.SCHEMA_PATH, str(tmp_path / "schemas"))
    assert "toy" in schema.kinds("clusterer") and "kmeans" in schema.kinds("clusterer")
    assert schema.schema("clusterer", "toy")["target"] == "toy_module:Toy"
    (extra / "kmeans.yaml").write_text("type: object\n")
    monkeypatch.setenv(schema.SCHEMA_PATH, f"{tmp_path / 'schemas'}{os.pathsep}")  # a new value: read again
    with pytest.raises(InputError, match="defines clusterer kind 'kmeans', which .* already defines"):
        schema.kinds("clusterer")
    monkeypatch.setenv(schema.SCHEMA_PATH, str(tmp_path / "missing"))
    with pytest.raises(InputError, match="L2H_SCHEMA_PATH: .*missing is not a folder"):
        schema.kinds("clusterer")
    monkeypatch.delenv(schema.SCHEMA_PATH)
    assert "toy" not in schema.kinds("clusterer")
