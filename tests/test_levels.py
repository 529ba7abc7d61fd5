"""Level suggestions (l2h.levels): the confusion graph, the cut curve, planted levels and real CIFAR-10."""

import numpy as np
import pytest
from scipy.special import softmax
from test_hierarchy import random_children

from l2h.algorithm import l2h
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy
from l2h.levels import baseline_levels, confusion_graph, cut_curve, suggest_levels


def planted_logits(branching, scale=2.0, noise=2.0, per_class=60, seed=0):
    """Logits whose confusions follow a balanced class tree (z_j = −scale·LCA height + noise)."""
    k = int(np.prod(branching))
    path = np.array(np.unravel_index(np.arange(k), branching)).T
    height = len(branching) - np.cumprod(path[:, None, :] == path[None, :, :], axis=2).sum(2)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), per_class)
    return -scale * height[y] + noise * rng.normal(size=(y.size, k)), y


def modularity(graph: np.ndarray, groups: np.ndarray, gamma: float = 1.0) -> float:
    """Newman's modularity of a partition, written out from its definition."""
    total = graph.sum()
    degree = graph.sum(1)
    same = groups[:, None] == groups[None, :]
    return float((graph * same).sum() / total - gamma * (np.outer(degree, degree) * same).sum() / total**2)


def test_confusion_graph_is_the_masked_softmax_summed_per_cluster():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 7)) * 2
    h = z.argmax(1)
    graph = confusion_graph(z, h).toarray()
    q = softmax(np.where(np.eye(7, dtype=bool)[h], -np.inf, z), axis=1)
    expected = np.zeros((7, 7))
    np.add.at(expected, h, q)
    np.testing.assert_allclose(graph, expected + expected.T, atol=1e-12)
    assert graph.sum() == pytest.approx(2 * 200)  # every point adds 1, symmetrised
    # probabilities give the same graph as their logits
    np.testing.assert_allclose(confusion_graph(softmax(z, axis=1), h, input="probs").toarray(), graph, atol=1e-9)
    # top=2 keeps each point's two largest entries only
    top2 = confusion_graph(z, h, top=2).toarray()
    kept = np.sort(q, axis=1)[:, -2:].sum()
    assert top2.sum() == pytest.approx(2 * kept) and top2.sum() < graph.sum()
    with pytest.raises(InputError, match="leaves"):
        confusion_graph(z, np.full(200, 7))


def test_cut_curve_is_the_modularity_of_every_cut():
    rng = np.random.default_rng(1)
    k = 30
    tree = Hierarchy(random_children(k, rng))
    graph = rng.random((k, k)) * (rng.random((k, k)) < 0.3)
    graph = graph + graph.T
    np.fill_diagonal(graph, 0)
    m, v = cut_curve(tree, graph)
    for n in (1, 2, 5, 17, 29, 30):
        groups = tree.cut(n)
        for gamma in (0.5, 1.0, 2.0):
            assert m[k - n] - gamma * v[k - n] == pytest.approx(modularity(graph, groups, gamma), abs=1e-12)
    with pytest.raises(InputError, match="no confusion"):
        cut_curve(tree, np.zeros((k, k)))


def test_two_disconnected_blocks_give_two_groups_first():
    # leaves 0-3 and 4-7 only confuse within their block; the tree joins each block before the root
    tree = Hierarchy([[0, 1], [2, 3], [8, 9], [4, 5], [6, 7], [11, 12], [10, 13]])
    graph = np.kron(np.eye(2), np.ones((4, 4))) - np.eye(8)
    found = suggest_levels(tree, graph=graph)
    assert [s["n_groups"] for s in found["suggestions"]][:1] == [2]
    assert found["suggestions"][0]["score"] > 20  # no confusion at all between the two groups
    assert found["baselines"]["sqrt_k"] == 3


@pytest.mark.parametrize("branching, levels", [((4, 4, 4), {4, 16}), ((3, 4, 5), {3, 12}), ((20, 5), {20})])
def test_planted_levels_are_the_top_suggestions(branching, levels):
    z, y = planted_logits(branching, scale=3.0 if branching == (20, 5) else 2.0)
    tree, leaves = l2h(z, return_assignment=True)
    found = suggest_levels(tree, z, leaves=leaves)
    top = [s["n_groups"] for s in found["suggestions"][: len(levels)]]
    assert set(top) == levels, found["suggestions"][:4]
    assert found == suggest_levels(tree, z)  # leaves default to the argmax; deterministic


def test_supports_scale_the_scores():
    z, _ = planted_logits((4, 4, 4), per_class=30)
    tree = l2h(z)
    plain = suggest_levels(tree, z)
    ones = suggest_levels(tree, z, supports=np.ones(63))
    assert [s["score"] for s in ones["suggestions"]] == [s["score"] for s in plain["suggestions"]]
    assert all(s["support"] == 1.0 for s in ones["suggestions"]) and "bootstrap" in ones["criterion"]
    halves = suggest_levels(tree, z, supports=np.full(63, 0.5))
    assert [s["score"] for s in halves["suggestions"]] == pytest.approx([s["score"] / 2 for s in plain["suggestions"]])
    with pytest.raises(InputError, match="supports"):
        suggest_levels(tree, z, supports=np.ones(10))
    with pytest.raises(InputError, match="supports"):
        suggest_levels(tree, z, supports=np.full(63, 1.5))


def test_no_confusion_gives_no_suggestion():
    probs = np.eye(4)[np.repeat(np.arange(4), 5)]  # one-hot: no point would go anywhere else
    tree = l2h(probs, input="probs")
    found = suggest_levels(tree, probs, input="probs")
    assert found["suggestions"] == [] and "no confusion" in found["note"]
    with pytest.raises(InputError, match="scores"):
        suggest_levels(tree)


def test_baselines():
    tree = Hierarchy([[0, 1], [2, 3], [4, 5], [6, 7]], scores=[[0, 5.0], [0, 4.0], [0, 1.0], [0, 0.5]])
    # affinity drops most from merge 2 to merge 3: cut after 2 merges -> 3 groups
    assert baseline_levels(tree) == {"sqrt_k": 2, "largest_affinity_gap": 3}
    assert baseline_levels(Hierarchy([[0, 1], [2, 3]])) == {"sqrt_k": 2, "largest_affinity_gap": None}


def test_cifar10_top_level_is_vehicles_and_animals(shared_data):
    with np.load(shared_data / "logits" / "wideresnet-16-4-cifar-10.npz") as data:
        probs = data["predictions"]
    tree, leaves = l2h(probs, input="probs", return_assignment=True)
    found = suggest_levels(tree, probs, leaves=leaves, input="probs")
    assert found["suggestions"][0]["n_groups"] == 2
    vehicles = {0, 1, 8, 9}  # airplane, automobile, ship, truck
    groups = tree.cut(2)
    assert {int(groups[c]) for c in vehicles} != {int(groups[c]) for c in set(range(10)) - vehicles}
    assert len({int(groups[c]) for c in vehicles}) == 1
