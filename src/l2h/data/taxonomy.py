"""Ground-truth class hierarchies: a rooted tree whose leaves are a dataset's classes.

Built from ``parent child`` edge files (the WordNet tree over ImageNet-1k), from NLTK's WordNet, or from
per-class paths of names (CIFAR superclasses, the iNaturalist ranks). ``coarse_labels(depth)`` gives, for each
class, its ancestor at a depth below the root: the labels of a coarser level.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2h.errors import InputError


@dataclass(frozen=True)
class ClassTree:
    """A rooted tree over string node ids; ``leaves`` is ordered (leaf i = class i of a dataset)."""

    root: str
    parent: dict[str, str]
    children: dict[str, tuple[str, ...]]
    leaves: tuple[str, ...]

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str]], *, source: str = "edges") -> "ClassTree":
        """A tree from ``(parent, child)`` pairs: each node has at most one parent, exactly one node has none,
        and every node is reachable from it. Leaves are sorted by id; see :meth:`reorder`."""
        parent: dict[str, str] = {}
        for p, c in edges:
            if p == c:
                raise InputError(f"{source}: node {c} is its own parent")
            if parent.setdefault(c, p) != p:
                raise InputError(f"{source}: node {c} has two parents ({parent[c]} and {p}); not a tree")
        if not parent:
            raise InputError(f"{source}: no edges")
        children: dict[str, list[str]] = {}
        for c, p in parent.items():
            children.setdefault(p, []).append(c)
        roots = sorted(set(children) - set(parent))
        if len(roots) != 1:
            raise InputError(
                f"{source}: expected one root, found {len(roots)}"
                + (f" ({', '.join(roots[:5])})" if roots else " (the edges contain a cycle)")
            )
        reached, stack = 0, [roots[0]]
        while stack:
            node = stack.pop()
            reached += 1
            stack.extend(children.get(node, ()))
        if reached != len(parent) + 1:
            raise InputError(
                f"{source}: {len(parent) + 1 - reached} nodes are not reachable from the root "
                f"{roots[0]} (the edges contain a cycle)"
            )
        leaves = tuple(sorted(set(parent) - set(children)))
        return cls(roots[0], parent, {p: tuple(sorted(cs)) for p, cs in children.items()}, leaves)

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[str]], *, root: str = "root", sep: str = "/") -> "ClassTree":
        """A tree from one root-to-leaf path of names per class (root excluded). Node ids are the joined
        path prefixes (``"Animalia/Chordata"``), so equal names under different parents stay apart.
        Leaves keep the order of ``paths``."""
        edges, leaves = set(), []
        for path in paths:
            if not path:
                raise InputError("class path is empty")
            ids = [sep.join(path[: i + 1]) for i in range(len(path))]
            edges.update(zip([root] + ids[:-1], ids))
            leaves.append(ids[-1])
        return cls.from_edges(sorted(edges), source="class paths").reorder(leaves)

    def reorder(self, leaves: Sequence[str]) -> "ClassTree":
        """The same tree with its leaves in the given order, which must name exactly its leaves."""
        given, have = list(leaves), set(self.leaves)
        if len(set(given)) != len(given) or set(given) != have:
            missing, extra = sorted(have - set(given)), sorted(set(given) - have)
            raise InputError(
                f"class tree: the class list does not match the tree's {len(have)} leaves "
                f"(leaves without class: {missing[:5]}, classes not leaves: {extra[:5]}, "
                f"duplicates: {len(given) - len(set(given))})"
            )
        return ClassTree(self.root, self.parent, self.children, tuple(given))

    def path(self, node: str) -> list[str]:
        """Node ids from the root down to ``node``."""
        out = [node]
        while out[-1] != self.root:
            if out[-1] not in self.parent:
                raise InputError(f"class tree: unknown node {node}")
            out.append(self.parent[out[-1]])
        return out[::-1]

    def depth(self, node: str) -> int:
        """Edges between the root and ``node`` (root: 0)."""
        return len(self.path(node)) - 1

    def coarse_labels(self, depth: int) -> tuple[np.ndarray, list[str]]:
        """For each leaf (in order), its ancestor at ``depth`` (a leaf shallower than ``depth`` stands for
        itself): int64 labels (K,) into the sorted list of those ancestors, and that list."""
        if depth < 0:
            raise InputError(f"class tree: depth must be >= 0, got {depth}")
        groups = [(p[depth] if depth < len(p) else p[-1]) for p in map(self.path, self.leaves)]
        names = sorted(set(groups))
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[g] for g in groups], dtype=np.int64), names

    def edges(self) -> list[tuple[str, str]]:
        """``(parent, child)`` pairs, sorted."""
        return sorted((p, c) for c, p in self.parent.items())


def load_wordnet_edges(path: str | os.PathLike) -> ClassTree:
    """A tree from a text file of ``parent child`` lines (WordNet ids such as ``n01440764``; blank lines and
    ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: hierarchy edge file not found")
    edges = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise InputError(f"{path}:{lineno}: expected 'parent child', got {line!r}")
        edges.append((fields[0], fields[1]))
    return ClassTree.from_edges(edges, source=str(path))


def wordnet_tree(wnids: Sequence[str], wordnet: Any = None) -> ClassTree:
    """The WordNet hypernym tree above the given synsets (ids ``n01440764``), leaves in the given order.

    Each synset hangs below its first listed hypernym (instance hypernym when it has none), which makes the
    hypernym graph a tree rooted at ``entity``. ``wordnet`` defaults to NLTK's corpus reader.
    """
    if wordnet is None:
        try:
            from nltk.corpus import wordnet

            wordnet.ensure_loaded()
        except ImportError as exc:
            raise InputError(
                "building the WordNet hierarchy needs NLTK (pip install nltk; then "
                "python -m nltk.downloader wordnet), or give a 'parent child' edge file"
            ) from exc
        except LookupError as exc:
            raise InputError("NLTK's WordNet corpus is not installed: python -m nltk.downloader wordnet") from exc
    edges = set()
    for wnid in wnids:
        if len(wnid) < 2 or not wnid[1:].isdigit():
            raise InputError(f"WordNet id {wnid!r}: expected a part-of-speech letter and an offset (n01440764)")
        synset = wordnet.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))
        while True:
            ups = synset.hypernyms() or synset.instance_hypernyms()
            if not ups:
                break
            edges.add((_wnid(ups[0]), _wnid(synset)))
            synset = ups[0]
    return ClassTree.from_edges(sorted(edges), source="NLTK WordNet").reorder(list(wnids))


def _wnid(synset: Any) -> str:
    return f"{synset.pos()}{synset.offset():08d}"
