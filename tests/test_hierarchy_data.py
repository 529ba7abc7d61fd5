"""Ground-truth class trees: the WordNet tree over ImageNet-1k, edge-file validation, NLTK construction."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from l2h.data.imagenet import imagenet_wnids
from l2h.data.taxonomy import ClassTree, load_wordnet_edges, wordnet_tree
from l2h.errors import InputError


@pytest.fixture(scope="module")
def imagenet_tree(shared_data) -> ClassTree:
    return load_wordnet_edges(shared_data / "hierarchies" / "imagenet_isa.txt")


def test_imagenet_isa_has_the_1000_classes_as_leaves(imagenet_tree):
    tree = imagenet_tree
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert set(tree.leaves) == set(wnids)
    assert len(tree.parent) == 1371  # one edge per non-root node
    roots = {tree.path(leaf)[0] for leaf in tree.leaves}
    assert roots == {tree.root} and tree.root not in tree.parent
    depths = [tree.depth(leaf) for leaf in tree.leaves]
    assert (min(depths), max(depths)) == (3, 15)
    ordered = tree.reorder(wnids)
    assert ordered.leaves == tuple(wnids)
    with pytest.raises(InputError, match="does not match"):
        tree.reorder(wnids[:-1] + ["n00000000"])


def test_coarse_labels_nest_from_root_to_leaves(imagenet_tree):
    tree = imagenet_tree.reorder(imagenet_wnids())
    labels0, names0 = tree.coarse_labels(0)
    assert names0 == [tree.root] and not labels0.any()
    deepest, names = tree.coarse_labels(15)
    np.testing.assert_array_equal(deepest, np.arange(1000))  # every class is its own group
    assert names == sorted(tree.leaves)
    previous = labels0
    sizes = []
    for depth in range(1, 16):
        labels, names = tree.coarse_labels(depth)
        assert labels.shape == (1000,) and labels.dtype == np.int64 and len(names) == labels.max() + 1
        # each group at this depth lies inside one group of the depth above
        pairs = set(zip(labels.tolist(), previous.tolist()))
        assert len({g for g, _ in pairs}) == len(pairs)
        sizes.append(len(names))
        previous = labels
    assert sizes == sorted(sizes) and sizes[-1] == 1000
    with pytest.raises(InputError, match="depth"):
        tree.coarse_labels(-1)


def test_edges_round_trip(imagenet_tree, tmp_path):
    path = tmp_path / "edges.txt"
    path.write_text("# comment\n\n" + "\n".join(f"{p} {c}" for p, c in imagenet_tree.edges()) + "\n")
    again = load_wordnet_edges(path)
    assert again == imagenet_tree


@pytest.mark.parametrize(
    "text, message",
    [
        ("a b\na c\nd c\n", "two parents"),
        ("a b\nc d\n", "one root"),
        ("r x\na b\nb c\nc a\n", "not reachable"),
        ("a b\nb a\n", "one root"),
        ("a a\n", "its own parent"),
        ("a b c\n", ":1: expected 'parent child'"),
        ("\n# nothing\n", "no edges"),
    ],
)
def test_bad_edge_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_wordnet_edges(path)
    assert "bad.txt" in str(err.value)
    with pytest.raises(InputError, match="not found"):
        load_wordnet_edges(tmp_path / "missing.txt")


def test_from_paths_keeps_homonyms_apart():
    tree = ClassTree.from_paths([("A", "x", "leaf1"), ("B", "x", "leaf2"), ("A", "y", "leaf3")], root="r")
    assert tree.leaves == ("A/x/leaf1", "B/x/leaf2", "A/y/leaf3")
    labels, names = tree.coarse_labels(2)
    assert names == ["A/x", "A/y", "B/x"] and labels.tolist() == [0, 2, 1]
    assert tree.children["r"] == ("A", "B")


class _Synset:
    """The part of NLTK's Synset interface that wordnet_tree uses."""

    def __init__(self, offset: int, hypernyms=(), instance_hypernyms=()) -> None:
        self._offset, self._h, self._i = offset, list(hypernyms), list(instance_hypernyms)

    def pos(self) -> str:
        return "n"

    def offset(self) -> int:
        return self._offset

    def hypernyms(self):
        return self._h

    def instance_hypernyms(self):
        return self._i


class _WordNet:
    def __init__(self, synsets) -> None:
        self._by_offset = {s.offset(): s for s in synsets}

    def synset_from_pos_and_offset(self, pos: str, offset: int):
        assert pos == "n"
        return self._by_offset[offset]


def test_wordnet_tree_follows_first_hypernym():
    entity = _Synset(1)
    animal, artifact = _Synset(2, [entity]), _Synset(3, [entity])
    dog = _Synset(10, [animal, artifact])  # two hypernyms: hangs below the first
    cat = _Synset(11, [animal])
    sled = _Synset(12, [artifact])
    lassie = _Synset(13, instance_hypernyms=[dog])
    wn = _WordNet([entity, animal, artifact, dog, cat, sled, lassie])
    tree = wordnet_tree(["n00000011", "n00000012", "n00000013"], wordnet=wn)
    assert tree.leaves == ("n00000011", "n00000012", "n00000013")
    assert tree.root == "n00000001"
    assert tree.path("n00000013") == ["n00000001", "n00000002", "n00000010", "n00000013"]
    assert tree.coarse_labels(1)[0].tolist() == [0, 1, 0]
    with pytest.raises(InputError, match="does not match"):  # dog is an ancestor of another class
        wordnet_tree(["n00000010", "n00000013"], wordnet=wn)
    with pytest.raises(InputError, match="offset"):
        wordnet_tree(["dog"], wordnet=wn)


def test_wordnet_tree_without_nltk_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)
    monkeypatch.setitem(sys.modules, "nltk.corpus", None)
    with pytest.raises(InputError, match="needs NLTK"):
        wordnet_tree(["n01440764"])
