"""Hierarchy: structure, scipy linkage, cut, Newick, JSON, files, point-level scale."""

import json
import tracemalloc

import numpy as np
import pytest
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import pdist, squareform

from l2h.errors import InputError
from l2h.hierarchy import (
    MAX_JSON_MEMBERS,
    Hierarchy,
    check_children,
    newick_label,
    parse_newick,
    relabel_by_first_appearance,
)


def random_children(k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random merge order over k leaves (O(k))."""
    active = list(range(k))
    children = np.empty((k - 1, 2), dtype=np.int64)
    for t in range(k - 1):
        pair = []
        for _ in range(2):
            i = int(rng.integers(len(active)))
            pair.append(active[i])
            active[i] = active[-1]
            active.pop()
        children[t] = pair
        active.append(k + t)
    return children


def chain_children(k: int) -> np.ndarray:
    """The deepest tree: leaf t+1 joins the group of leaves 0..t (depth k-1)."""
    prev = np.concatenate([[0], np.arange(k, 2 * k - 2)])
    return np.column_stack([np.arange(1, k), prev])


def same_partition(a, b) -> bool:
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ----------------------------------------------------------------------------- structure
def test_merges_members_and_order():
    # ((0,),(2,)) -> 4; ((1,),(3,)) -> 5; ((0,2),(1,3)) -> 6
    tree = Hierarchy([[0, 2], [1, 3], [4, 5]], scores=[[0.1, 2.0], [0.2, 1.0], [0.5, 0.7]])
    assert tree.k == 4
    assert tree.merges == [((0,), (2,)), ((1,), (3,)), ((0, 2), (1, 3))]
    assert tree.members(5).tolist() == [1, 3]
    assert tree.leaf_order().tolist() == [0, 2, 1, 3]
    assert tree.sizes.tolist() == [1, 1, 1, 1, 2, 2, 4]
    assert tree.total_members() == 8


@pytest.mark.parametrize(
    "children, message",
    [
        ([[0, 1, 2]], "shape"),
        (np.zeros((0, 2), dtype=int), "shape"),
        ([[0, 1], [0, 2]], "node 0 is merged 2 times"),
        ([[0, 3], [1, 2]], "step 1 merges"),
        ([[0, 1], [2, 5]], "step 2 merges"),
        ([[0, -1], [2, 3]], "step 1 merges"),
        ([[0.5, 1]], "integer node ids"),
    ],
)
def test_invalid_children(children, message):
    with pytest.raises(InputError, match=message):
        Hierarchy(children)


def test_invalid_scores_and_names():
    with pytest.raises(InputError, match="scores must have K-1"):
        Hierarchy([[0, 1], [2, 3]], scores=[1.0])
    with pytest.raises(InputError, match="3 names given for 2 leaves"):
        Hierarchy([[0, 1]], names=["a", "b", "c"])


# ----------------------------------------------------------------------------- scipy
@pytest.mark.parametrize("seed", range(5))
def test_linkage_is_valid_and_usable_by_scipy(seed):
    rng = np.random.default_rng(seed)
    tree = Hierarchy(random_children(int(rng.integers(2, 60)), rng))
    Z = tree.to_linkage()
    assert sch.is_valid_linkage(Z) and sch.is_monotonic(Z)
    assert Z[:, 2].tolist() == list(range(1, tree.k))
    assert np.array_equal(Z[:, 3], tree.sizes[tree.k :])
    d = sch.dendrogram(Z, no_plot=True)
    assert sorted(d["leaves"]) == list(range(tree.k))
    coph = sch.cophenet(Z)
    # cophenetic distance = step of the merge that joins two leaves: the last merge for a top split
    left, right = tree.merges[-1]
    i, j = min(left[0], right[0]), max(left[0], right[0])
    k = tree.k
    assert coph[k * i + j - ((i + 2) * (i + 1)) // 2] == k - 1
    assert sch.fcluster(Z, 1, "maxclust").tolist() == [1] * k


def test_from_linkage_ward_keeps_order_and_heights():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 3))
    Z = sch.linkage(points, "ward")
    tree = Hierarchy.from_linkage(Z, info={"method": "ward"})
    assert np.array_equal(tree.children, Z[:, :2].astype(np.int64))
    assert tree.info["linkage_heights"] == Z[:, 2].tolist() and tree.info["method"] == "ward"
    out = tree.to_linkage()
    assert np.array_equal(out[:, [0, 1, 3]], Z[:, [0, 1, 3]])
    for n in (2, 5, 17):
        assert same_partition(tree.cut(n), sch.fcluster(Z, n, "maxclust"))


def test_from_linkage_rejects_invalid():
    with pytest.raises(InputError, match="linkage"):
        Hierarchy.from_linkage(np.array([[0.0, 1.0, 1.0, 3.0]]))
    with pytest.raises(InputError, match="linkage"):
        Hierarchy.from_linkage(np.zeros((2, 3)))


def _trees_for_cut(rng):
    for _ in range(30):
        yield Hierarchy(random_children(int(rng.integers(2, 120)), rng))
    for _ in range(10):  # real linkages with many tied heights (duplicated integer points)
        points = rng.integers(0, 3, size=(int(rng.integers(5, 150)), 2)).astype(float)
        method = str(rng.choice(["single", "complete", "average", "ward"]))
        yield Hierarchy.from_linkage(sch.linkage(points, method))
    yield Hierarchy(chain_children(50))


def test_cut_matches_fcluster_maxclust():
    rng = np.random.default_rng(1)
    for tree in _trees_for_cut(rng):
        Z = tree.to_linkage()
        for n in sorted({1, 2, 3, tree.k // 2 + 1, tree.k - 1, tree.k} - {0}):
            labels = tree.cut(n)
            assert labels.dtype == np.int64 and len(set(labels.tolist())) == n
            assert labels[0] == 0 and labels.max() == n - 1
            assert same_partition(labels, sch.fcluster(Z, n, "maxclust"))


def test_cut_bounds():
    tree = Hierarchy([[0, 1], [2, 3]])
    with pytest.raises(InputError, match="n_groups must be in 1..3"):
        tree.cut(0)
    with pytest.raises(InputError):
        tree.cut(4)
    for bad in (2.0, 2.5, True, "2", None, np.array([2])):
        with pytest.raises(InputError, match="n_groups must be an integer in 1..3"):
            tree.cut(bad)
    assert tree.cut(np.int64(2)).tolist() == tree.cut(2).tolist() == [0, 0, 1]


def test_members_accepts_only_node_ids():
    tree = Hierarchy([[0, 1], [2, 3]])
    assert tree.members(np.int32(4)).tolist() == [2, 0, 1] and tree.members(0).tolist() == [0]
    for bad in (-1, 5, 1.0, True):
        with pytest.raises(InputError, match="members: node must be"):
            tree.members(bad)


@pytest.mark.parametrize("seed", range(4))
def test_merge_step_is_the_cophenetic_height(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 300))
    for tree in (Hierarchy(random_children(k, rng)), Hierarchy(chain_children(k))):
        i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        expected = squareform(sch.cophenet(tree.to_linkage()))
        assert np.array_equal(tree.merge_step(i, j), expected.astype(np.int64))
    with pytest.raises(InputError, match="merge_step"):
        tree.merge_step([0], [k])


# ----------------------------------------------------------------------------- Newick
NAMES = ["plain", "with space", "it's", "a(b)", "x:y", "semi;colon", "comma,", "under_score", "ünï", "[bracket]", ""]


def test_newick_format():
    tree = Hierarchy([[0, 2], [1, 3], [4, 5]])
    assert tree.to_newick() == "((0:1,2:1):2,(1:2,3:2):1);"
    assert tree.to_newick(["a", "b c", "d'e", "f"]) == "((a:1,d''e:1):2,('b c':2,f:2):1);".replace("d''e", "'d''e'")


@pytest.mark.parametrize("seed", range(10))
def test_newick_round_trip(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 200)) if seed else len(NAMES)
    tree = Hierarchy(random_children(k, rng))
    back = Hierarchy.from_newick(tree.to_newick())
    assert np.array_equal(back.children, tree.children) and back.names is None
    names = NAMES if seed == 0 else [f"class {i}'s" for i in rng.permutation(k)]
    text = tree.to_newick(names)
    named = Hierarchy.from_newick(text, names=names)
    assert np.array_equal(named.children, tree.children) and named.names == names
    # without the names list: leaves are numbered in order of appearance, labels become names
    anon = Hierarchy.from_newick(text)
    ids = [names.index(n) for n in anon.names]
    relabel = np.concatenate([ids, np.arange(k, 2 * k - 1)])
    assert np.array_equal(relabel[anon.children], tree.children)


def test_newick_foreign_text():
    text = """[a comment] ( ('A' :0.5, B:1.5)inner:1 , (C,D:0) ) root ;"""
    tree = Hierarchy.from_newick(text)
    assert tree.names == ["A", "B", "C", "D"]
    # heights: (A,B) = 1.5, (C,D) = 1 (missing length counts 1), root last
    assert tree.merges == [((2,), (3,)), ((0,), (1,)), ((0, 1), (2, 3))]


@pytest.mark.parametrize(
    "text, message",
    [
        ("((A,B),C", "incomplete"),
        ("(A,B));", "unbalanced"),
        ("(A,B,C);", "only binary"),
        ("((A,B),A);", "not unique"),
        ("((A,B),(C,));", "label|children"),
        ("(A:x,B);", "bad branch length"),
        ("(A:-1,B);", ">= 0"),
        ("('A,B);", "unterminated quoted"),
        ("(A,B); C", "after the final"),
        ("A;", "at least 2 leaves"),
    ],
)
def test_newick_errors(text, message):
    with pytest.raises(InputError, match=message):
        Hierarchy.from_newick(text)


def test_parse_newick_reads_general_trees():
    """The public reader (l2h compare reads reference trees with it): any arity, internal labels, lengths,
    quoted labels, comments; a tree deeper than Python's recursion limit."""
    root = parse_newick("[rooted] (('a b':1.5,c_d,e)inner:2,'f''s',(g));")
    assert root["label"] is None and root["length"] is None and len(root["children"]) == 3
    inner, fs, single = root["children"]
    assert (inner["label"], inner["length"]) == ("inner", 2.0)
    assert [(leaf["label"], leaf["length"], leaf["children"]) for leaf in inner["children"]] == [
        ("a b", 1.5, []),
        ("c_d", None, []),
        ("e", None, []),
    ]
    assert fs == {"children": [], "label": "f's", "length": None}
    assert [child["label"] for child in single["children"]] == ["g"]  # a unary node is kept
    depth = 5000
    node = parse_newick("(" * depth + "x" + ",y)" * depth + ";")
    for _ in range(depth):
        assert len(node["children"]) == 2 and node["children"][1]["label"] == "y"
        node = node["children"][0]
    assert node["label"] == "x"


@pytest.mark.parametrize(
    "text, message",
    [
        ("(a,b)", "missing ';'"),
        ("(a,b);(c,d);", "after the final"),
        ("(a:,b);", "must follow a node and precede a branch length"),
        ("(a:inf,b);", "finite"),
        ("(a b,c);", "unexpected label 'b'"),
        ("(a,b) [open;", "unterminated comment"),
        (",a;", "outside parentheses"),
    ],
)
def test_parse_newick_errors(text, message):
    with pytest.raises(InputError, match=f"^newick: .*{message}"):
        parse_newick(text)


def test_newick_label_round_trips_through_the_reader():
    names = ["plain", "with space", "it's", "snake_case", "(paren)", "a,b", "x:y", "[c]", "semi;"]
    text = "(" + ",".join(newick_label(n) for n in names) + ");"
    assert [leaf["label"] for leaf in parse_newick(text)["children"]] == names
    assert newick_label("Felis-catus.2") == "Felis-catus.2"  # plain labels stay unquoted


def test_relabel_by_first_appearance():
    assert relabel_by_first_appearance(np.array([5, 5, -1, 9, -1, 5])).tolist() == [0, 0, 1, 2, 1, 0]


def test_check_children_accepts_linkage_columns_and_single_leaf():
    z = sch.linkage(np.random.default_rng(0).normal(size=(6, 2)), "average")
    assert np.array_equal(check_children(z[:, :2]), z[:, :2].astype(np.int64))
    assert check_children(np.zeros((0, 2)), min_leaves=1).shape == (0, 2)
    with pytest.raises(InputError, match=r"^tree.json: children must have shape \(K-1, 2\) with K >= 2"):
        check_children(np.zeros((0, 2)), source="tree.json")
    with pytest.raises(InputError, match="step 1 merges .0, 3., but node 3 does not exist yet"):
        check_children([[0, 3], [1, 2]])


def test_newick_names_must_match():
    with pytest.raises(InputError, match="do not match"):
        Hierarchy.from_newick("(a,b);", names=["a", "c"])


# ----------------------------------------------------------------------------- JSON and files
def l2h_like_tree():
    return Hierarchy(
        [[0, 2], [1, 3], [4, 5]],
        scores=[[0.1, 2.0], [0.2, 1.0], [0.5, 0.7]],
        names=["cat", "dog", "car", "truck"],
        info={"aggregation": "sum_all", "strategy": "lowest_score", "n_points": 10},
    )


def test_json_round_trip(tmp_path):
    tree = l2h_like_tree()
    tree.save(tmp_path / "tree.json")
    data = json.loads((tmp_path / "tree.json").read_text())
    assert data["schema_version"] == 1 and data["k"] == 4
    assert data["aggregation"] == "sum_all" and data["strategy"] == "lowest_score"
    assert data["children"] == [[0, 2], [1, 3], [4, 5]]
    assert data["merges"] == [[[0], [2]], [[1], [3]], [[0, 2], [1, 3]]]
    back = Hierarchy.load(tmp_path / "tree.json")
    assert np.array_equal(back.children, tree.children)
    assert np.array_equal(back.scores, tree.scores)
    assert back.names == tree.names and back.info == tree.info
    plain = Hierarchy.from_dict(Hierarchy([[0, 1]]).to_dict())
    assert plain.scores is None and plain.names is None and plain.to_dict()["strategy"] is None


def _corrupt(data, key, value):
    data = json.loads(json.dumps(data))
    if value is KeyError:
        del data[key]
    else:
        data[key] = value
    return data


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("schema_version", 2, "unsupported schema_version"),
        ("schema_version", KeyError, "unsupported schema_version"),
        ("children", KeyError, "missing field"),
        ("k", 5, r"children must have shape \(4, 2\)"),
        ("k", "4", "k must be an integer"),
        ("children", [[0, 2], [1, 3], [4, 4]], "merged 2 times"),
        ("children", [[0, 2], [1, 3], ["a", 5]], "malformed"),
        ("merges", [[[0], [2]], [[1], [3]], [[2, 0], [1, 3]]], "merges do not match"),
        ("names", ["a", "b"], "2 names given for 4 leaves"),
        ("names", [1, 2, 3, 4], "names must be a list of strings"),
        ("scores", [[1.0, 2.0]], "scores must have K-1"),
        ("info", [], "info must be an object"),
        ("aggregation", "mean_all", "aggregation differs"),
        ("support", [1.0, 0.5], r"support must be K-1 = 3 numbers in \[0, 1\]"),
        ("support", [1.0, 0.5, 1.5], r"support must be K-1 = 3 numbers in \[0, 1\]"),
        ("support", [1.0, 0.5, "x"], "malformed support"),
    ],
)
def test_malformed_json(tmp_path, key, value, message):
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(_corrupt(l2h_like_tree().to_dict(), key, value)))
    with pytest.raises(InputError, match=message):
        Hierarchy.load(path)


def test_support_in_json_newick_and_dendropy(tmp_path):
    """Bootstrap support: a ``support`` list in tree.json (files without it still load), internal-node
    labels in the Newick text that dendropy reads as the support of the same clades."""
    import dendropy

    rng = np.random.default_rng(4)
    k = 40
    support = rng.integers(0, 101, size=k - 1) / 100
    support[-1] = 1.0
    names = [f"class{i}" for i in range(k)]
    tree = Hierarchy(random_children(k, rng), names=names, support=support)
    paths = tree.write(tmp_path / "out")
    data = json.loads(paths["tree"].read_text())
    assert data["support"] == support.tolist()
    assert np.array_equal(Hierarchy.load(paths["tree"]).support, support)
    del data["support"]  # a tree.json from before supports
    paths["tree"].write_text(json.dumps(data))
    assert Hierarchy.load(paths["tree"]).support is None
    assert "support" not in Hierarchy([[0, 1]]).to_dict()

    text = paths["newick"].read_text()
    assert np.array_equal(Hierarchy.from_newick(text, names=names).children, tree.children)
    parsed = dendropy.Tree.get(data=text, schema="newick")
    found = {}
    for node in parsed.internal_nodes():
        found[frozenset(leaf.taxon.label for leaf in node.leaf_iter())] = float(node.label)
    assert len(found) == k - 1
    for t in range(k - 1):
        clade = frozenset(names[i] for i in tree.members(k + t))
        assert found[clade] == support[t]


def test_load_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not a valid JSON"):
        Hierarchy.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="file not found"):
        Hierarchy.load(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        Hierarchy.load(tmp_path / "list.json")


def test_write_files(tmp_path):
    tree = l2h_like_tree()
    paths = tree.write(tmp_path / "out", names=["a", "b", "c", "d"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["linkage.npy", "tree.json", "tree.nwk"]
    assert np.array_equal(np.load(paths["linkage"]), tree.to_linkage())
    assert Hierarchy.load(paths["tree"]).names == ["a", "b", "c", "d"]
    text = paths["newick"].read_text()
    assert np.array_equal(Hierarchy.from_newick(text, names=["a", "b", "c", "d"]).children, tree.children)
    tree.write(tmp_path / "default")
    assert Hierarchy.load(tmp_path / "default" / "tree.json").names == tree.names


# ----------------------------------------------------------------------------- point-level scale
def test_point_level_trees_without_quadratic_memory(tmp_path):
    """K = 20,000 leaves; the chain tree has 2e8 merge members, so anything quadratic blows up."""
    k = 20_000
    rng = np.random.default_rng(0)
    chain = Hierarchy(chain_children(k))
    tracemalloc.start()
    data = chain.to_dict()
    labels = chain.cut(1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2**20, peak
    assert "merges" not in data and chain.members(2 * k - 2).size == k
    for tree in (chain, Hierarchy(random_children(k, rng))):
        text = tree.to_newick()
        assert np.array_equal(Hierarchy.from_newick(text).children, tree.children)
        labels = tree.cut(1000)
        assert same_partition(labels, sch.fcluster(tree.to_linkage(), 1000, "maxclust"))
        assert ("merges" in tree.to_dict()) == (tree.total_members() <= MAX_JSON_MEMBERS)
    assert tree.total_members() < MAX_JSON_MEMBERS < Hierarchy(chain_children(k)).total_members()
    tree.save(tmp_path / "tree.json")
    assert np.array_equal(Hierarchy.load(tmp_path / "tree.json").children, tree.children)


def test_ward_point_level_tree():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.normal(c, 0.3, size=(400, 2)) for c in ((0, 0), (5, 0), (0, 5))])
    Z = sch.linkage(points, "ward")
    tree = Hierarchy.from_linkage(Z)
    labels = tree.cut(3)
    assert same_partition(labels, np.repeat([0, 1, 2], 400))
    c, _ = sch.cophenet(tree.to_linkage(), pdist(points))
    assert 0 < c <= 1
