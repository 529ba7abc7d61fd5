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
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from l2h.errors import InputError
from l2h.io import _json_default, write_npy, write_text

SCHEMA_VERSION = 1
MAX_JSON_MEMBERS = 5_000_000   # tree.json lists member tuples only up to this total count
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9.\-]+")


def _check_children(children: np.ndarray, source: str) -> None:
    if children.ndim != 2 or children.shape[1] != 2 or children.shape[0] < 1:
        raise InputError(f"{source}: children must have shape (K-1, 2) with K >= 2, got {children.shape}")
    k = children.shape[0] + 1
    created = np.arange(k, 2 * k - 1)
    if children.min() < 0 or (children >= created[:, None]).any():
        t = int(np.flatnonzero((children < 0).any(1) | (children >= created[:, None]).any(1))[0])
        raise InputError(f"{source}: step {t + 1} merges {children[t].tolist()}, but only nodes "
                         f"0..{k + t - 1} exist before it")
    uses = np.bincount(children.ravel(), minlength=2 * k - 1)
    if (uses[:2 * k - 2] != 1).any():
        node = int(np.flatnonzero(uses[:2 * k - 2] != 1)[0])
        raise InputError(f"{source}: node {node} is merged {int(uses[node])} times (must be exactly once)")


def _relabel_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def _newick_label(name: str) -> str:
    if _PLAIN_LABEL.fullmatch(name):
        return name
    return "'" + name.replace("'", "''") + "'"


class Hierarchy:
    """An ordered binary hierarchy over ``k`` leaves.

    Parameters
    ----------
    children : int array (K−1, 2)
        ``[id(G*), id(G†)]`` per merge step, scipy node ids.
    scores : float array with K−1 rows, optional
        The numbers that chose each merge (L2H: [score of G*, affinity of G†]).
    names : list of K str, optional
        Leaf names.
    info : dict, optional
        Provenance: aggregation, strategy, source checksum, ...
    support : float array (K−1,), optional
        Bootstrap support of each merge (the node created at step t): the fraction of resampled trees
        that contain its clade, in [0, 1]. Written to ``tree.json`` (``support``), as internal-node labels
        of ``tree.nwk`` and on the dendrogram.
    """

    def __init__(self, children, *, scores=None, names=None, info: dict | None = None,
                 source: str = "children", support=None):
        arr = np.asarray(children)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr))):
            raise InputError(f"{source}: children must be integer node ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        _check_children(arr, source)
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
        return (f"Hierarchy(k={self.k}, aggregation={self.info.get('aggregation')!r}, "
                f"strategy={self.info.get('strategy')!r})")

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
            for t in range(k - 2, -1, -1):   # parents before children
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
        """Leaf ids under ``node`` in group order (G* members first)."""
        order, start = self._leaf_layout()
        return order[start[node]:start[node] + self.sizes[node]].copy()

    def iter_merges(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        order, start = self._leaf_layout()
        sizes = self.sizes
        for a, b in self.children.tolist():
            yield (tuple(order[start[a]:start[a] + sizes[a]].tolist()),
                   tuple(order[start[b]:start[b] + sizes[b]].tolist()))

    @property
    def merges(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """The ordered merges as (G* members, G† members), built in O(total size)."""
        return list(self.iter_merges())

    def total_members(self) -> int:
        """Σ_t |G*_t| + |G†_t| (the size of :attr:`merges`)."""
        return int(self.sizes[self.k:].sum())

    # ------------------------------------------------------------------ scipy
    def to_linkage(self) -> np.ndarray:
        """A valid, monotone scipy linkage: row t = [id(G*), id(G†), t, #leaves]."""
        steps = np.arange(1, self.k, dtype=np.float64)
        return np.column_stack([self.children.astype(np.float64), steps,
                                self.sizes[self.k:].astype(np.float64)])

    @classmethod
    def from_linkage(cls, Z, names=None, info: dict | None = None) -> "Hierarchy":
        """From any valid scipy linkage; the row order is kept (heights become step indices).

        The original heights are kept in ``info["linkage_heights"]``.
        """
        from scipy.cluster.hierarchy import is_valid_linkage

        Z = np.asarray(Z, dtype=np.float64)
        try:
            is_valid_linkage(Z, throw=True, name="Z")
        except (ValueError, TypeError) as exc:
            raise InputError(f"linkage: {exc}") from None
        info = {**(info or {}), "linkage_heights": Z[:, 2].tolist()}
        tree = cls(Z[:, :2].astype(np.int64), names=names, info=info, source="linkage")
        wrong = np.flatnonzero(Z[:, 3] != tree.sizes[tree.k:])
        if wrong.size:
            raise InputError(f"linkage: row {wrong[0]} says {Z[wrong[0], 3]:g} leaves, but its node has "
                             f"{tree.sizes[tree.k + wrong[0]]}")
        return tree

    def cut(self, n_groups: int) -> np.ndarray:
        """Leaf → group labels (0..n−1, by first appearance) after the first K − n merges."""
        k = self.k
        if not 1 <= int(n_groups) <= k:
            raise InputError(f"cut: n_groups must be in 1..{k}, got {n_groups}")
        n_merges = k - int(n_groups)
        root = list(range(2 * k - 1))
        children = self.children[:n_merges].tolist()
        for t in range(n_merges - 1, -1, -1):   # parents before children
            a, b = children[t]
            root[a] = root[b] = root[k + t]
        return _relabel_by_first_appearance(np.array(root[:k]))

    # ------------------------------------------------------------------ Newick
    def to_newick(self, names=None) -> str:
        """Newick string; leaf labels are quoted where needed; internal node created at step t has
        height t, so branch lengths (integers) let :meth:`from_newick` recover the merge order. With
        :attr:`support`, each internal node is labelled with its support (e.g. ``0.93``), as phylogenetics
        tools (dendropy, ete, scikit-bio) read bootstrap values."""
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
                tokens.append(_newick_label(names[item]))
            else:
                a, b = self.children[item - k]
                stack += [")" + support[item - k], f":{height[item] - height[b]}", int(b),
                          f":{height[item] - height[a]},", int(a), "("]
        return "".join(tokens) + ";"

    @classmethod
    def from_newick(cls, text: str, names=None, info: dict | None = None) -> "Hierarchy":
        """Parse a binary Newick tree.

        Internal nodes are ordered by height (distance to their deepest leaf; a missing branch
        length counts 1), children first on ties; a node's first child is G*. Leaf ids: the position
        of the label in ``names`` if given; else the integer labels if they are exactly 0..K−1; else
        the order of appearance (labels become ``names``). Underscores are kept as written.
        """
        root = _parse_newick(text)
        nodes, parent_first = [], [root]
        while parent_first:                      # preorder: parents before children
            node = parent_first.pop()
            nodes.append(node)
            parent_first.extend(reversed(node["children"]))
        leaves = [nd for nd in nodes if not nd["children"]]
        labels = [nd["label"] for nd in leaves]
        if any(lab is None for lab in labels):
            raise InputError("newick: every leaf needs a label")
        if len(set(labels)) != len(labels):
            raise InputError("newick: leaf labels are not unique")
        if len(leaves) < 2:
            raise InputError("newick: the tree needs at least 2 leaves")
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
        for pos in range(len(nodes) - 1, -1, -1):   # children before parents
            nd = nodes[pos]
            if nd["children"]:
                if len(nd["children"]) != 2:
                    raise InputError(f"newick: a node has {len(nd['children'])} children; only binary "
                                     "trees are supported")
                nd["height"] = max(c["height"] + (1.0 if c["length"] is None else c["length"])
                                   for c in nd["children"])
                internal.append((nd["height"], len(internal), nd))
        internal.sort(key=lambda item: item[:2])
        children = np.empty((k - 1, 2), dtype=np.int64)
        for t, (_, _, nd) in enumerate(internal):
            nd["id"] = k + t
            children[t] = [c["id"] for c in nd["children"]]
        return cls(children, names=names, info=info, source="newick")

    # ------------------------------------------------------------------ JSON and files
    def to_dict(self) -> dict[str, Any]:
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
        support = data.get("support")       # absent in files written before bootstrap support
        if support is not None:
            try:
                support = np.array(support, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{source}: malformed support ({exc})") from None
        tree = cls(children, scores=scores, names=names, info=info, source=source, support=support)
        if "merges" in data:
            stored = data["merges"]
            if not isinstance(stored, list) or len(stored) != k - 1 or any(
                    [list(a), list(b)] != m for (a, b), m in zip(tree.iter_merges(), stored)):
                raise InputError(f"{source}: merges do not match children")
        return tree

    def save(self, path) -> None:
        """Write ``tree.json`` (atomically): indented JSON with one merge per line in the per-merge lists."""
        write_text(path, _tree_json(self.to_dict()))

    @classmethod
    def load(cls, path) -> "Hierarchy":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a valid JSON file ({exc})") from None
        return cls.from_dict(data, source=str(path))

    def write(self, out_dir, names=None) -> dict[str, Path]:
        """Write tree.json, linkage.npy and tree.nwk into ``out_dir`` atomically; return the paths."""
        out_dir = Path(out_dir)
        names = self.names if names is None else self._names_or_ids(names)
        tree = Hierarchy(self.children, scores=self.scores, names=names, info=self.info, support=self.support)
        paths = {"tree": out_dir / "tree.json", "linkage": out_dir / "linkage.npy",
                 "newick": out_dir / "tree.nwk"}
        tree.save(paths["tree"])
        write_npy(paths["linkage"], self.to_linkage())
        write_text(paths["newick"], tree.to_newick() + "\n")
        return paths

    def _names_or_ids(self, names) -> list[str]:
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


def _parse_newick(text: str) -> dict:
    """Parse into nested dicts {children, label, length}, iteratively (deep trees are fine)."""
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
                last["label"] = value     # internal node label: ignored by the hierarchy
            else:
                raise InputError(f"newick: unexpected label {value!r}")
    if stack or root is None or not ended:
        raise InputError("newick: incomplete tree (unbalanced parentheses or missing ';')")
    return root
