"""The experiment plan: compose an experiment with Hydra, expand its grid into runs, and the one layout of
result paths and stage command lines that the Snakemake rules and the stage entry points share.

Snakemake owns the DAG; Hydra only composes configuration. ``workflow/rules/common.smk`` builds one
:class:`Plan` per invocation (experiment + command-line overrides); every rule takes its output paths,
inputs, command line and rerun-trigger config from it, and the stages read the same layout back.
"""

from __future__ import annotations

import copy
import itertools
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from l2h.errors import InputError

# ---------------------------------------------------------------------------------------------------------
# Stages, splits, layout
# ---------------------------------------------------------------------------------------------------------

#: Logical splits (keys of every dataset config's ``splits``): clusterers are fitted on ``train``;
#: L2H, the baselines and every metric use ``test`` (paper.md §6.5).
FIT_SPLIT, EVAL_SPLIT = "train", "test"
SPLITS = (FIT_SPLIT, EVAL_SPLIT)

#: The files a tree-producing method folder holds.
TREE_FILES = ("tree.json", "linkage.npy", "tree.nwk", "leaves.npy", "clusters.npy")


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its module ``l2h.stages.<name>``, the config groups whose resolved values it
    depends on (its rerun trigger), its output folder (layout template) and the files it writes there."""

    name: str
    groups: tuple[str, ...]
    folder: str
    outputs: tuple[str, ...]
    record: str = ""  # stem of the <record>.config.yaml / <record>.provenance.json files (default: name)

    @property
    def record_stem(self) -> str:
        return self.record or self.name


# Layout templates, relative to ``paths.results``; placeholders are the Snakemake wildcards.
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

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prepare_data", ("dataset",), DATA, ("labels.npz", "classes.json")),
    Stage("prefetch_weights", ("backbone",), WEIGHTS, ("{backbone}.json",), record="{backbone}"),
    Stage("extract_features", ("dataset", "backbone"), FEATURES,
          tuple(f"{split}{ext}" for split in SPLITS for ext in (".npy", ".meta.json"))),
    Stage("train_clusterer", ("clusterer",), CLUSTERER, ("model.npz", "logits.npy", "info.json")),
    Stage("build_tree", ("l2h",), L2H, TREE_FILES),
    Stage("run_baseline", ("baseline",), BASELINE, TREE_FILES + ("indices.npy", "info.json")),
    Stage("evaluate", (), "{run}", ("metrics.json", "leaf_names.json")),
    Stage("report", ("experiment",), TABLES, ("{table}.csv", "{table}.md", "{table}.tex"), record="{table}"),
)}

#: Groups a user may override on the command line (``--config overrides=...``).
GROUPS = ("dataset", "backbone", "clusterer", "l2h", "baseline", "paths")
#: Grid dimensions, and the override keys that set them.
GRID_KEYS = ("dataset", "backbone", "clusterer", "k", "aggregation", "strategy", "seed", "baseline")
GRID_OVERRIDES = {"dataset": "dataset", "backbone": "backbone", "clusterer": "clusterer", "baseline": "baseline",
                  "clusterer.k": "k", "k": "k", "clusterer.seed": "seed", "seed": "seed",
                  "l2h.aggregation": "aggregation", "l2h.strategy": "strategy"}
#: Per stage and group, keys that change how the stage runs but not its results: left out of its rerun
#: trigger. Feature extraction's are ``l2h.features.backbone.RUNTIME_KEYS`` (not imported: that would load
#: torch into Snakemake); prefetching does depend on ``weights_dir``.
UNTRACKED = {"extract_features": {"backbone": ("batch_size", "num_workers", "weights_dir")},
             "prefetch_weights": {"backbone": ("batch_size", "num_workers")}}
#: Folder names at the top of the results tree that a dataset may not take.
RESERVED = {"data", "features", "weights", "tables", "figures", "reports", "logs"}
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_\-]*"


def _never(options: Iterable[str]) -> str:
    options = [re.escape(o) for o in options]
    return "|".join(options) if options else "(?!)"


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

    @property
    def clusterer_folder(self) -> str:
        return CLUSTERER.format(**self.fields())

    def descriptor(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.fields()}


def _template_regex(template: str, patterns: Mapping[str, str]) -> str:
    """A regex with one named group per placeholder of ``template``."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{patterns[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return "".join(out)


def hydra_value(value: Any) -> str:
    """``value`` written in Hydra's override grammar (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "${" in value:
            raise InputError(f"cannot pass {value!r} to a stage: '${{' would be read as an interpolation")
        # Hydra's quoted strings: escape the quote, and double the backslashes that precede a quote or the end
        escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, Mapping):
        for key in value:
            if not re.fullmatch(r"[A-Za-z_]\w*", str(key)):
                raise InputError(f"cannot pass key {key!r} to a stage")
        return "{" + ",".join(f"{key}:{hydra_value(val)}" for key, val in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise InputError(f"cannot pass a {type(value).__name__} to a stage")


def group_options(conf_dir: Path, group: str) -> list[str]:
    """The option names of a config group (its ``*.yaml`` files)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def default_conf_dir() -> Path:
    """``conf/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "conf"


# ---------------------------------------------------------------------------------------------------------
# Command-line overrides
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Overrides:
    """User overrides split into grid values (``dataset=a,b``, ``clusterer.k=5,10`` ...) and plain Hydra
    overrides passed through to the stages that read the group they touch.

    ``changes`` maps the text of each pass-through that sets an existing key (``clusterer.n_init=3``; not
    ``+key=``/``++key=``/``~key``) to that key within its group (``n_init``): the plan applies it to the options
    of the group that have the key (k-means, not TURTLE) and refuses it when none of the plan's options has it."""

    grid: dict[str, list] = field(default_factory=dict)
    passthrough: list[tuple[str, str]] = field(default_factory=list)  # (group, override text)
    changes: dict[str, str] = field(default_factory=dict)             # override text -> key within its group

    @classmethod
    def parse(cls, text: str | Iterable[str] | None, *, options: Mapping[str, list[str]]) -> "Overrides":
        """Parse overrides with Hydra's own parser; ``text`` is a string (split like a shell command line)
        or a list of override strings. A sweep (``a=1,2`` / ``range()`` / ``choice()`` / ``glob()``) or a
        list value on a grid key sets that grid dimension; sweeps over other keys are refused."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType, ValueType
        from hydra.errors import HydraException, OverrideParseException

        if text is None or text == "":
            return cls()
        items = shlex.split(text) if isinstance(text, str) else [str(t) for t in text]
        try:
            parsed = OverridesParser.create().parse_overrides(items)
        except (OverrideParseException, HydraException) as exc:
            raise InputError(f"overrides: cannot parse {items}: {exc}") from exc
        out = cls()
        for ov in parsed:
            key = ov.key_or_group
            if key in GRID_OVERRIDES and ov.type == OverrideType.CHANGE:
                dim = GRID_OVERRIDES[key]
                if ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
                    group = "clusterer" if dim == "clusterer" else dim
                    if group not in options:
                        raise InputError(f"overrides: glob() only selects config files, not values of {key}")
                    values = list(ov.value().filter(options[group]))
                elif ov.is_sweep_override():
                    values = list(ov.sweep_string_iterator())
                else:
                    value = ov.value()
                    values = list(value) if isinstance(value, list) else [value]
                if dim in out.grid:
                    raise InputError(f"overrides: {key} given twice")
                out.grid[dim] = values
                continue
            group = key.split(".")[0].split("@")[0]
            if group in ("experiment", "stage", "hydra"):
                hint = " (choose the experiment with --config experiment=NAME)" if group == "experiment" else ""
                raise InputError(f"overrides: {ov.input_line!r} is not allowed: the pipeline sets {group}{hint}")
            if group not in GROUPS:
                raise InputError(f"overrides: {ov.input_line!r} does not name a config group; groups: {GROUPS}")
            if ov.is_sweep_override():
                raise InputError(f"overrides: {ov.input_line!r} sweeps a value that is not part of the result "
                                 f"paths; sweeps are supported over {sorted(GRID_OVERRIDES)}")
            out.passthrough.append((group, ov.input_line))
            if ov.type == OverrideType.CHANGE and "." in key and "@" not in key:
                out.changes[ov.input_line] = key.split(".", 1)[1]
        return out


# ---------------------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------------------

class Plan:
    """The composed experiment and everything the workflow derives from it.

    Raises :class:`~l2h.errors.InputError` for an unknown experiment, dataset, backbone, clusterer or
    baseline, K < 2, an unknown aggregation or strategy, or an override that does not compose.
    """

    def __init__(self, conf_dir: str | Path | None = None, experiment: str | None = None,
                 overrides: str | Iterable[str] | None = None, *, tag: str | None = None):
        self.conf_dir = Path(conf_dir or default_conf_dir()).resolve()
        if not (self.conf_dir / "config.yaml").is_file():
            raise InputError(f"{self.conf_dir}: no config.yaml (expected the repository's conf/ folder)")
        self.options = {g: group_options(self.conf_dir, g)
                        for g in ("dataset", "backbone", "clusterer", "l2h", "baseline", "paths", "experiment")}
        self.overrides = Overrides.parse(overrides, options=self.options)
        base = self.compose(tuple(self._experiment_selection(experiment))
                            + tuple(o for g, o in self.overrides.passthrough if g == "paths"))
        from omegaconf import OmegaConf

        self.experiment = OmegaConf.to_container(base.experiment, resolve=True)
        self.name = str(self.experiment.get("name"))
        if tag is not None and not re.fullmatch(NAME_RE, str(tag)):
            raise InputError(f"tag {tag!r}: use letters, digits, '_' and '-'")
        self.table_name = self.name if not tag else f"{self.name}+{tag}"
        self.results = str(base.paths.results)
        self.settings = self._check_settings(self.experiment.get("settings") or {})
        self.thread_counts = self._check_threads(self.experiment.get("threads") or {})
        self.runs = self._expand()
        self._check_changes()
        for stage, fields in self.jobs():
            self.tracked(stage, fields)  # compose every job's config now: bad values fail before any job runs

    # -- composition ------------------------------------------------------------------------------------
    def _experiment_selection(self, experiment: str | None) -> list[str]:
        if experiment is None:
            return []
        if experiment not in self.options["experiment"]:
            raise InputError(f"unknown experiment {experiment!r}; available: {', '.join(self.options['experiment'])}")
        return [f"experiment={experiment}"]

    def compose(self, overrides: tuple[str, ...]):
        """The root config composed with ``overrides`` (cached)."""
        return _compose(str(self.conf_dir), tuple(overrides))

    # -- grid ---------------------------------------------------------------------------------------------
    def _check_settings(self, settings: Mapping[str, Any]) -> dict[str, list[str]]:
        out = {}
        for key, items in settings.items():
            group, _, option = str(key).partition("/")
            if group not in GROUPS or (option and option not in self.options[group]):
                raise InputError(f"experiment {self.name}: settings key {key!r} must be 'group' or 'group/option' "
                                 f"with an existing option (groups: {GROUPS})")
            items = [items] if isinstance(items, str) else list(items or [])
            parsed = Overrides.parse(items, options=self.options)
            if parsed.grid or any(g != group for g, _ in parsed.passthrough):
                raise InputError(f"experiment {self.name}: settings[{key!r}] may only set values of the "
                                 f"{group} group that are not grid dimensions, got {items}")
            out[key] = items
        return out

    def _check_threads(self, threads: Mapping[str, Any]) -> dict[str, int]:
        out = {}
        for stage, count in threads.items():
            if stage not in STAGES:
                raise InputError(f"experiment {self.name}: threads key {stage!r} is not a stage; stages: "
                                 f"{', '.join(STAGES)}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InputError(f"experiment {self.name}: threads[{stage!r}] must be an integer >= 1, got {count!r}")
            out[stage] = count
        return out

    def threads(self, stage: str, default: int) -> int:
        """The threads a job of ``stage`` asks for: the experiment's ``threads`` entry, else the rule's
        ``default`` (Snakemake caps it at ``--cores`` and passes it on as OMP_NUM_THREADS & co.)."""
        return self.thread_counts.get(stage, default)

    def _blocks(self) -> list[dict[str, list]]:
        grid = self.experiment.get("grid") or {}
        unknown = set(grid) - set(GRID_KEYS)
        if unknown:
            raise InputError(f"experiment {self.name}: unknown grid keys {sorted(unknown)}; use {GRID_KEYS}")
        blocks = []
        for extra in self.experiment.get("blocks") or [{}]:
            unknown = set(extra) - set(GRID_KEYS)
            if unknown:
                raise InputError(f"experiment {self.name}: unknown keys {sorted(unknown)} in blocks")
            block = {key: list(extra.get(key, grid.get(key)) or []) for key in GRID_KEYS}
            block.update({key: list(vals) for key, vals in self.overrides.grid.items()})
            blocks.append(block)
        return blocks

    def _check_name(self, group: str, name: Any) -> str:
        name = str(name)
        if name not in self.options[group]:
            raise InputError(f"unknown {group} {name!r} (experiment {self.name}); available: "
                             f"{', '.join(self.options[group]) or 'none'}")
        if group == "dataset" and name in RESERVED:
            raise InputError(f"dataset name {name!r} is reserved for a results folder")
        return name

    def _k(self, dataset: str, k: Any) -> int:
        if k is None or str(k).lower() in ("null", "none"):
            num = self.group_config("dataset", dataset).get("num_classes")
            if num is None:
                raise InputError(f"dataset {dataset}: K is null but the dataset config has no num_classes; "
                                 f"set clusterer.k")
            k = num
        try:
            k_int = int(k)
        except (TypeError, ValueError):
            raise InputError(f"K must be an integer >= 2, got {k!r}") from None
        if k_int != float(k) or k_int < 2:
            raise InputError(f"K must be an integer >= 2, got {k!r}")
        return k_int

    def _expand(self) -> list[Run]:
        from l2h.algorithm import AGGREGATIONS, STRATEGIES

        runs: dict[Run, None] = {}
        for block in self._blocks():
            datasets = [self._check_name("dataset", d) for d in block["dataset"]]
            backbones = []
            for b in block["backbone"]:
                for part in str(b).split("+"):
                    self._check_name("backbone", part)
                backbones.append(str(b))
            clusterers = [self._check_name("clusterer", c) for c in block["clusterer"]]
            baselines = [self._check_name("baseline", b) for b in block["baseline"]]
            for a in block["aggregation"]:
                if a not in AGGREGATIONS:
                    raise InputError(f"unknown aggregation {a!r}; choose from {', '.join(AGGREGATIONS)}")
            for s in block["strategy"]:
                if s not in STRATEGIES:
                    raise InputError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
            seeds = []
            for s in block["seed"]:
                if isinstance(s, bool) or not re.fullmatch(r"\d+", str(s)):
                    raise InputError(f"seed must be a non-negative integer, got {s!r}")
                seeds.append(int(s))
            for d, b, k, seed in itertools.product(datasets, backbones, block["k"], seeds):
                k = self._k(d, k)
                for c, a, s in itertools.product(clusterers, block["aggregation"], block["strategy"]):
                    runs[Run("l2h", d, b, c, k, seed, a, s)] = None
                for base in baselines:
                    own = self.group_config("baseline", base).get("features_backbone")
                    if own is not None:
                        self._check_name("backbone", own)
                    runs[Run("baseline", d, str(own or b), base, k, seed)] = None
        if not runs:
            raise InputError(f"experiment {self.name}: the grid is empty")
        return list(runs)

    # -- jobs ---------------------------------------------------------------------------------------------
    def jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (stage, wildcard values) job of the plan, without duplicates, in DAG order."""
        seen: dict[tuple, None] = {}
        for run in self.runs:
            seen[("prepare_data", (("dataset", run.dataset),))] = None
            for space in run.spaces:
                seen[("prefetch_weights", (("backbone", space),))] = None
                seen[("extract_features", (("dataset", run.dataset), ("backbone", space)))] = None
            f = run.fields()
            if run.kind == "l2h":
                seen[("train_clusterer", tuple((k, f[k]) for k in ("dataset", "backbone", "clusterer", "k",
                                                                     "seed")))] = None
                seen[("build_tree", tuple(f.items()))] = None
            else:
                seen[("run_baseline", tuple(f.items()))] = None
            seen[("evaluate", (("run", run.folder),))] = None
        seen[("report", (("experiment", self.table_name),))] = None
        return [(stage, dict(fields)) for stage, fields in seen]

    def run_of(self, folder: str) -> Run:
        """The run whose folder (relative to the results root) is ``folder``."""
        patterns = self.wildcard_constraints()
        for kind, template in (("l2h", L2H), ("baseline", BASELINE)):
            m = re.fullmatch(_template_regex(template, patterns), folder)
            if m:
                g = m.groupdict()
                method = g["clusterer"] if kind == "l2h" else g["baseline"]
                return Run(kind, g["dataset"], g["backbone"], method, int(g["k"]), int(g["seed"]),
                           g.get("aggregation"), g.get("strategy"))
        raise InputError(f"{folder}: not a run folder ({L2H} or {BASELINE})")

    def _selection(self, group: str, fields: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
        """The option a job selects in ``group`` and the plain values it sets there, from its wildcards."""
        if group == "clusterer":
            return fields["clusterer"], (f"clusterer.k={int(fields['k'])}", f"clusterer.seed={int(fields['seed'])}")
        if group == "l2h":
            return None, (f"l2h.aggregation={fields['aggregation']}", f"l2h.strategy={fields['strategy']}")
        if group == "experiment":
            return self.name, ()
        return fields[group], ()

    def _extras(self, group: str, option: str | None) -> list[str]:
        """The experiment's settings and the user's pass-through overrides for ``group`` (and ``option``)."""
        return self._settings(group, option) + [text for g, text in self.overrides.passthrough
                                                if g == group and self._applies(text, group, option)]

    def _settings(self, group: str, option: str | None) -> list[str]:
        """The experiment's settings for ``group`` and for ``group/option``."""
        return list(self.settings.get(group, [])) + (list(self.settings.get(f"{group}/{option}", [])) if option else [])

    def _applies(self, text: str, group: str, option: str | None) -> bool:
        """Whether the pass-through override ``text`` applies to ``option`` of ``group``: always, unless it
        sets a key that this option's config does not have (see :class:`Overrides`)."""
        key = self.overrides.changes.get(text)
        if key is None:
            return True
        base = ((f"{group}={option}",) if option else ()) + tuple(self._settings(group, option))
        node = _group_node(str(self.conf_dir), group, base, ())
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True

    def _check_changes(self) -> None:
        """Refuse a pass-through override that sets a key none of the plan's options of its group has."""
        used: dict[str, set] = {}
        for stage, fields in self.jobs():
            for group in STAGES[stage].groups:
                used.setdefault(group, set()).add(self._selection(group, fields)[0])
        used["paths"] = {None}
        for group, text in self.overrides.passthrough:
            options = used.get(group, set())
            if options and not any(self._applies(text, group, option) for option in options):
                names = ", ".join(sorted(o for o in options if o)) or group
                raise InputError(f"overrides: {text!r}: the key {self.overrides.changes[text]!r} is in no {group} "
                                 f"config this experiment uses ({names}), so the config does not compose")

    def group_overrides(self, stage: str, fields: Mapping[str, Any]) -> tuple[str, ...]:
        """The Hydra overrides that configure ``stage`` for the job with wildcard values ``fields``:
        per group its option, the experiment's settings, the user's pass-through overrides and the job's
        values; then the paths overrides."""
        out: list[str] = []
        for group in STAGES[stage].groups:
            option, values = self._selection(group, fields)
            out += ([f"{group}={option}"] if option is not None else []) + self._extras(group, option) + list(values)
        return tuple(out + self._extras("paths", None))

    def group_config(self, group: str, option: str | None = None, values: tuple[str, ...] = ()) -> dict[str, Any]:
        """The resolved ``group`` node as a job with ``option`` and ``values`` sees it (composed once per
        option and overrides; ``values`` are plain ``key=value`` overrides applied afterwards, as Hydra does).

        Groups are composed separately, with the other groups at their defaults: a group that interpolated
        a value of another selectable group would be resolved against that group's default here (no config
        does); the stage itself always composes the job's full config."""
        base = ([f"{group}={option}"] if option is not None else []) + self._extras(group, option)
        try:
            return copy.deepcopy(_group_node(str(self.conf_dir), group, tuple(base + self._extras("paths", None)),
                                             tuple(values)))
        except InputError as exc:
            raise InputError(f"{group}{'=' + option if option else ''}: {exc}") from None

    def tracked(self, stage: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The resolved config ``stage`` depends on for this job: its groups (runtime-only keys left out)
        and its run descriptor. A change in it re-runs the job."""
        out: dict[str, Any] = {}
        for group in STAGES[stage].groups:
            node = self.group_config(group, *self._selection(group, fields))
            out[group] = {k: v for k, v in node.items() if k not in UNTRACKED.get(stage, {}).get(group, ())}
        out["run"] = self.descriptor(stage, fields)
        return out

    def descriptor(self, stage: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """What the job computes (the ``stage.run`` node): its wildcard values, and for evaluate the run and
        the method's display name; for report the experiment, the figure of each run, its sweep plots (stems),
        its HTML page and the paper tables it compares with."""
        from l2h.report.tables import method_label, reference_names

        if stage == "evaluate":
            run = self.run_of(fields["run"])
            group = "clusterer" if run.kind == "l2h" else "baseline"
            node = self.group_config(group, run.method)
            return {**run.descriptor(), "method": method_label(run.kind, run.method, node)}
        if stage == "report":
            paper = [str(p) for p in self.experiment.get("paper") or []]
            unknown = sorted(set(paper) - set(reference_names()))
            if unknown:
                raise InputError(f"experiment {self.name}: paper tables {unknown} do not exist; available: "
                                 f"{', '.join(reference_names())}")
            return {"experiment": self.name, "table": self.table_name,
                    "description": str(self.experiment.get("description") or ""),
                    "figures": [self.figure(run) for run in self.runs], "plots": self.plot_stems(),
                    "report": self.path(REPORTS, f"{self.table_name}.html"), "paper": paper}
        return {key: (int(val) if key in ("k", "seed") else val) for key, val in fields.items()}

    def figure(self, run: Run) -> str | None:
        """The dendrogram PNG the report draws for ``run`` (L2H runs when the experiment wants figures)."""
        if run.kind != "l2h" or not self.experiment.get("figures", True):
            return None
        name = f"{run.dataset}_{run.backbone}_{run.method}_k{run.k}_s{run.seed}_{run.aggregation}_{run.strategy}.png"
        return self.path(FIGURES.format(experiment=self.table_name), name)

    # -- paths --------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.results.rstrip("/"), *parts])

    def folder(self, stage: str, fields: Mapping[str, Any]) -> str:
        return self.path(STAGES[stage].folder.format(**fields))

    def output_patterns(self, stage: str) -> list[str]:
        """Output paths of ``stage`` with wildcards (the rule's ``output:``), its record files included."""
        st = STAGES[stage]
        folder = self.path(st.folder)
        names = [*st.outputs, f"{st.record_stem}.config.yaml", f"{st.record_stem}.provenance.json"]
        return [f"{folder}/{name}" for name in names]

    def report_outputs(self) -> list[str]:
        """The report's tables, records, figures, sweep plots and HTML page (no wildcards: one report per
        invocation)."""
        tables = [p.format(table=self.table_name) for p in self.output_patterns("report")]
        return tables + self.figures() + self.plots() + [self.path(REPORTS, f"{self.table_name}.html")]

    def figures(self) -> list[str]:
        return [f for f in (self.figure(run) for run in self.runs) if f]

    def plot_stems(self) -> dict[str, str]:
        """The sweep plots the runs call for (``l2h.report.sweeps``), each as its path without extension."""
        from l2h.report.sweeps import PLOTS, has_levels, sweep_kinds

        levels = any(has_levels(self.group_config("dataset", d)) for d in dict.fromkeys(r.dataset for r in self.runs))
        runs = [{"kind": r.kind, "dataset": r.dataset, "backbone": r.backbone, "method": r.method, "k": r.k,
                 "aggregation": r.aggregation, "strategy": r.strategy} for r in self.runs]
        folder = FIGURES.format(experiment=self.table_name)
        return {kind: self.path(folder, PLOTS[kind]) for kind in sweep_kinds(runs, levels=levels)}

    def plots(self) -> list[str]:
        """The sweep plot files (PNG and SVG of each of :meth:`plot_stems`)."""
        from l2h.report.sweeps import FORMATS

        return [f"{stem}.{fmt}" for stem in self.plot_stems().values() for fmt in FORMATS]

    def log_pattern(self, stage: str) -> str:
        """The job's log file (under ``<results>/logs/<stage>/``, mirroring its output folder)."""
        st = STAGES[stage]
        if stage == "report":
            return self.path(LOGS, stage, f"{self.table_name}.log")
        stem = st.folder + ("/{backbone}" if stage == "prefetch_weights" else "")
        return self.path(LOGS, stage, stem + ".log")

    def wildcard_constraints(self) -> dict[str, str]:
        """A regex per wildcard; ``run`` matches an L2H or a baseline run folder."""
        from l2h.algorithm import AGGREGATIONS, STRATEGIES

        patterns = {
            "dataset": NAME_RE,
            "backbone": rf"{NAME_RE}(?:\+{NAME_RE})*",
            "clusterer": _never(self.options["clusterer"]),
            "baseline": _never(self.options["baseline"]),
            "k": r"\d+",
            "seed": r"\d+",
            "aggregation": _never(AGGREGATIONS),
            "strategy": _never(STRATEGIES),
        }
        runs = (_template_regex(t, patterns) for t in (L2H, BASELINE))
        patterns["run"] = "|".join(re.sub(r"\(\?P<\w+>", "(?:", r) for r in runs)
        return patterns

    # -- per-job inputs and command lines -------------------------------------------------------------------
    def inputs(self, stage: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Named input files of the job (for the rule's ``input:`` via ``unpack``)."""
        if stage in ("prepare_data", "prefetch_weights"):
            return {}
        if stage == "extract_features":
            return {"classes": self.path(DATA.format(**fields), "classes.json"),
                    "weights": self.path(WEIGHTS, f"{fields['backbone']}.json")}
        if stage == "train_clusterer":
            spaces = fields["backbone"].split("+")
            feats = [self.path(FEATURES.format(dataset=fields["dataset"], backbone=b)) for b in spaces]
            return {"train": [f"{f}/{FIT_SPLIT}.npy" for f in feats],
                    "test": [f"{f}/{EVAL_SPLIT}.npy" for f in feats]}
        if stage == "build_tree":
            return {"logits": self.path(CLUSTERER.format(**fields), "logits.npy")}
        if stage == "run_baseline":
            spaces = fields["backbone"].split("+")
            return {"features": [self.path(FEATURES.format(dataset=fields["dataset"], backbone=b), f"{EVAL_SPLIT}.npy")
                                 for b in spaces]}
        if stage == "evaluate":
            run = self.run_of(fields["run"])
            folder = self.path(run.folder)
            data = self.path(DATA.format(dataset=run.dataset))
            out = {name.split(".")[0]: f"{folder}/{name}" for name in ("tree.json", "leaves.npy", "clusters.npy")}
            if run.kind == "baseline":
                out["indices"] = f"{folder}/indices.npy"
            out.update(labels=f"{data}/labels.npz", classes=f"{data}/classes.json")
            return out
        if stage == "report":
            files = []
            for run in self.runs:
                names = ("metrics.json", "leaf_names.json", "tree.json", "leaves.npy")
                names += ("indices.npy",) if run.kind == "baseline" else ()
                data = self.path(DATA.format(dataset=run.dataset))
                files += [self.path(run.folder, name) for name in names]
                files += [f"{data}/labels.npz", f"{data}/classes.json"]
            return {"runs": list(dict.fromkeys(files))}
        raise KeyError(stage)

    def command(self, stage: str, fields: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
        """The shell command of the job: ``python -m l2h.stages.<stage>`` with its Hydra overrides."""
        if stage == "report":
            named = {"metrics": [self.path(run.folder, "metrics.json") for run in self.runs],
                     "leaves": [self.path(run.folder, "leaves.npy") for run in self.runs],
                     "labels": [self.path(DATA.format(dataset=run.dataset), "labels.npz") for run in self.runs]}
            output = self.path(TABLES)
        else:
            named = {key: (list(val) if not isinstance(val, str) else val) for key, val in inputs.items()}
            output = self.folder(stage, fields)
        stage_node = {"inputs": named or None, "output": output, "run": self.descriptor(stage, fields)}
        args = [sys.executable, "-m", f"l2h.stages.{stage}", "--config-path", str(self.conf_dir),
                *self.group_overrides(stage, fields),
                *(f"stage.{key}={hydra_value(val)}" for key, val in stage_node.items())]
        return shlex.join(args)


@lru_cache(maxsize=None)
def _group_node(conf_dir: str, group: str, base: tuple[str, ...], values: tuple[str, ...]) -> dict[str, Any]:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = _compose(conf_dir, base)
    try:
        if values:
            cfg = copy.deepcopy(cfg)
            ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(list(values)), cfg)
        return OmegaConf.to_container(cfg[group], resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise InputError(f"the config does not compose with overrides {[*base, *values]}: {exc}") from None


@lru_cache(maxsize=None)
def _compose(conf_dir: str, overrides: tuple[str, ...]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise InputError(f"the config does not compose with overrides {list(overrides)}: {exc}") from None
