"""Figures. Rendered with matplotlib's Agg canvas directly (no pyplot, no global backend change)."""

from __future__ import annotations

import os
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.cluster.hierarchy import dendrogram

from l2h.errors import InputError
from l2h.io import atomic_path

MAX_LABELLED_LEAVES = 150
COLOURED_GROUPS = 8


def plot_dendrogram(hierarchy, path: str | os.PathLike, *, names: Sequence[str] | None = None,
                    title: str | None = None) -> None:
    """Write the dendrogram of ``hierarchy`` (a :class:`~l2h.hierarchy.Hierarchy`) as a PNG.

    Leaves are listed top to bottom, labelled with ``names`` (default: the hierarchy's names, else
    leaf ids) while K ≤ 150; the figure grows with K so that labels stay readable. The x axis is the
    merge step; the top ``COLOURED_GROUPS`` groups are coloured. Written atomically.
    """
    z = hierarchy.to_linkage()
    k = z.shape[0] + 1
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
    groups = min(COLOURED_GROUPS, k)
    dendrogram(z, ax=ax, orientation="left", labels=[str(n) for n in names], no_labels=not labelled,
               leaf_font_size=font or None, color_threshold=k - groups + 0.5, above_threshold_color="black")
    ax.set_xlabel("merge step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title(title or f"L2H hierarchy over {k} clusters")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
