"""The ``l2h`` command on the real CIFAR-100 predictions, on every input format, and on bad input."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_logits_args
from scipy.cluster.hierarchy import is_monotonic, is_valid_linkage, linkage

from l2h.cli import main
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.metrics import dendrogram_purity, nmi

# CIFAR-100 classes: fine labels are the class names in alphabetical order; the 20 superclasses
# (also alphabetical) and the fine -> coarse index map published with the dataset.
FINE_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm"
).split()
COARSE_NAMES = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things "
    "large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals "
    "non-insect_invertebrates people reptiles small_mammals trees vehicles_1 vehicles_2"
).split()
FINE_TO_COARSE = [
    4,
    1,
    14,
    8,
    0,
    6,
    7,
    7,
    18,
    3,
    3,
    14,
    9,
    18,
    7,
    11,
    3,
    9,
    7,
    11,
    6,
    11,
    5,
    10,
    7,
    6,
    13,
    15,
    3,
    15,
    0,
    11,
    1,
    10,
    12,
    14,
    16,
    9,
    11,
    5,
    5,
    19,
    8,
    8,
    15,
    13,
    14,
    17,
    18,
    10,
    16,
    4,
    17,
    4,
    2,
    0,
    17,
    4,
    18,
    17,
    10,
    3,
    2,
    12,
    12,
    16,
    12,
    1,
    9,
    19,
    2,
    10,
    0,
    1,
    16,
    12,
    9,
    13,
    15,
    13,
    16,
    19,
    2,
    4,
    6,
    19,
    5,
    5,
    8,
    19,
    18,
    1,
    2,
    15,
    6,
    0,
    17,
    8,
    14,
    13,
]

OUTPUTS = {
    "tree.json",
    "linkage.npy",
    "tree.nwk",
    "metrics.json",
    "levels.json",
    "dendrogram.png",
    "tree.html",
    "provenance.json",
    ".l2h-tree",
}
CIFAR100_SHA256 = "ab3ce671b234521fe346977df2bb1c755a2c96b1781c350cef76be0ad36e5e12"


def test_superclass_constant_is_consistent():
    assert len(FINE_NAMES) == 100 and FINE_NAMES == sorted(FINE_NAMES)
    assert len(COARSE_NAMES) == 20 and COARSE_NAMES == sorted(COARSE_NAMES)
    assert np.bincount(FINE_TO_COARSE).tolist() == [5] * 20
    members = {COARSE_NAMES[c]: [f for f, cc in zip(FINE_NAMES, FINE_TO_COARSE) if cc == c] for c in range(20)}
    assert members["people"] == ["baby", "boy", "girl", "man", "woman"]
    assert members["trees"] == ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"]
    assert members["vehicles_2"] == ["lawn_mower", "rocket", "streetcar", "tank", "tractor"]
    assert members["fish"] == ["aquarium_fish", "flatfish", "ray", "shark", "trout"]


@pytest.fixture(scope="module")
def cifar100(shared_data, tmp_path_factory):
    """Inputs for the CIFAR-100 command (names, coarse labels) and the argv that uses them."""
    folder = tmp_path_factory.mktemp("cifar100")
    npz = shared_data / "logits" / "wideresnet-16-4-cifar-100.npz"
    with np.load(npz) as data:
        probs, fine = data["predictions"], data["ground_truth"]
    (folder / "names.txt").write_text("\n".join(FINE_NAMES) + "\n")
    np.save(folder / "coarse.npy", np.asarray(FINE_TO_COARSE)[fine])
    argv = [
        "tree",
        str(npz),
        *shared_logits_args(npz),
        "--coarse",
        str(folder / "coarse.npy"),
        "--names",
        str(folder / "names.txt"),
    ]
    return {"folder": folder, "npz": npz, "probs": probs, "fine": fine, "argv": argv}


@pytest.fixture(scope="module")
def cifar100_run(cifar100):
    out = cifar100["folder"] / "out"
    assert main([*cifar100["argv"], "--out", str(out), "--quiet"]) == 0
    return out


def test_cifar100_writes_all_outputs(cifar100, cifar100_run):
    out = cifar100_run
    assert {p.name for p in out.iterdir()} == OUTPUTS
    tree = Hierarchy.load(out / "tree.json")
    assert tree.k == 100 and tree.names == FINE_NAMES
    assert tree.info["source"]["sha256"] == CIFAR100_SHA256
    z = np.load(out / "linkage.npy")
    assert is_valid_linkage(z) and is_monotonic(z) and np.array_equal(z, tree.to_linkage())
    newick = (out / "tree.nwk").read_text()
    assert newick.strip().endswith(";") and all(name in newick for name in ("apple", "willow_tree"))
    assert (out / "dendrogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = json.loads((out / "metrics.json").read_text())
    leaves = cifar100["probs"].argmax(1)
    accuracy = float((leaves == cifar100["fine"]).mean())
    assert accuracy == pytest.approx(0.7543)
    assert accuracy <= metrics["acc"] <= metrics["lp"] <= 1
    assert 0.7 < metrics["nmi"] < 1 and 0.4 < metrics["ari"] < 1
    # the tree's DP beats random trees over the same leaves: their DP is 0.466 +- 0.001 (within-leaf
    # pairs, about half of all same-class pairs, score the same in every tree); L2H's is about 0.50
    rng = np.random.default_rng(0)
    random_dp = max(
        dendrogram_purity(linkage(rng.normal(size=(100, 4)), "average"), leaves, cifar100["fine"]) for _ in range(20)
    )
    assert metrics["dp"] > random_dp + 0.02
    assert metrics["coarse_groups"] == 20

    record = json.loads((out / "provenance.json").read_text())
    assert record["argv"][:2] == ["l2h", "tree"] and "--quiet" in record["argv"]
    assert record["inputs"][str(cifar100["npz"])] == CIFAR100_SHA256
    assert record["config"]["input"] == "probs" and "numpy" in record["packages"]


def test_cifar100_cut_matches_superclasses_far_above_chance(cifar100, cifar100_run):
    metrics = json.loads((cifar100_run / "metrics.json").read_text())
    tree = Hierarchy.load(cifar100_run / "tree.json")
    groups = tree.cut(20)[cifar100["probs"].argmax(1)]
    coarse = np.asarray(FINE_TO_COARSE)[cifar100["fine"]]
    assert metrics["coarse_nmi"] == pytest.approx(nmi(coarse, groups), abs=1e-12)
    rng = np.random.default_rng(0)
    chance = [nmi(rng.permutation(FINE_TO_COARSE)[cifar100["fine"]], groups) for _ in range(100)]
    assert metrics["coarse_nmi"] > max(chance)
    assert metrics["coarse_nmi"] > 0.4 > max(chance)  # observed: 0.61 vs at most 0.37


def test_installed_executable_reproduces_the_run(cifar100, cifar100_run, tmp_path):
    exe = Path(sys.executable).parent / "l2h"
    assert exe.is_file(), f"console script not installed at {exe}"
    out = tmp_path / "out"
    done = subprocess.run(
        [str(exe), *cifar100["argv"], "--out", str(out), "--no-plot"],  # no matplotlib: faster
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("l2h tree: N = 10,000 points, K = 100 clusters")
    assert lines[1].startswith("top-level split: ") and "metrics: nmi 0.7" in lines[2]
    assert lines[3].startswith("coarse (20 groups): nmi ")
    for name in ("tree.json", "linkage.npy", "tree.nwk", "metrics.json"):
        assert (out / name).read_bytes() == (cifar100_run / name).read_bytes(), name
    assert not (out / "dendrogram.png").exists()
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == "l2h 0.1.0"


def test_cifar100_bootstrap_command(cifar100, tmp_path, capsys):
    """The issue's command: `l2h tree <cifar-100 npz> --key predictions --input probs --labels ... --bootstrap
    100 --out DIR` writes the support of every merge to tree.json and tree.nwk (read by dendropy) and marks
    it on the dendrogram; the tree is the one without --bootstrap."""
    import dendropy

    out = tmp_path / "boot"
    assert main([*cifar100["argv"], "--bootstrap", "100", "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "bootstrap (100 resamples): median support " in summary
    tree = Hierarchy.load(out / "tree.json")
    plain = main([*cifar100["argv"], "--quiet", "--no-plot", "--out", str(tmp_path / "plain")])
    assert plain == 0 and Hierarchy.load(tmp_path / "plain" / "tree.json").merges == tree.merges
    assert tree.support.shape == (99,) and tree.support[-1] == 1.0
    assert tree.info["bootstrap"] == {"resamples": 100, "seed": 0, "resamples_with_empty_clusters": 0}
    assert 0.05 < np.median(tree.support) < 0.95 and np.allclose(tree.support * 100, np.round(tree.support * 100))
    parsed = dendropy.Tree.get(path=str(out / "tree.nwk"), schema="newick", preserve_underscores=True)
    labels = {
        frozenset(leaf.taxon.label for leaf in node.leaf_iter()): float(node.label) for node in parsed.internal_nodes()
    }
    for t in range(99):
        assert labels[frozenset(FINE_NAMES[i] for i in tree.members(100 + t))] == tree.support[t]
    record = json.loads((out / "provenance.json").read_text())
    assert record["config"]["bootstrap"] == 100 and record["config"]["seed"] == 0
    assert (out / "dendrogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_is_seeded(tmp_path):
    x, _ = _small_logits(n=200, k=8, seed=4)
    np.save(tmp_path / "x.npy", x + np.random.default_rng(5).normal(size=x.shape) * 3)
    trees = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert (
            main(
                [
                    "tree",
                    str(tmp_path / "x.npy"),
                    "--bootstrap",
                    "30",
                    "--seed",
                    seed,
                    "--no-plot",
                    "--quiet",
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
        trees[name] = (tmp_path / name / "tree.json").read_bytes()
    assert trees["a"] == trees["b"] and trees["a"] != trees["c"]
    for bad in (["--bootstrap", "-1"], ["--bootstrap", "3", "--seed", "-2"]):
        assert main(["tree", str(tmp_path / "x.npy"), *bad, "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_the_command_imports_only_what_it_uses(tmp_path):
    """`l2h --help` needs no numpy; a quiet run without labels or figure imports neither scipy.optimize
    (metrics) nor matplotlib (figure) nor tqdm (progress bars)."""
    np.save(tmp_path / "x.npy", _small_logits()[0])
    code = (
        "import sys; from l2h.cli import main; {call}; "
        "print(sorted(m for m in ('numpy', 'scipy.optimize', 'matplotlib', 'tqdm') if m in sys.modules))"
    )
    help_run = subprocess.run(
        [sys.executable, "-c", code.format(call="import l2h.cli")], capture_output=True, text=True, timeout=120
    )
    assert help_run.returncode == 0 and help_run.stdout.strip() == "[]", help_run.stderr
    tree_run = subprocess.run(
        [
            sys.executable,
            "-c",
            code.format(
                call=f"main(['tree', {str(tmp_path / 'x.npy')!r}, '--no-plot', '--quiet', "
                f"'--out', {str(tmp_path / 'o')!r}])"
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tree_run.returncode == 0 and tree_run.stdout.strip() == "['numpy']", tree_run.stderr


def test_dendrogram_marks_support(tmp_path):
    """With support, each merge gets a dot coloured by it (viridis: 1.0 is yellow) and a colour bar."""
    from matplotlib.image import imread

    from l2h.report.figures import plot_dendrogram

    tree = Hierarchy.from_linkage(linkage(np.random.default_rng(6).normal(size=(30, 3)), "average"))
    plot_dendrogram(tree, tmp_path / "plain.png")
    tree.support = np.ones(29)
    plot_dendrogram(tree, tmp_path / "support.png")
    plain, marked = (imread(tmp_path / name)[..., :3] for name in ("plain.png", "support.png"))
    yellow = np.array([253, 231, 37]) / 255  # viridis(1.0)
    near = lambda image: int((np.abs(image - yellow).max(axis=-1) < 0.08).sum())  # noqa: E731
    assert near(plain) == 0 and near(marked) > 29 * 10


def test_dendrogram_figure_scales_with_k(tmp_path):
    from matplotlib.image import imread

    from l2h.report.figures import plot_dendrogram

    rng = np.random.default_rng(3)
    sizes = {}
    for k in (5, 60, 200):
        tree = Hierarchy.from_linkage(linkage(rng.normal(size=(k, 3)), "average"))
        names = [f"class_{i}" for i in range(k)]
        plot_dendrogram(tree, tmp_path / f"d{k}.png", names=names)
        sizes[k] = imread(tmp_path / f"d{k}.png").shape[:2]
    assert sizes[5][0] < sizes[60][0]  # taller with more labelled leaves
    assert sizes[200] == (800, 1000)  # K > 150: fixed size, no leaf labels
    with pytest.raises(InputError, match="3 leaf names for 5 leaves"):
        plot_dendrogram(
            Hierarchy.from_linkage(linkage(rng.normal(size=(5, 2)))), tmp_path / "x.png", names=["a", "b", "c"]
        )
    assert not (tmp_path / "x.png").exists()


def _small_logits(n=300, k=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, k)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, k))).astype(np.float64), y


def test_every_input_format_gives_the_same_tree(tmp_path):
    x, y = _small_logits()
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", logits=x, y=y)
    torch.save({"logits": torch.from_numpy(x)}, tmp_path / "x.pt")
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", fmt="%.17g", header="a,b,c,d,e,f", comments="")
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "names.json").write_text(json.dumps([f"cluster {i}" for i in range(6)]))
    runs = {
        "npy": [str(tmp_path / "x.npy")],
        "npz": [str(tmp_path / "x.npz"), "--key", "logits"],
        "pt": [str(tmp_path / "x.pt"), "--key", "logits"],
        "csv": [str(tmp_path / "x.csv")],
    }
    for fmt, args in runs.items():
        assert (
            main(
                [
                    "tree",
                    *args,
                    "--labels",
                    str(tmp_path / "y.npy"),
                    "--names",
                    str(tmp_path / "names.json"),
                    "--no-plot",
                    "--quiet",
                    "--out",
                    str(tmp_path / fmt),
                ]
            )
            == 0
        )
        assert {p.name for p in (tmp_path / fmt).iterdir()} == OUTPUTS - {"dendrogram.png", "tree.html"}
    for name in ("linkage.npy", "tree.nwk", "metrics.json"):
        digests = {hashlib.sha256((tmp_path / fmt / name).read_bytes()).hexdigest() for fmt in runs}
        assert len(digests) == 1, name
    assert "'cluster 0'" in (tmp_path / "npy" / "tree.nwk").read_text()


def test_rerun_into_existing_folder_replaces_only_its_outputs(tmp_path, capsys):
    x, y = _small_logits(seed=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "out"
    assert main(["tree", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "l2h tree: N = 300 points, K = 6 clusters" in summary and "metrics: nmi " in summary
    (out / "notes.txt").write_text("mine")
    assert (
        main(["tree", str(tmp_path / "x.npy"), "--aggregation", "sum_all", "--no-plot", "--quiet", "--out", str(out)])
        == 0
    )
    assert capsys.readouterr().out == ""
    assert {p.name for p in out.iterdir()} == {
        "tree.json",
        "linkage.npy",
        "tree.nwk",
        "levels.json",
        "provenance.json",
        ".l2h-tree",
        "notes.txt",
    }
    assert (out / "notes.txt").read_text() == "mine"
    assert Hierarchy.load(out / "tree.json").info["aggregation"] == "sum_all"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cache_gib_switches_the_exp_cache_and_keeps_the_merges(tmp_path):
    x, _ = _small_logits(seed=2)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    trees = {}
    for gib in ("2", "0"):
        out = tmp_path / f"out{gib}"
        assert (
            main(["tree", str(tmp_path / "x.npy"), "--cache-gib", gib, "--no-plot", "--quiet", "--out", str(out)]) == 0
        )
        trees[gib] = Hierarchy.load(out / "tree.json")
    assert trees["2"].info["affinity_bound"] > 0 and trees["0"].info["affinity_bound"] == 0.0
    assert trees["2"].merges == trees["0"].merges
    assert main(["tree", str(tmp_path / "x.npy"), "--cache-gib", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["tree", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--out",
        "--input",
        "--key",
        "--labels",
        "--labels-key",
        "--coarse",
        "--coarse-key",
        "--aggregation",
        "--strategy",
        "--names",
        "--no-plot",
        "--quiet",
        "sum_of_cluster_means",
        "all_pairs",
        "metrics.json",
        "provenance.json",
    ):
        assert option in text, option
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "l2h 0.1.0"
    with pytest.raises(SystemExit) as stop:
        main(["tree", "x.npy", "--out", "o", "--labels-key", "y"])
    assert stop.value.code == 2 and "--labels-key needs --labels" in capsys.readouterr().err


def _write(path: Path, obj) -> None:
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    elif path.suffix == ".npz":
        np.savez(path, **obj)
    elif path.suffix == ".txt":
        path.write_text(obj)
    else:
        np.save(path, obj)


GOOD = _small_logits(n=40, k=4)[0]
PROBS = np.full((40, 4), 0.25)
BAD_CASES = {  # name: (files to create, extra argv, file named in the error, words in the problem)
    "nan": ({"x.npy": np.where(np.eye(40, 4) > 0, np.nan, GOOD)}, [], "x.npy", "NaN"),
    "inf": ({"x.npy": np.where(np.eye(40, 4) > 0, np.inf, GOOD)}, [], "x.npy", "inf"),
    "rank": ({"x.npy": GOOD[:, 0]}, [], "x.npy", "2-D"),
    "one_cluster": ({"x.npy": GOOD[:, :1]}, [], "x.npy", "K = 1"),
    "no_points": ({"x.npy": GOOD[:0]}, [], "x.npy", "N == 0"),
    "label_count": (
        {"x.npy": GOOD, "y.npy": np.zeros(39, int)},
        ["--labels", "y.npy"],
        "y.npy",
        "39 labels given for 40 points",
    ),
    "label_values": ({"x.npy": GOOD, "y.npy": np.full(40, 0.5)}, ["--labels", "y.npy"], "y.npy", "integer"),
    "labels_all_distinct": (
        {"x.npy": GOOD, "y.npy": np.arange(40)},
        ["--labels", "y.npy"],
        "y.npy",
        "no two points share a class",
    ),
    "negative_labels": ({"x.npy": GOOD, "y.npy": -np.ones(40, int)}, ["--labels", "y.npy"], "y.npy", "negative"),
    "coarse_count": (
        {"x.npy": GOOD, "y.npy": np.zeros(40, int), "c.npy": np.zeros(41, int)},
        ["--labels", "y.npy", "--coarse", "c.npy"],
        "c.npy",
        "41 labels given for 40 points",
    ),
    "probs_negative": ({"p.npy": PROBS - np.eye(40, 4) * 0.5}, ["--input", "probs"], "p.npy", "negative"),
    "probs_not_normalised": ({"p.npy": PROBS * 1.1}, ["--input", "probs"], "p.npy", "sums to 1.1"),
    "unreadable": ({"x.npy": b"\x93NUMPY garbage"}, [], "x.npy", "cannot read"),
    "missing_file": ({}, [], "x.npy", "no such file"),
    "unknown_suffix": ({"x.txt": "1,2\n3,4\n"}, [], "x.txt", "unsupported file type"),
    "missing_key": ({"x.npz": {"logits": GOOD}}, ["--key", "scores"], "x.npz", "no array named 'scores'"),
    "ambiguous_npz": ({"x.npz": {"a": GOOD, "b": GOOD}}, [], "x.npz", "choose one with a key: a, b"),
    "names_count": (
        {"x.npy": GOOD, "names.txt": "a\nb\nc\n"},
        ["--names", "names.txt"],
        "names.txt",
        "3 names given for K = 4",
    ),
    "out_is_file": ({"x.npy": GOOD, "out": b"a file"}, [], "out", "not a directory"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    files, extra, culprit, problem = BAD_CASES[case]
    monkeypatch.chdir(tmp_path)
    for name, obj in files.items():
        _write(tmp_path / name, obj)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    logits = next(iter(files), "x.npy")  # the scores file is listed first
    out = "out" if case == "out_is_file" else "results/run"
    assert main(["tree", logits, *extra, "--out", out]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"l2h: error: {culprit}: "), lines[0]
    assert problem in lines[0], lines[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written


def test_the_command_imports_neither_torch_nor_sklearn_nor_clustpy(tmp_path, shared_data):
    """`l2h tree` with labels, figure and page, then `l2h compare`: none of the heavy packages is imported."""
    import subprocess
    import sys

    logits = shared_data / "logits" / "wideresnet-16-4-cifar-10.npz"
    mapping = tmp_path / "coarse.csv"
    mapping.write_text("class,coarse\n" + "".join(f"{i},{'v' if i in (0, 1, 8, 9) else 'a'}\n" for i in range(10)))
    script = (
        f"import sys; from l2h.cli import main; "
        f"assert main(['tree', {str(logits)!r}, '--key', 'predictions', '--input', 'probs', '--labels', "
        f"{str(logits)!r}, '--labels-key', 'ground_truth', '--out', {str(tmp_path / 'out')!r}, '--quiet']) == 0; "
        f"assert main(['compare', {str(tmp_path / 'out')!r}, '--reference', {str(mapping)!r}, '--quiet', "
        f"'--n-random', '5']) == 0; "
        f"print(sorted({{'torch', 'sklearn', 'clustpy'}} & {{m.split('.')[0] for m in sys.modules}}))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
