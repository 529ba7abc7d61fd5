"""Figures. Rendered with matplotlib's Agg canvas directly (no pyplot, no global backend change)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from l2h.errors import InputError
from l2h.io import atomic_path

MAX_LABELLED_LEAVES = 150
COLOURED_GROUPS = 8
GROUP_COLOURS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                 "tab:cyan")


def _layout(hierarchy) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every node (2K−1): x = the merge step that created it (0 for leaves); leaves at y = 0..K−1
    top to bottom in depth-first order (G* above G†), a merged node midway between its children."""
    k = hierarchy.k
    x = np.concatenate([np.zeros(k), np.arange(1, k)])
    y = np.empty(2 * k - 1)
    y[hierarchy.leaf_order()] = np.arange(k)
    children = hierarchy.children
    for t in range(k - 1):
        y[k + t] = (y[children[t, 0]] + y[children[t, 1]]) / 2
    return x, y


def _segments(hierarchy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per merge, the three lines of its bracket: child a to the node's step, the vertical, child b."""
    k = hierarchy.k
    a, b = hierarchy.children[:, 0], hierarchy.children[:, 1]
    node = np.arange(k, 2 * k - 1)
    points = np.stack([
        np.stack([x[a], y[a], x[node], y[a]], axis=1),
        np.stack([x[node], y[a], x[node], y[b]], axis=1),
        np.stack([x[b], y[b], x[node], y[b]], axis=1),
    ], axis=1)                                                      # (K−1, 3, 4)
    return points.reshape(k - 1, 3, 2, 2)


def plot_dendrogram(hierarchy, path: str | os.PathLike, *, names: Sequence[str] | None = None,
                    title: str | None = None) -> None:
    """Write the dendrogram of ``hierarchy`` (a :class:`~l2h.hierarchy.Hierarchy`) as a PNG.

    Leaves are listed top to bottom, labelled with ``names`` (default: the hierarchy's names, else
    leaf ids) while K ≤ 150; the figure grows with K so that labels stay readable. The x axis is the
    merge step (root on the left); the top ``COLOURED_GROUPS`` groups are coloured. With bootstrap
    support (``hierarchy.support``), each merge is marked by a dot coloured by its support (colour bar).
    Written atomically.

    Examples
    --------
    >>> from l2h.hierarchy import Hierarchy
    >>> tree = Hierarchy([[0, 1], [2, 3]], support=[0.9, 1.0])
    >>> plot_dendrogram(tree, "dendrogram.png", names=["cat", "dog", "car"])  # doctest: +SKIP
    """
    k = hierarchy.k
    names = list(names if names is not None else (getattr(hierarchy, "names", None) or range(k)))
    if len(names) != k:
        raise InputError(f"{path}: {len(names)} leaf names for {k} leaves")
    labelled = k <= MAX_LABELLED_LEAVES
    font = max(5.0, min(11.0, 700.0 / k)) if labelled else 0.0
    height = max(4.0, k * font / 72 * 1.45 + 1.5) if labelled else 8.0
    width = 10.0 + (max(len(str(n)) for n in names) * font / 72 * 0.6 if labelled else 0.0)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    x, y = _layout(hierarchy)
    groups = min(COLOURED_GROUPS, k)
    first_uncoloured = k - groups          # merges after this step join the top groups: black
    group_of = hierarchy.cut(groups)
    colours = np.full(k - 1, "black", dtype=object)
    for t in range(first_uncoloured):
        leaf = hierarchy.members(k + t)[0]
        colours[t] = GROUP_COLOURS[group_of[leaf] % len(GROUP_COLOURS)]
    lines = _segments(hierarchy, x, y).reshape(-1, 2, 2)
    ax.add_collection(LineCollection(lines, colors=np.repeat(colours, 3).tolist(),
                                     linewidths=max(0.3, min(1.0, 200.0 / k))))
    if hierarchy.support is not None:
        nodes = np.arange(k, 2 * k - 1)
        dots = ax.scatter(x[nodes], y[nodes], c=hierarchy.support, cmap="viridis", norm=Normalize(0, 1),
                          s=max(2.0, min(30.0, 3000.0 / k)), zorder=3, edgecolors="none")
        bar = fig.colorbar(dots, ax=ax, fraction=0.03, pad=0.02 if not labelled else 0.12)
        bar.set_label("bootstrap support")
    ax.set_xlim(k - 1 + 0.5, 0)
    ax.set_ylim(k - 0.5, -0.5)
    ax.yaxis.tick_right()
    if labelled:
        ax.set_yticks(np.arange(k), [str(names[i]) for i in hierarchy.leaf_order()], fontsize=font)
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    ax.set_xlabel("merge step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title(title or f"L2H hierarchy over {k} clusters")
    if labelled:
        fig.tight_layout()
    else:
        fig.subplots_adjust(left=0.04, right=0.96 if hierarchy.support is None else 0.93, top=0.95, bottom=0.07)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
