"""Where every pipeline output lives, and how a run is named.

One path segment per parameter, every segment value a config-group name (``results/{dataset}/{backbone}/
{clusterer}_k{k}_s{seed}/l2h_{aggregation}_{strategy}/``). The Snakemake rules, the plan and the stages
all take paths from the templates here, so the layout is defined once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Logical splits (keys of every dataset config's ``splits``): clusterers are fitted on ``train``;
#: L2H, the baselines and every metric use ``test``.
FIT_SPLIT, EVAL_SPLIT = "train", "test"
SPLITS = (FIT_SPLIT, EVAL_SPLIT)

#: The files a tree-producing method folder holds.
TREE_FILES = ("tree.json", "linkage.npy", "tree.nwk", "leaves.npy", "clusters.npy")

# Folder templates, relative to ``paths.results``; placeholders are the Snakemake wildcards.
DATA = "data/{dataset}"
FEATURES = "features/{dataset}/{backbone}"
WEIGHTS = "weights"
CLUSTERER = "{dataset}/{backbone}/{clusterer}_k{k}_s{seed}"
L2H = CLUSTERER + "/l2h_{aggregation}_{strategy}"
BASELINE = "{dataset}/{backbone}/baseline_{baseline}_k{k}_s{seed}"
TABLES = "tables"
FIGURES = "figures/{experiment}"
REPORTS = "reports"
LOGS = "logs"
#: Hidden folders inside a job's output folder: its checkpoints (kept across attempts until it succeeds)
#: and the staging folder its outputs are written to before they replace the previous set.
CHECKPOINTS = ".checkpoints/{stage}"
STAGING = ".staging-{stage}"

#: Folder names at the top of the results tree that a dataset may not take.
RESERVED = {"data", "features", "weights", "tables", "figures", "logs", "reports"}
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_\-]*"

#: Display names of the clusterers and baselines (an option's ``display_name`` wins).
DISPLAY = {
    "kmeans": "kmeans",
    "turtle": "TURTLE",
    "temi": "TEMI",
    "agglomerative": "Agglomerative",
    "deepect": "DeepECT",
    "treevae": "TreeVAE",
}


def method_label(kind: str, name: str, cfg: Mapping[str, Any] | None = None) -> str:
    """``L2H-<clusterer>`` for L2H runs; the baseline's name, with its linkage where it has one."""
    cfg = cfg or {}
    base = cfg.get("display_name") or DISPLAY.get(name, name)
    if kind == "l2h":
        return f"L2H-{base}"
    linkage = cfg.get("linkage")
    return f"{base} ({linkage})" if linkage else base


@dataclass(frozen=True)
class Run:
    """One method run: L2H on a clusterer's logits (``kind="l2h"``) or a baseline (``kind="baseline"``).

    ``backbone`` joins several representation spaces with ``+`` (e.g. ``clip_vitl14+dinov2_vitg14``).
    """

    kind: str
    dataset: str
    backbone: str
    method: str
    k: int
    seed: int
    aggregation: str | None = None
    strategy: str | None = None

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.backbone.split("+"))

    def fields(self) -> dict[str, Any]:
        """The wildcard values of this run's folder."""
        out = {"dataset": self.dataset, "backbone": self.backbone, "k": self.k, "seed": self.seed}
        if self.kind == "l2h":
            out.update(clusterer=self.method, aggregation=self.aggregation, strategy=self.strategy)
        else:
            out.update(baseline=self.method)
        return out

    @property
    def folder(self) -> str:
        """The run's folder relative to the results root."""
        return (L2H if self.kind == "l2h" else BASELINE).format(**self.fields())

    def descriptor(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.fields()}


def alternatives(options: Iterable[str]) -> str:
    """A regex matching exactly one of ``options`` (nothing when there are none)."""
    options = [re.escape(o) for o in options]
    return "|".join(options) if options else "(?!)"


def template_regex(template: str, patterns: Mapping[str, str]) -> str:
    """A regex with one named group per placeholder of ``template``."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{patterns[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return "".join(out)


def wildcard_patterns(
    options: Mapping[str, Iterable[str]], aggregations: Iterable[str], strategies: Iterable[str]
) -> dict[str, str]:
    """A regex per wildcard of the layout; ``run`` matches an L2H or a baseline run folder."""
    patterns = {
        "dataset": NAME_RE,
        "backbone": rf"{NAME_RE}(?:\+{NAME_RE})*",
        "clusterer": alternatives(options["clusterer"]),
        "baseline": alternatives(options["baseline"]),
        "k": r"\d+",
        "seed": r"\d+",
        "aggregation": alternatives(aggregations),
        "strategy": alternatives(strategies),
    }
    runs = (template_regex(t, patterns) for t in (L2H, BASELINE))
    patterns["run"] = "|".join(re.sub(r"\(\?P<\w+>", "(?:", r) for r in runs)
    return patterns


def parse_run(folder: str, patterns: Mapping[str, str]) -> Run | None:
    """The run whose folder (relative to the results root) is ``folder``, or None."""
    for kind, template in (("l2h", L2H), ("baseline", BASELINE)):
        m = re.fullmatch(template_regex(template, patterns), folder)
        if m:
            g = m.groupdict()
            method = g["clusterer"] if kind == "l2h" else g["baseline"]
            return Run(
                kind,
                g["dataset"],
                g["backbone"],
                method,
                int(g["k"]),
                int(g["seed"]),
                g.get("aggregation"),
                g.get("strategy"),
            )
    return None
