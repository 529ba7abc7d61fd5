"""Self-contained HTML: one report page per experiment and the interactive view of a single tree.

Every script and style is inlined from ``l2h/report/assets`` and the plots are embedded as data URIs, so a
page opens offline in any browser and loads nothing from the network. Pages hold no timestamp: the same
inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from l2h.errors import InputError

ASSETS = Path(__file__).with_name("assets")
#: Flags for rendering the pages in a headless Chromium with no network (screenshots, tests, benchmarks): no
#: background connections, no GPU, no sandbox (root in a container).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Labels of the two numbers an L2H tree records per merge (``Hierarchy.scores``).
L2H_SCORES = ("score s(G*)", "affinity of G† to G*")


def node_stats(children: np.ndarray, leaves: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Points, majority class and purity of every node of a tree.

    Parameters
    ----------
    children : int array (K−1, 2)
        The tree's merges (``Hierarchy.children``).
    leaves : int array (N,)
        The leaf each point hangs on.
    labels : int array (N,)
        Each point's class.

    Returns
    -------
    dict with ``points`` (2K−1,), ``majority`` (2K−1,; the most frequent class, smallest id on ties, −1 for
    a node without points) and ``purity`` (2K−1,; its share of the node's points, 0 without points).
    Class counts are merged smaller into larger up the tree: O(N log N) even for point-level trees.

    Examples
    --------
    >>> out = node_stats(np.array([[0, 1]]), np.array([0, 0, 1]), np.array([2, 2, 5]))
    >>> out["majority"].tolist(), out["purity"].round(2).tolist()
    ([2, 5, 2], [1.0, 1.0, 0.67])
    """
    children = np.asarray(children, dtype=np.int64)
    k = children.shape[0] + 1
    leaves = np.asarray(leaves, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if leaves.shape != labels.shape:
        raise InputError(f"leaves ({leaves.shape}) and labels ({labels.shape}) differ in length")
    if leaves.size and (leaves.min() < 0 or leaves.max() >= k):
        raise InputError(f"leaves must lie in 0..{k - 1}")
    classes = int(labels.max()) + 1 if labels.size else 1
    pairs, counts = np.unique(leaves * classes + labels, return_counts=True)
    bags: list[dict[int, int] | None] = [dict() for _ in range(2 * k - 1)]
    for pair, count in zip(pairs.tolist(), counts.tolist()):
        bags[pair // classes][pair % classes] = count
    points = np.zeros(2 * k - 1, dtype=np.int64)
    majority = np.full(2 * k - 1, -1, dtype=np.int64)
    top = np.zeros(2 * k - 1, dtype=np.int64)
    for leaf in range(k):
        bag = bags[leaf]
        if bag:
            points[leaf] = sum(bag.values())
            best = max(bag.items(), key=lambda item: (item[1], -item[0]))
            majority[leaf], top[leaf] = best
    for t, (a, b) in enumerate(children.tolist()):
        v = k + t
        big, small = (a, b) if len(bags[a]) >= len(bags[b]) else (b, a)
        bag = bags[big]
        best = (int(top[big]), -int(majority[big])) if majority[big] >= 0 else (0, 0)
        for cls, count in bags[small].items():
            total = bag.get(cls, 0) + count
            bag[cls] = total
            if (total, -cls) > best:
                best = (total, -cls)
        bags[v], bags[a], bags[b] = bag, None, None
        points[v] = points[a] + points[b]
        if points[v]:
            top[v], majority[v] = best[0], -best[1]
    purity = np.divide(top, points, out=np.zeros(2 * k - 1), where=points > 0)
    return {"points": points, "majority": majority, "purity": purity}


def merge_support(tree, data: Mapping[str, Any] | None = None) -> list | None:
    """The per-merge bootstrap support of a tree, where it has one: ``tree.support``, a ``support`` list in
    its ``tree.json`` (``data``) or in its info; None otherwise."""
    for support in (getattr(tree, "support", None), (data or {}).get("support"), tree.info.get("support")):
        if support is not None:
            support = [None if s is None else float(s) for s in support]
            if len(support) != tree.k - 1:
                raise InputError(f"support: {len(support)} values for {tree.k - 1} merges")
            return support
    return None


def tree_payload(
    tree,
    *,
    names: Sequence[str] | None = None,
    leaves: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    support: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """What the dendrogram view of ``tree`` (a :class:`~l2h.hierarchy.Hierarchy`) needs, as plain data.

    ``names``: one label per leaf (default: the tree's names, else the majority class and its share where
    ``leaves`` and ``labels`` are given, else the leaf ids). With ``leaves`` (point → leaf) every node gets its
    number of points, and with ``labels`` its majority class (named by ``class_names``) and purity.

    Examples
    --------
    >>> from l2h.hierarchy import Hierarchy
    >>> data = tree_payload(Hierarchy([[0, 1], [2, 3]]), leaves=np.array([0, 1, 2]), labels=np.array([0, 0, 1]))
    >>> data["names"], data["points"]
    (['0 (100%)', '0 (100%)', '1 (100%)'], [1, 1, 1, 2, 3])
    """
    k = tree.k
    out: dict[str, Any] = {
        "k": k,
        "children": tree.children.tolist(),
        "points": None,
        "majority": None,
        "purity": None,
        "classes": None,
    }
    if leaves is not None:
        leaves = np.asarray(leaves)
        if labels is not None:
            stats = node_stats(tree.children, leaves, labels)
            n_classes = int(np.max(labels)) + 1 if len(labels) else 0
            classes = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
            if len(classes) < n_classes:
                raise InputError(f"labels go up to {n_classes - 1} but only {len(classes)} class names are given")
            out.update(
                points=stats["points"].tolist(),
                majority=stats["majority"].tolist(),
                purity=np.round(stats["purity"], 4).tolist(),
                classes=classes,
            )
        else:
            points = np.bincount(leaves, minlength=k).tolist()
            for a, b in tree.children.tolist():
                points.append(points[a] + points[b])
            out["points"] = points
    if names is None:
        names = tree.names
    if names is None and out["majority"] is not None:
        names = [
            f"{out['classes'][c]} ({p:.0%})" if c >= 0 else "(empty)"
            for c, p in zip(out["majority"][:k], out["purity"][:k])
        ]
    names = [str(n) for n in (names if names is not None else range(k))]
    if len(names) != k:
        raise InputError(f"{len(names)} leaf names for {k} leaves")
    out["names"] = names
    l2h = tree.scores is not None and tree.scores.ndim == 2 and tree.scores.shape[1] == len(L2H_SCORES)
    out["scores"] = None if tree.scores is None else np.asarray(tree.scores).reshape(k - 1, -1).tolist()
    out["score_names"] = (
        list(L2H_SCORES)
        if l2h
        else [
            f"score {i + 1}"
            for i in range(0 if tree.scores is None else np.asarray(tree.scores).reshape(k - 1, -1).shape[1])
        ]
    )
    heights = tree.info.get("linkage_heights")
    out["heights"] = [float(h) for h in heights] if heights is not None and len(heights) == k - 1 else None
    out["support"] = None if support is None else [None if s is None else float(s) for s in support]
    return out


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    text = text.replace("</", "<\\/").replace("<!--", "<\\!--")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_asset('report.css')}</style>\n</head>\n<body>\n"
        f"{body}\n<script>\n{_asset('report.js')}</script>\n</body>\n</html>\n"
    )


def _tree_section(index: int, title: str, payload: Mapping[str, Any], heading: str = "h3") -> str:
    element = f"tree-{index}"
    return (
        f'<{heading} id="{element}-title">{html.escape(title)}</{heading}>\n'
        f'<div class="tree-view" data-src="{element}"></div>\n{_json_script(element, payload)}\n'
    )


def tree_page(payload: Mapping[str, Any], *, title: str, description: str = "") -> str:
    """A standalone page with the interactive dendrogram of one tree (``payload``: :func:`tree_payload`)."""
    intro = f"<p>{html.escape(description)}</p>\n" if description else ""
    body = (
        f"<header><h1>{html.escape(title)}</h1>\n{intro}</header>\n<main>\n"
        f"{_tree_section(0, 'Dendrogram', payload, heading='h2')}</main>"
    )
    return _page(title, body)


def svg_data_uri(svg: bytes) -> str:
    """An SVG image as a ``data:`` URI (base64), for an ``<img>`` that needs no file beside the page."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def report_page(
    *,
    title: str,
    description: str = "",
    tables: Sequence[tuple[str, str]] = (),
    plots: Sequence[tuple[str, bytes]] = (),
    trees: Sequence[tuple[str, Mapping[str, Any]]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The report page of an experiment.

    Parameters
    ----------
    title, description : str
        The experiment's name and description.
    tables : sequence of (heading, HTML table)
        Tables from :func:`l2h.report.tables.to_html` (sorted by clicking a column header).
    plots : sequence of (caption, SVG bytes)
    trees : sequence of (title, payload)
        One interactive dendrogram per tree (payload: :func:`tree_payload`).
    notes : sequence of str
        Short paragraphs shown under the description.
    """
    nav = [("tables", "Tables")] + ([("plots", "Plots")] if plots else []) + ([("trees", "Trees")] if trees else [])
    parts = [f"<header><h1>{html.escape(title)}</h1>\n"]
    if description:
        parts.append(f"<p>{html.escape(description)}</p>\n")
    parts += [f'<p class="note">{html.escape(note)}</p>\n' for note in notes]
    parts.append("<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in nav) + "</nav>\n</header>\n<main>\n")
    parts.append('<section id="tables"><h2>Tables</h2>\n<p class="note">Click a column header to sort.</p>\n')
    for heading, table in tables:
        parts.append(f'<h3>{html.escape(heading)}</h3>\n<div class="table-wrap">{table}</div>\n')
    parts.append("</section>\n")
    if plots:
        parts.append('<section id="plots"><h2>Plots</h2>\n')
        for caption, svg in plots:
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" src="{svg_data_uri(svg)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>\n"
            )
        parts.append("</section>\n")
    if trees:
        parts.append(
            '<section id="trees"><h2>Trees</h2>\n<p class="note">Leaves are named by their majority '
            "class and its share of the leaf's points. Hover a node for its size, majority class, purity, "
            "support (when computed) and merge.</p>\n"
        )
        parts += [_tree_section(i, name, payload) for i, (name, payload) in enumerate(trees)]
        parts.append("</section>\n")
    parts.append("</main>")
    return _page(title, "".join(parts))
