"""The Hierarchy object: an ordered binary merge tree over K leaves, and its file formats.

Node ids follow scipy: leaves are 0..K−1 and the node created at step t (1-based) is K+t−1.
``children[t-1] = [id(G*), id(G†)]`` is the primary storage (O(K) memory, also for point-level trees
with tens of thousands of leaves); member tuples are derived on demand from one depth-first leaf
order in which every node's leaves are a contiguous slice (G* before G†, as in the paper's
concatenation ``G* + G†``).

Formats: scipy linkage (height = merge step, 4th column = number of leaves), Newick (branch lengths
are differences of merge steps, so the merge order is recoverable) and JSON (``tree.json``, lossless).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from l2h.errors import InputError
from l2h.io import _json_default, write_npy, write_text

SCHEMA_VERSION = 1
MAX_JSON_MEMBERS = 5_000_000  # tree.json lists member tuples only up to this total count
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9.\-]+")


def check_children(children: ArrayLike, *, source: str = "children", min_leaves: int = 2) -> np.ndarray:
    """The merge table of a binary tree as a (K−1, 2) int64 array, checked; else InputError.

    Row t (0-based) holds the two node ids merged at step t + 1; leaves are 0..K−1 and that step creates
    node K + t (scipy's convention). Every node but the root must be merged exactly once, and only after
    it exists. Integer-valued floats (a scipy linkage's columns) are accepted. ``min_leaves=1`` also
    accepts the single-leaf tree (no rows).

    Examples
    --------
    >>> check_children([[0, 2], [1, 3], [4, 5]]).shape
    (3, 2)
    >>> check_children([[0, 3], [1, 2]], source="t")
    Traceback (most recent call last):
    ...
    l2h.errors.InputError: t: step 1 merges [0, 3], but node 3 does not exist yet (only nodes 0..2 exist before it)
    """
    arr = np.asarray(children)
    if arr.dtype.kind not in "iu" and not (
        arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.array_equal(arr, np.round(arr))
    ):
        raise InputError(
            f"{source}: child ids must be integer node ids, got dtype {arr.dtype}"
            + (" with non-integer values" if arr.dtype.kind == "f" else "")
        )
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < min_leaves - 1:
        raise InputError(f"{source}: children must have shape (K-1, 2) with K >= {min_leaves}, got {arr.shape}")
    arr = arr.astype(np.int64)
    k = arr.shape[0] + 1
    created = np.arange(k, 2 * k - 1)[:, None]
    wrong = (arr < 0) | (arr >= created)
    if wrong.any():
        t = int(np.flatnonzero(wrong.any(1))[0])
        node = int(arr[t][wrong[t]][0])
        what = "is not a node id" if node < 0 else "does not exist yet"
        raise InputError(
            f"{source}: step {t + 1} merges {arr[t].tolist()}, but node {node} {what} "
            f"(only nodes 0..{k + t - 1} exist before it)"
        )
    uses = np.bincount(arr.ravel(), minlength=2 * k - 1)
    if (uses[: 2 * k - 2] != 1).any():
        node = int(np.flatnonzero(uses[: 2 * k - 2] != 1)[0])
        raise InputError(f"{source}: node {node} is merged {int(uses[node])} times (it must be merged exactly once)")
    return arr


def _integer_in(value, low: int, high: int, what: str) -> int:
    """``value`` as a Python int in low..high, or InputError (bools, floats and out-of-range values)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be an integer in {low}..{high}, got {value!r} ({type(value).__name__})")
    if not low <= int(value) <= high:
        raise InputError(f"{what} must be in {low}..{high}, got {value}")
    return int(value)


def relabel_by_first_appearance(labels: ArrayLike) -> np.ndarray:
    """Group ids renumbered 0, 1, ... in the order in which the groups first appear.

    Examples
    --------
    >>> relabel_by_first_appearance([7, 7, 3, 9, 3]).tolist()
    [0, 0, 1, 2, 1]
    """
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def newick_label(name: str) -> str:
    """``name`` as a Newick leaf label: as it is if plain (letters, digits, ``.``, ``-``), else single-quoted
    with quotes doubled. Underscores are quoted too, so that readers keep them (unquoted, they mean blanks).

    Examples
    --------
    >>> newick_label("dog"), newick_label("maple_tree"), newick_label("d'or")
    ('dog', "'maple_tree'", "'d''or'")
    """
    if _PLAIN_LABEL.fullmatch(name):
        return name
    return "'" + name.replace("'", "''") + "'"


class Hierarchy:
    """An ordered binary hierarchy over ``k`` leaves: the merges of L2H (or of any agglomerative method).

    Node ids follow scipy: leaves are 0..K−1 and the node created at merge step t (1-based) is K+t−1.
    A Hierarchy converts to and from a scipy linkage (:meth:`to_linkage`, :meth:`from_linkage`), Newick
    (:meth:`to_newick`, :meth:`from_newick`) and ``tree.json`` (:meth:`save`, :meth:`load`), and is cut into
    flat partitions with :meth:`cut`. It is immutable: ``children`` is a read-only array.

    Parameters
    ----------
    children : int array (K−1, 2)
        ``[id(G*), id(G†)]`` per merge step, scipy node ids (checked by :func:`check_children`).
    scores : float array with K−1 rows, optional
        The numbers that chose each merge (L2H: [score of G*, affinity of G†]).
    names : sequence of K str, optional
        Leaf names.
    info : dict, optional
        Provenance: aggregation, strategy, source checksum, ...
    source : str
        Name of the input in error messages.
    support : float array (K−1,), optional
        Bootstrap support of each merge (the node created at step t): the fraction of resampled trees
        that contain its clade, in [0, 1]. Written to ``tree.json`` (``support``), as internal-node labels
        of ``tree.nwk`` and on the dendrogram.

    Attributes
    ----------
    k : int
        Number of leaves.
    children : int64 array (K−1, 2)
    scores : float64 array or None
    names : list of str or None
    info : dict
    support : float64 array (K−1,) or None

    Examples
    --------
    >>> tree = Hierarchy([[0, 2], [1, 3], [4, 5]], names=["cat", "car", "dog", "truck"])
    >>> tree.k, tree.merges
    (4, [((0,), (2,)), ((1,), (3,)), ((0, 2), (1, 3))])
    >>> tree.cut(2).tolist()                 # two groups: {cat, dog} and {car, truck}
    [0, 1, 0, 1]
    >>> tree.to_newick()
    '((cat:1,dog:1):2,(car:2,truck:2):1);'
    """

    def __init__(
        self,
        children: ArrayLike,
        *,
        scores: ArrayLike | None = None,
        names: Sequence[str] | None = None,
        info: dict | None = None,
        source: str = "children",
        support: ArrayLike | None = None,
    ):
        arr = check_children(children, source=source)
        self.children = arr
        self.children.flags.writeable = False
        self.k = arr.shape[0] + 1
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64)
            if scores.ndim == 0 or scores.shape[0] != self.k - 1:
                raise InputError(f"{source}: scores must have K-1 = {self.k - 1} rows, got shape {scores.shape}")
        self.scores = scores
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != self.k:
                raise InputError(f"{source}: {len(names)} names given for {self.k} leaves")
        self.names = names
        if support is not None:
            support = np.asarray(support, dtype=np.float64)
            if support.shape != (self.k - 1,) or not np.all((support >= 0) & (support <= 1)):
                raise InputError(f"{source}: support must be K-1 = {self.k - 1} numbers in [0, 1]")
        self.support = support
        self.info = dict(info or {})
        self._sizes: np.ndarray | None = None
        self._layout: tuple[np.ndarray, np.ndarray] | None = None

    def __repr__(self) -> str:
        return (
            f"Hierarchy(k={self.k}, aggregation={self.info.get('aggregation')!r}, "
            f"strategy={self.info.get('strategy')!r})"
        )

    # ------------------------------------------------------------------ structure
    @property
    def sizes(self) -> np.ndarray:
        """Number of leaves under every node (length 2K−1)."""
        if self._sizes is None:
            sizes = [1] * self.k
            for a, b in self.children.tolist():
                sizes.append(sizes[a] + sizes[b])
            self._sizes = np.array(sizes, dtype=np.int64)
        return self._sizes

    def _leaf_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(leaf order, start): node v's leaves are ``order[start[v] : start[v] + sizes[v]]``."""
        if self._layout is None:
            k, sizes = self.k, self.sizes.tolist()
            start = [0] * (2 * k - 1)
            children = self.children.tolist()
            for t in range(k - 2, -1, -1):  # parents before children
                a, b = children[t]
                start[a] = start[k + t]
                start[b] = start[k + t] + sizes[a]
            start = np.array(start, dtype=np.int64)
            order = np.empty(k, dtype=np.int64)
            order[start[:k]] = np.arange(k)
            self._layout = order, start
        return self._layout

    def leaf_order(self) -> np.ndarray:
        """Leaves in depth-first order, G* before G† at every node."""
        return self._leaf_layout()[0].copy()

    def members(self, node: int) -> np.ndarray:
        """Leaf ids under ``node`` (a node id in 0..2K−2) in group order (G* members first).

        Examples
        --------
        >>> Hierarchy([[0, 2], [1, 3], [4, 5]]).members(5).tolist()
        [1, 3]
        """
        node = _integer_in(node, 0, 2 * self.k - 2, "members: node")
        order, start = self._leaf_layout()
        return order[start[node] : start[node] + self.sizes[node]].copy()

    def merge_step(self, i: ArrayLike, j: ArrayLike) -> np.ndarray:
        """The merge step (1..K−1) at which leaves ``i`` and ``j`` first share a group, elementwise: the
        cophenetic height of :meth:`to_linkage` (0 where ``i == j``). O(K log K + pairs).

        Examples
        --------
        >>> Hierarchy([[0, 2], [1, 3], [4, 5]]).merge_step([0, 0], [2, 3]).tolist()
        [1, 3]
        """
        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        k = self.k
        if i.shape != j.shape or (i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= k)):
            raise InputError(f"merge_step: expected two arrays of the same shape of leaf ids in 0..{k - 1}")
        order, start = self._leaf_layout()
        position = np.empty(k, dtype=np.int64)
        position[order] = np.arange(k)
        # gap[r]: the step that joins leaf-order positions r and r+1; a pair's step is the max gap between them
        gap = np.empty(k - 1, dtype=np.int64)
        gap[start[k:] + self.sizes[self.children[:, 0]] - 1] = np.arange(1, k)
        lo, hi = np.minimum(position[i], position[j]), np.maximum(position[i], position[j])
        out = np.zeros(i.shape, dtype=np.int64)
        span = hi - lo
        pairs = span > 0
        level = np.zeros(i.shape, dtype=np.int64)
        level[pairs] = np.floor(np.log2(span[pairs])).astype(np.int64)
        table = gap
        for power in range(int(level.max(initial=0)) + 1):  # table[r] = max(gap[r : r + 2**power])
            here = pairs & (level == power)
            out[here] = np.maximum(table[lo[here]], table[hi[here] - (1 << power)])
            table = np.maximum(table[: -(1 << power)], table[1 << power :])
        return out

    def iter_merges(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Yield the merges one at a time as (G* members, G† members) (see :attr:`merges`)."""
        order, start = self._leaf_layout()
        sizes = self.sizes
        for a, b in self.children.tolist():
            yield (
                tuple(order[start[a] : start[a] + sizes[a]].tolist()),
                tuple(order[start[b] : start[b] + sizes[b]].tolist()),
            )

    @property
    def merges(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """The ordered merges as (G* members, G† members), built in O(total size).

        Examples
        --------
        >>> Hierarchy([[0, 2], [1, 3], [4, 5]]).merges[-1]
        ((0, 2), (1, 3))
        """
        return list(self.iter_merges())

    def total_members(self) -> int:
        """Σ_t |G*_t| + |G†_t| (the size of :attr:`merges`)."""
        return int(self.sizes[self.k :].sum())

    # ------------------------------------------------------------------ scipy
    def to_linkage(self) -> np.ndarray:
        """A valid, monotone scipy linkage: row t = [id(G*), id(G†), t, #leaves].

        Examples
        --------
        >>> Hierarchy([[0, 2], [1, 3], [4, 5]]).to_linkage()
        array([[0., 2., 1., 2.],
               [1., 3., 2., 2.],
               [4., 5., 3., 4.]])
        """
        steps = np.arange(1, self.k, dtype=np.float64)
        return np.column_stack([self.children.astype(np.float64), steps, self.sizes[self.k :].astype(np.float64)])

    @classmethod
    def from_linkage(cls, Z: ArrayLike, names: Sequence[str] | None = None, info: dict | None = None) -> "Hierarchy":
        """From any valid scipy linkage; the row order is kept (heights become step indices).

        The original heights are kept in ``info["linkage_heights"]``.

        Examples
        --------
        >>> from scipy.cluster.hierarchy import linkage
        >>> tree = Hierarchy.from_linkage(linkage([[0.0], [0.1], [5.0], [5.3]], "ward"))
        >>> tree.children.tolist(), [round(h, 2) for h in tree.info["linkage_heights"]]
        ([[0, 1], [2, 3], [4, 5]], [0.1, 0.3, 7.21])
        """
        from scipy.cluster.hierarchy import is_valid_linkage

        Z = np.asarray(Z, dtype=np.float64)
        try:
            is_valid_linkage(Z, throw=True, name="Z")
        except (ValueError, TypeError) as exc:
            raise InputError(f"linkage: {exc}") from None
        info = {**(info or {}), "linkage_heights": Z[:, 2].tolist()}
        tree = cls(Z[:, :2].astype(np.int64), names=names, info=info, source="linkage")
        wrong = np.flatnonzero(Z[:, 3] != tree.sizes[tree.k :])
        if wrong.size:
            raise InputError(
                f"linkage: row {wrong[0]} says {Z[wrong[0], 3]:g} leaves, but its node has "
                f"{tree.sizes[tree.k + wrong[0]]}"
            )
        return tree

    def cut(self, n_groups: int) -> np.ndarray:
        """Leaf → group labels (0..n−1, by first appearance) after the first K − n merges; ``n_groups`` is an
        integer in 1..K (not a float or a bool).

        Examples
        --------
        >>> tree = Hierarchy([[0, 2], [1, 3], [4, 5]])
        >>> tree.cut(3).tolist(), tree.cut(2).tolist()
        ([0, 1, 0, 2], [0, 1, 0, 1])
        """
        k = self.k
        n_merges = k - _integer_in(n_groups, 1, k, "cut: n_groups")
        root = list(range(2 * k - 1))
        children = self.children[:n_merges].tolist()
        for t in range(n_merges - 1, -1, -1):  # parents before children
            a, b = children[t]
            root[a] = root[b] = root[k + t]
        return relabel_by_first_appearance(np.array(root[:k]))

    # ------------------------------------------------------------------ Newick
    def to_newick(self, names: Sequence[str] | None = None) -> str:
        """Newick string; leaf labels are quoted where needed (:func:`newick_label`); the internal node
        created at step t has height t, so branch lengths (integers) let :meth:`from_newick` recover the merge
        order. Leaf labels: ``names``, else :attr:`names`, else the leaf ids. With :attr:`support`, each
        internal node is labelled with its support (e.g. ``0.93``), as phylogenetics tools (dendropy, ete,
        scikit-bio) read bootstrap values.

        Examples
        --------
        >>> Hierarchy([[0, 2], [1, 3], [4, 5]]).to_newick(["a", "b c", "d", "e"])
        "((a:1,d:1):2,('b c':2,e:2):1);"
        """
        names = self._names_or_ids(names)
        k = self.k
        support = [""] * (k - 1) if self.support is None else [f"{s:.4g}" for s in self.support.tolist()]
        height = np.concatenate([np.zeros(k, dtype=np.int64), np.arange(1, k)])
        tokens: list[str] = []
        stack: list[int | str] = [2 * k - 2]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                tokens.append(item)
            elif item < k:
                tokens.append(newick_label(names[item]))
            else:
                a, b = self.children[item - k]
                stack += [
                    ")" + support[item - k],
                    f":{height[item] - height[b]}",
                    int(b),
                    f":{height[item] - height[a]},",
                    int(a),
                    "(",
                ]
        return "".join(tokens) + ";"

    @classmethod
    def from_newick(cls, text: str, names: Sequence[str] | None = None, info: dict | None = None) -> "Hierarchy":
        """Parse a binary Newick tree (read by :func:`parse_newick`).

        Internal nodes are ordered by height (distance to their deepest leaf; a missing branch
        length counts 1), children first on ties; a node's first child is G*. Leaf ids: the position
        of the label in ``names`` if given; else the integer labels if they are exactly 0..K−1; else
        the order of appearance (labels become ``names``). Underscores are kept as written. The
        output of :meth:`to_newick` is read back with the same merge order.

        Examples
        --------
        >>> tree = Hierarchy.from_newick("((a:1,b:1):2,(c:2,d:2):1);")
        >>> tree.children.tolist(), tree.names
        ([[0, 1], [2, 3], [4, 5]], ['a', 'b', 'c', 'd'])
        >>> Hierarchy.from_newick("((a,b),(c,(d,e)));").merges[:2]
        [((3,), (4,)), ((0,), (1,))]
        """
        root = parse_newick(text)
        nodes = _preorder(root)
        leaves = newick_leaves(root)
        labels = [nd["label"] for nd in leaves]
        k = len(leaves)
        if names is not None:
            names = [str(n) for n in names]
            index = {name: i for i, name in enumerate(names)}
            if len(index) != len(names) or set(index) != set(labels):
                raise InputError("newick: leaf labels do not match the given names")
            ids = [index[lab] for lab in labels]
        elif set(labels) == {str(i) for i in range(k)}:
            ids = [int(lab) for lab in labels]
        else:
            ids, names = list(range(k)), labels
        for nd, i in zip(leaves, ids):
            nd["id"], nd["height"] = i, 0.0
        internal = []
        for pos in range(len(nodes) - 1, -1, -1):  # children before parents
            nd = nodes[pos]
            if nd["children"]:
                if len(nd["children"]) != 2:
                    raise InputError(
                        f"newick: a node has {len(nd['children'])} children; only binary trees are supported"
                    )
                nd["height"] = max(c["height"] + (1.0 if c["length"] is None else c["length"]) for c in nd["children"])
                internal.append((nd["height"], len(internal), nd))
        internal.sort(key=lambda item: item[:2])
        children = np.empty((k - 1, 2), dtype=np.int64)
        for t, (_, _, nd) in enumerate(internal):
            nd["id"] = k + t
            children[t] = [c["id"] for c in nd["children"]]
        return cls(children, names=names, info=info, source="newick")

    # ------------------------------------------------------------------ JSON and files
    def to_dict(self) -> dict[str, Any]:
        """The ``tree.json`` record: schema version, K, options, children, merges (up to
        :data:`MAX_JSON_MEMBERS` members in all), scores, names and info."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "k": self.k,
            "aggregation": self.info.get("aggregation"),
            "strategy": self.info.get("strategy"),
            "children": self.children.tolist(),
        }
        if self.total_members() <= MAX_JSON_MEMBERS:
            out["merges"] = [[list(a), list(b)] for a, b in self.iter_merges()]
        out["scores"] = None if self.scores is None else self.scores.tolist()
        if self.support is not None:
            out["support"] = self.support.tolist()
        out["names"] = self.names
        out["info"] = self.info
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "tree") -> "Hierarchy":
        """The Hierarchy of a :meth:`to_dict` record, checked field by field (InputError naming ``source``)."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(f"{source}: unsupported schema_version {version!r} (expected {SCHEMA_VERSION})")
        missing = [key for key in ("k", "children") if key not in data]
        if missing:
            raise InputError(f"{source}: missing field(s) {missing}")
        k = data["k"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise InputError(f"{source}: k must be an integer >= 2, got {k!r}")
        try:
            children = np.array(data["children"], dtype=np.int64)
            scores = None if data.get("scores") is None else np.array(data["scores"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"{source}: malformed children/scores ({exc})") from None
        if children.shape != (k - 1, 2):
            raise InputError(f"{source}: children must have shape ({k - 1}, 2), got {children.shape}")
        if scores is not None and not np.isfinite(scores).all():
            raise InputError(f"{source}: scores must be finite numbers")
        names = data.get("names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise InputError(f"{source}: names must be a list of strings or null")
        info = data.get("info")
        info = {} if info is None else info
        if not isinstance(info, dict):
            raise InputError(f"{source}: info must be an object")
        for key in ("aggregation", "strategy"):
            if data.get(key) is not None and info.get(key, data[key]) != data[key]:
                raise InputError(f"{source}: {key} differs between the top level and info")
        support = data.get("support")  # absent in files written before bootstrap support
        if support is not None:
            try:
                support = np.array(support, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{source}: malformed support ({exc})") from None
        tree = cls(children, scores=scores, names=names, info=info, source=source, support=support)
        if "merges" in data:
            stored = data["merges"]
            if (
                not isinstance(stored, list)
                or len(stored) != k - 1
                or any([list(a), list(b)] != m for (a, b), m in zip(tree.iter_merges(), stored))
            ):
                raise InputError(f"{source}: merges do not match children")
        return tree

    def save(self, path: str | os.PathLike) -> None:
        """Write ``tree.json`` (atomically; indented JSON with one merge per line in the per-merge lists);
        :meth:`load` reads it back losslessly.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tree.json"
        >>> tree = Hierarchy([[0, 2], [1, 3], [4, 5]], scores=[[0.1, 0.9], [0.2, 0.8], [0.5, 0.4]])
        >>> tree.save(path)
        >>> back = Hierarchy.load(path)
        >>> back.merges == tree.merges and back.scores.tolist() == tree.scores.tolist()
        True
        """
        write_text(path, _tree_json(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Hierarchy":
        """Read a ``tree.json`` written by :meth:`save` (or by ``l2h tree`` and the pipeline)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a valid JSON file ({exc})") from None
        return cls.from_dict(data, source=str(path))

    def write(self, out_dir: str | os.PathLike, names: Sequence[str] | None = None) -> dict[str, Path]:
        """Write tree.json, linkage.npy and tree.nwk into ``out_dir`` atomically; return the paths
        (keys ``tree``, ``linkage``, ``newick``)."""
        out_dir = Path(out_dir)
        names = self.names if names is None else self._names_or_ids(names)
        tree = Hierarchy(self.children, scores=self.scores, names=names, info=self.info, support=self.support)
        paths = {"tree": out_dir / "tree.json", "linkage": out_dir / "linkage.npy", "newick": out_dir / "tree.nwk"}
        tree.save(paths["tree"])
        write_npy(paths["linkage"], self.to_linkage())
        write_text(paths["newick"], tree.to_newick() + "\n")
        return paths

    def _names_or_ids(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            names = self.names if self.names is not None else [str(i) for i in range(self.k)]
        names = [str(n) for n in names]
        if len(names) != self.k:
            raise InputError(f"names: {len(names)} names given for {self.k} leaves")
        return names


def _tree_json(data: dict[str, Any]) -> str:
    """JSON text of ``data`` (a :meth:`Hierarchy.to_dict`) indented by 2, except that the per-merge lists
    (children, merges, scores) hold one merge per line and ``support`` is one line: json's indenting encoder
    is pure Python, this way the text is formed by its C encoder (~20× faster at K = 1,000)."""
    parts = []
    for key, value in data.items():
        if key in ("children", "merges", "scores") and isinstance(value, list) and value:
            text = "[\n    " + ",\n    ".join(json.dumps(row, default=_json_default) for row in value) + "\n  ]"
        elif key == "support":
            text = json.dumps(value, default=_json_default)
        else:
            text = json.dumps(value, indent=2, default=_json_default).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


_NEWICK_TOKEN = re.compile(r"\s+|\[[^\]]*\]|'(?:[^']|'')*'|[(),:;]|[^\s(),:;\[\]']+")


def _tokenize_newick(text: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, value): kind is one of '(),:;' or 'label' (quoted labels unescaped)."""
    pos = 0
    while pos < len(text):
        match = _NEWICK_TOKEN.match(text, pos)
        if match is None:
            what = "quoted label" if text[pos] == "'" else "comment" if text[pos] == "[" else "text"
            raise InputError(f"newick: unterminated {what} at character {pos}")
        token, pos = match.group(), match.end()
        if token[0] in "(),:;":
            yield token, token
        elif token[0] == "'":
            yield "label", token[1:-1].replace("''", "'")
        elif not token[0].isspace() and token[0] != "[":
            yield "label", token


def _preorder(root: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of a :func:`parse_newick` tree, parents before children, in the order they are written."""
    nodes, todo = [], [root]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(reversed(node["children"]))
    return nodes


def newick_leaves(root: dict[str, Any]) -> list[dict[str, Any]]:
    """The leaves of a :func:`parse_newick` tree in the order they are written, checked to name a tree of
    classes: every leaf has a label, no label occurs twice, at least 2 leaves (else InputError).

    Examples
    --------
    >>> [leaf["label"] for leaf in newick_leaves(parse_newick("((a,b),(c,(d,e)));"))]
    ['a', 'b', 'c', 'd', 'e']
    """
    leaves = [node for node in _preorder(root) if not node["children"]]
    labels = [leaf["label"] for leaf in leaves]
    if None in labels:
        raise InputError("newick: every leaf needs a label")
    if len(leaves) < 2:
        raise InputError("newick: the tree needs at least 2 leaves")
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise InputError(f"newick: leaf labels are not unique: {label!r} occurs twice")
        seen.add(label)
    return leaves


def parse_newick(text: str) -> dict[str, Any]:
    """Parse one Newick tree (any number of children per node) into nested dicts.

    Every node is ``{"children": [...], "label": str or None, "length": float or None}``; quoted labels are
    unquoted (``''`` → ``'``), underscores kept, comments in ``[...]`` skipped, internal node labels kept in
    ``label``. Parsing is iterative, so deep trees are fine. Malformed text raises InputError
    (``newick: ...``). :meth:`Hierarchy.from_newick` builds a binary hierarchy from it; :mod:`l2h.compare`
    reads reference trees with it.

    Examples
    --------
    >>> root = parse_newick("((a:1,'b c':2)x,d);")
    >>> [child["label"] for child in root["children"]]
    ['x', 'd']
    >>> [(leaf["label"], leaf["length"]) for leaf in root["children"][0]["children"]]
    [('a', 1.0), ('b c', 2.0)]
    """
    tokens = _tokenize_newick(text)
    stack: list[dict] = []
    root = last = None
    ended = False
    for kind, value in tokens:
        if ended:
            raise InputError("newick: text after the final ';'")
        if kind == "(":
            node = {"children": [], "label": None, "length": None}
            if stack:
                stack[-1]["children"].append(node)
            elif root is not None:
                raise InputError("newick: more than one root")
            root = root or node
            stack.append(node)
            last = None
        elif kind == ",":
            if not stack:
                raise InputError("newick: ',' outside parentheses")
            last = None
        elif kind == ")":
            if not stack:
                raise InputError("newick: unbalanced ')'")
            last = stack.pop()
        elif kind == ":":
            kind, value = next(tokens, ("", ""))
            if last is None or kind != "label":
                raise InputError("newick: ':' must follow a node and precede a branch length")
            try:
                length = float(value)
            except ValueError:
                raise InputError(f"newick: bad branch length {value!r}") from None
            if not math.isfinite(length) or length < 0:
                raise InputError(f"newick: branch length {value!r} must be finite and >= 0")
            last["length"] = length
        elif kind == ";":
            ended = True
        else:  # label
            if last is None:
                last = {"children": [], "label": value, "length": None}
                if stack:
                    stack[-1]["children"].append(last)
                elif root is None:
                    root = last
                else:
                    raise InputError("newick: more than one root")
            elif last["label"] is None and last["children"]:
                last["label"] = value  # internal node label: ignored by the hierarchy
            else:
                raise InputError(f"newick: unexpected label {value!r}")
    if stack or root is None or not ended:
        raise InputError("newick: incomplete tree (unbalanced parentheses or missing ';')")
    return root
