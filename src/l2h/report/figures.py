"""Figures: the dendrogram PNG of a tree and the sweep plots of an experiment (metric vs K, bars per
aggregation/strategy, agreement per label level). Rendered with matplotlib's Agg canvas directly (no pyplot,
no global backend change)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
GROUP_COLOURS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


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
    points = np.stack(
        [
            np.stack([x[a], y[a], x[node], y[a]], axis=1),
            np.stack([x[node], y[a], x[node], y[b]], axis=1),
            np.stack([x[b], y[b], x[node], y[b]], axis=1),
        ],
        axis=1,
    )  # (K−1, 3, 4)
    return points.reshape(k - 1, 3, 2, 2)


def plot_dendrogram(
    hierarchy, path: str | os.PathLike, *, names: Sequence[str] | None = None, title: str | None = None
) -> None:
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
    first_uncoloured = k - groups  # merges after this step join the top groups: black
    group_of = hierarchy.cut(groups)
    colours = np.full(k - 1, "black", dtype=object)
    for t in range(first_uncoloured):
        leaf = hierarchy.members(k + t)[0]
        colours[t] = GROUP_COLOURS[group_of[leaf] % len(GROUP_COLOURS)]
    lines = _segments(hierarchy, x, y).reshape(-1, 2, 2)
    ax.add_collection(
        LineCollection(lines, colors=np.repeat(colours, 3).tolist(), linewidths=max(0.3, min(1.0, 200.0 / k)))
    )
    if hierarchy.support is not None:
        nodes = np.arange(k, 2 * k - 1)
        dots = ax.scatter(
            x[nodes],
            y[nodes],
            c=hierarchy.support,
            cmap="viridis",
            norm=Normalize(0, 1),
            s=max(2.0, min(30.0, 3000.0 / k)),
            zorder=3,
            edgecolors="none",
        )
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


# ------------------------------------------------------------------------------------------------ sweep plots
_LABELS = {"nmi": "NMI", "ari": "ARI", "acc": "ACC", "dp": "dendrogram purity", "lp": "leaf purity"}


def _metric_label(metric: str) -> str:
    coarse = metric.startswith("coarse_")
    name = _LABELS[metric.removeprefix("coarse_")]
    return f"{'coarse ' if coarse else ''}{name} (score, 0–1)"


def _series_label(key: Mapping[str, Any], varying: Sequence[str]) -> str:
    parts = [str(key["method"])] + [
        f"K={key[c]}" if c == "k" else str(key[c]) for c in varying if c != "method" and key.get(c) not in ("", None)
    ]
    return " · ".join(parts)


def _varying(frame, columns: Sequence[str]) -> list[str]:
    """The columns worth naming in a legend: those with several values besides "" (a baseline's strategy)."""
    return [c for c in columns if frame[c].astype(str).replace("", None).nunique() > 1]


def _panels(metrics: Sequence[str], title: str) -> tuple[Figure, list]:
    cols = 2 if len(metrics) == 4 else min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 1.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(len(metrics))]
    fig.suptitle(title)
    return fig, axes


def save_figure(fig: Figure, stem: str | os.PathLike) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.svg``, atomically and byte-reproducibly (no date, fixed ids)."""
    import matplotlib

    out = []
    for fmt in ("png", "svg"):
        path = Path(f"{os.fspath(stem)}.{fmt}")
        with matplotlib.rc_context({"svg.hashsalt": "l2h", "svg.fonttype": "path"}), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
        out.append(path)
    return out


def _empty(fig: Figure, text: str) -> None:
    fig.text(0.5, 0.5, text, ha="center", va="center")


def _legend(fig: Figure, ax, title: str | None = None) -> None:
    """One legend for all panels, below them."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        width = fig.get_figwidth() * 72 / (5.5 * max(len(label) for label in labels) + 40)  # ~5.5 pt per char
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=max(1, min(3, len(labels), int(width))),
            fontsize="small",
            title=title,
        )


def plot_k_sweep(frame, stem: str | os.PathLike, *, title: str = "") -> list[Path]:
    """Every metric against K for each setting run at several K: the mean over seeds with ± std error bars,
    and each seed's value as a dot. ``frame``: :func:`l2h.report.tables.runs_frame`. Writes PNG and SVG."""
    from l2h.report.tables import metric_columns

    settings = ["method", "dataset", "backbone", "aggregation", "strategy", "labels"]
    metrics = metric_columns(frame)
    fig, axes = _panels(metrics, title or "Metrics against the number of clusters K (mean ± std over seeds)")
    swept = frame.groupby(settings, sort=False).filter(lambda g: g["k"].nunique() > 1)
    varying = _varying(swept, settings) if not swept.empty else []
    for key, group in swept.groupby(settings, sort=False):
        label = _series_label(dict(zip(settings, key)), varying)
        stats = group.groupby("k")[metrics].agg(["mean", "std"])
        ks = stats.index.to_numpy(dtype=float)
        for ax, metric in zip(axes, metrics):
            line = ax.errorbar(
                ks, stats[(metric, "mean")], yerr=stats[(metric, "std")].fillna(0.0), marker="o", capsize=3, label=label
            )
            ax.plot(group["k"].to_numpy(dtype=float), group[metric], ".", color=line[0].get_color(), alpha=0.4)
    for ax, metric in zip(axes, metrics):
        if not swept.empty:
            ax.set_xticks(sorted(swept["k"].unique()))
        ax.set_xlabel("K (number of clusters)")
        ax.set_ylabel(_metric_label(metric))
        ax.grid(alpha=0.3)
    if swept.empty:
        _empty(fig, "no setting is run at several K")
    else:
        _legend(fig, axes[0])
    return save_figure(fig, stem)


def plot_ablation(frame, column: str, stem: str | os.PathLike, *, title: str = "") -> list[Path]:
    """Bars per value of ``column`` (``aggregation`` or ``strategy``) for every L2H setting run with several,
    one panel per metric; error bars: std over seeds. Writes PNG and SVG."""
    import numpy as np

    from l2h.report.tables import metric_columns

    settings = [c for c in ("method", "dataset", "backbone", "k", "aggregation", "strategy") if c != column]
    metrics = metric_columns(frame)
    fig, axes = _panels(metrics, title or f"L2H by {column} (mean ± std over seeds)")
    l2h = frame[frame[column] != ""]
    swept = l2h.groupby(settings, sort=False).filter(lambda g: g[column].nunique() > 1)
    if swept.empty:
        _empty(fig, f"no setting is run with several values of {column}")
    else:
        values = list(dict.fromkeys(swept[column]))
        groups = list(swept.groupby(settings, sort=False))
        varying = _varying(swept, settings)
        names = [_series_label(dict(zip(settings, key)), varying) for key, _ in groups]
        width = 0.8 / len(values)
        for ax, metric in zip(axes, metrics):
            for i, value in enumerate(values):
                stats = [g.loc[g[column] == value, metric] for _, g in groups]
                x = np.arange(len(groups)) + (i - (len(values) - 1) / 2) * width
                ax.bar(
                    x,
                    [s.mean() for s in stats],
                    width,
                    yerr=[s.std() if len(s) > 1 else 0 for s in stats],
                    capsize=2,
                    label=value,
                )
            ax.set_xticks(np.arange(len(groups)), names, rotation=20, ha="right", fontsize="small")
            ax.set_ylabel(_metric_label(metric))
            ax.set_xlabel("setting")
            ax.grid(axis="y", alpha=0.3)
        _legend(fig, axes[0], title=column)
    return save_figure(fig, stem)


def plot_levels(frame, stem: str | os.PathLike, *, title: str = "") -> list[Path]:
    """Agreement with the labels at each level a dataset has (its classes, then its coarse labels, against
    which the tree is cut at that many groups): one line per setting, mean over seeds. Writes PNG and SVG."""
    settings = ["method", "dataset", "backbone", "k", "aggregation", "strategy", "labels"]
    metrics = [m for m in ("nmi", "ari", "acc", "dp") if f"coarse_{m}" in frame.columns]
    fig, axes = _panels(metrics or ["nmi"], title or "Agreement with the labels at each level (mean over seeds)")
    rows = frame[frame["coarse_nmi"].notna()] if metrics else frame.iloc[:0]
    if rows.empty:
        _empty(fig, "no run has coarse labels")
    else:
        varying = _varying(rows, settings[:-1])
        for key, group in rows.groupby(settings, sort=False):
            label = _series_label(dict(zip(settings, key)), varying)
            for ax, metric in zip(axes, metrics):
                ax.plot([0, 1], [group[metric].mean(), group[f"coarse_{metric}"].mean()], marker="o", label=label)
        for ax, metric in zip(axes, metrics):
            ax.set_xticks([0, 1], ["classes", "coarse labels\n(tree cut at their number)"])
            ax.set_xlim(-0.3, 1.3)
            ax.set_xlabel("label level")
            ax.set_ylabel(_LABELS[metric] + " (score, 0–1)")
            ax.grid(alpha=0.3)
        _legend(fig, axes[0])
    return save_figure(fig, stem)
