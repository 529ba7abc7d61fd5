"""The experiment plan: compose an experiment with Hydra, expand its grid into runs, validate every job,
and give the Snakemake rules each job's files, command line, rerun trigger and resources.

Snakemake owns the DAG; Hydra only composes configuration. ``workflow/rules/common.smk`` builds one
:class:`Plan` per invocation (experiment + command-line overrides). Everything stage-specific comes from the
stages' declarations (:mod:`l2h.stages.spec`), paths from :mod:`l2h.stages.layout`, override parsing from
:mod:`l2h.stages.overrides` and option checks from :mod:`l2h.schema`. Any bad name or value fails here, in
one line naming the key, the value, what is allowed and where it came from, before any job starts.
"""

from __future__ import annotations

import copy
import itertools
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from l2h import schema
from l2h.errors import InputError
from l2h.stages import layout
from l2h.stages.layout import CHECKPOINTS, DATA, FIGURES, LOGS, NAME_RE, REPORTS, RESERVED, TABLES, Run
from l2h.stages.overrides import GRID_KEYS, GRID_OVERRIDES, GROUPS, Overrides, hydra_value
from l2h.stages.spec import stages

#: Largest seed: every component's RNG takes it (scikit-learn and numpy's legacy seeding are 32-bit).
MAX_SEED = 2**32 - 1


def group_options(conf_dir: Path, group: str) -> list[str]:
    """The option names of a config group (its ``*.yaml`` files)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def default_conf_dir() -> Path:
    """``conf/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "conf"


class Plan:
    """The composed experiment and everything the workflow derives from it.

    Raises :class:`~l2h.errors.InputError` (one line) for an unknown experiment, dataset, backbone,
    clusterer or baseline, a bad grid value, an override that does not parse or sets an unknown key, or any
    option value its schema does not allow — for every job of the plan, before any job runs.
    """

    def __init__(
        self,
        conf_dir: str | Path | None = None,
        experiment: str | None = None,
        overrides: str | Iterable[str] | None = None,
        *,
        tag: str | None = None,
    ):
        self.conf_dir = Path(conf_dir or default_conf_dir()).resolve()
        if not (self.conf_dir / "config.yaml").is_file():
            raise InputError(f"{self.conf_dir}: no config.yaml (expected the repository's conf/ folder)")
        self.options = {g: group_options(self.conf_dir, g) for g in (*GROUPS, "experiment")}
        self._validated: dict[tuple, dict[str, Any]] = {}
        self.stages = stages()
        self.overrides = Overrides.parse(overrides, options=self.options)
        if experiment is not None and experiment not in self.options["experiment"]:
            raise InputError(f"experiment {experiment!r}: unknown; available: {', '.join(self.options['experiment'])}")
        self.experiment_file = self.conf_dir / "experiment" / f"{experiment or self._default_experiment()}.yaml"
        base = self.compose(
            ((f"experiment={experiment}",) if experiment else ())
            + tuple(text for group, text in self.overrides.passthrough if group == "paths")
        )
        from omegaconf import OmegaConf

        self.experiment = OmegaConf.to_container(base.experiment, resolve=True)
        self._check("experiment", self.experiment, option=self.experiment_file.stem)
        self.name = str(self.experiment["name"])
        if tag is not None and not re.fullmatch(NAME_RE, str(tag)):
            raise InputError(f"tag {tag!r}: use letters, digits, '_' and '-' (it names the table file)")
        self.table_name = self.name if not tag else f"{self.name}+{tag}"
        self.paths = OmegaConf.to_container(base.paths, resolve=True)
        self._check("paths", self.paths, option=None)
        self.results = str(self.paths["results"])
        self.settings = self._check_settings(self.experiment.get("settings") or {})
        self.thread_counts = self._check_threads(self.experiment.get("threads") or {})
        self.runs = self._expand()
        self._check_passthrough()
        self.patterns = layout.wildcard_patterns(self.options, *self._l2h_choices())
        for stage, fields in self.jobs():
            self.tracked(stage, fields)  # composes and validates every job's config: nothing runs on a bad value
        self._check_datasets(str(self.paths["data"]))

    def _default_experiment(self) -> str:
        from omegaconf import OmegaConf

        defaults = OmegaConf.load(self.conf_dir / "config.yaml").get("defaults", [])
        for item in defaults:
            if isinstance(item, Mapping) and "experiment" in item:
                return str(item["experiment"])
        raise InputError(f"{self.conf_dir / 'config.yaml'}: no default experiment in its defaults list")

    # -- composition and validation -----------------------------------------------------------------------
    def compose(self, overrides: tuple[str, ...]):
        """The root config composed with ``overrides`` (cached)."""
        return _compose(str(self.conf_dir), tuple(overrides))

    def _check(self, group: str, node: Mapping[str, Any], *, option: str | None) -> None:
        """Validate a composed option against its schema; the error names where the bad value came from."""
        try:
            schema.validate(group, node)
        except InputError as exc:
            raise InputError(f"{exc} ({self._source(group, str(exc), option)})") from None

    def _source(self, group: str, message: str, option: str | None) -> str:
        """Where the value named by ``message`` (``<group>.<key>...``) was set: an override, the experiment's
        settings or grid, or the option's file."""
        key = message.split(" ", 1)[0].rstrip(":")
        sub = key.split(".", 1)[1] if "." in key else ""
        for dim, name in (("k", "k"), ("seed", "seed")):
            if group in ("clusterer", "baseline") and sub == name:
                text = [t for t, d in GRID_OVERRIDES.items() if d == dim]
                if dim in self.overrides.grid:
                    return f"grid value from --config overrides ({'/'.join(text)})"
                return f"grid of {self._rel(self.experiment_file)}"
        for g, text in self.overrides.passthrough:
            head = text.lstrip("+~").split("=", 1)[0]
            if g == group and (head == key or key.startswith(head + ".") or head.startswith(key + ".")):
                return f"set by override {text!r}"
        for items in getattr(self, "settings", {}).values():
            for text in items:
                head = text.lstrip("+~").split("=", 1)[0]
                if head == key or key.startswith(head + "."):
                    return f"set by {self._rel(self.experiment_file)} settings: {text!r}"
        if group == "experiment":
            return f"in {self._rel(self.experiment_file)}"
        file = self.conf_dir / group / f"{option}.yaml" if option else self.conf_dir / group
        return f"in {self._rel(file)}"

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _check_settings(self, settings: Mapping[str, Any]) -> dict[str, list[str]]:
        out = {}
        for key, items in settings.items():
            group, _, option = str(key).partition("/")
            if group not in GROUPS or (option and option not in self.options[group]):
                raise InputError(
                    f"{self._rel(self.experiment_file)}: settings key {key!r} must be 'group' or "
                    f"'group/option' with an existing option (groups: {', '.join(GROUPS)})"
                )
            items = [items] if isinstance(items, str) else list(items or [])
            parsed = Overrides.parse(items, options=self.options, source=f"{self._rel(self.experiment_file)} settings")
            if parsed.grid or any(g != group for g, _ in parsed.passthrough):
                raise InputError(
                    f"{self._rel(self.experiment_file)}: settings[{key!r}] may only set values of the "
                    f"{group} group that are not grid dimensions, got {items}"
                )
            out[key] = items
        return out

    def _check_threads(self, threads: Mapping[str, Any]) -> dict[str, int]:
        unknown = sorted(set(threads) - set(self.stages))
        if unknown:
            raise InputError(
                f"{self._rel(self.experiment_file)}: threads key {unknown[0]!r} is not a stage; stages: "
                f"{', '.join(self.stages)}"
            )
        return {stage: int(count) for stage, count in threads.items()}

    def threads(self, stage: str) -> int:
        """The threads a job of ``stage`` asks for: the experiment's ``threads`` entry, else the stage's
        declared default (Snakemake caps it at ``--cores`` and passes it on as OMP_NUM_THREADS & co.)."""
        return self.thread_counts.get(stage, self.stages[stage].threads)

    @staticmethod
    def _l2h_choices() -> tuple[list[str], list[str]]:
        props = schema.schema("l2h", "l2h")["properties"]
        return list(props["aggregation"]["enum"]), list(props["strategy"]["enum"])

    # -- grid ---------------------------------------------------------------------------------------------
    def _grid_source(self, dim: str) -> str:
        if dim in self.overrides.grid:
            return "grid value from --config overrides"
        return f"grid of {self._rel(self.experiment_file)}"

    def _blocks(self) -> list[dict[str, list]]:
        grid = self.experiment.get("grid") or {}
        blocks = []
        for extra in self.experiment.get("blocks") or [{}]:
            block = {key: list(extra.get(key, grid.get(key)) or []) for key in GRID_KEYS}
            block.update({key: list(vals) for key, vals in self.overrides.grid.items()})
            blocks.append(block)
        return blocks

    def _check_name(self, group: str, name: Any) -> str:
        name = str(name)
        if name not in self.options[group]:
            raise InputError(
                f"{group} {name!r}: unknown (experiment {self.name}); available: "
                f"{', '.join(self.options[group]) or 'none'}"
            )
        if group == "dataset" and name in RESERVED:
            raise InputError(f"dataset name {name!r} is reserved for a results folder")
        return name

    def _k(self, dataset: str, k: Any) -> int:
        if k is None or str(k).lower() in ("null", "none"):
            num = self.group_config("dataset", dataset).get("num_classes")
            if num is None:
                raise InputError(
                    f"dataset {dataset}: K is null but the dataset config has no num_classes; set clusterer.k"
                )
            k = num
        if isinstance(k, bool) or not re.fullmatch(r"\d+", str(k).strip()) or int(str(k).strip()) < 2:
            raise InputError(f"clusterer.k = {k!r}: K must be an integer >= 2 ({self._grid_source('k')})")
        return int(str(k).strip())

    def _split_size(self, dataset: str, split: str) -> int | None:
        """The number of images of a split as the dataset's config states it (None: unknown, e.g. for an
        unofficial copy, whose sizes come from the copy)."""
        node = self.group_config("dataset", dataset)
        if node.get("unofficial"):
            return None
        name = (node.get("splits") or {}).get(split)
        return (node.get("sizes") or {}).get(name)

    def _expand(self) -> list[Run]:
        aggregations, strategies = self._l2h_choices()
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
                if a not in aggregations:
                    raise InputError(f"l2h.aggregation = {a!r}: must be one of {', '.join(aggregations)}")
            for s in block["strategy"]:
                if s not in strategies:
                    raise InputError(f"l2h.strategy = {s!r}: must be one of {', '.join(strategies)}")
            seeds = []
            for s in block["seed"]:
                if isinstance(s, bool) or not re.fullmatch(r"\d+", str(s)) or int(s) > MAX_SEED:
                    raise InputError(
                        f"seed = {s!r}: must be an integer in 0..{MAX_SEED}, the range every "
                        f"component's random generator accepts ({self._grid_source('seed')})"
                    )
                seeds.append(int(s))
            for d, b, k, seed in itertools.product(datasets, backbones, block["k"], seeds):
                k = self._k(d, k)
                for c, a, s in itertools.product(clusterers, block["aggregation"], block["strategy"]):
                    self._check_k(k, d, "train", f"clusterer {c}")
                    runs[Run("l2h", d, b, c, k, seed, a, s)] = None
                for base in baselines:
                    self._check_k(k, d, "test", f"baseline {base}")
                    own = self.group_config("baseline", base).get("features_backbone")
                    if own is not None:
                        self._check_name("backbone", own)
                    runs[Run("baseline", d, str(own or b), base, k, seed)] = None
        if not runs:
            raise InputError(f"experiment {self.name}: the grid is empty")
        return list(runs)

    def _check_k(self, k: int, dataset: str, split: str, what: str) -> None:
        size = self._split_size(dataset, split)
        if size is not None and k > size:
            raise InputError(
                f"clusterer.k = {k}: {what} cannot make more clusters than the {size} points of "
                f"{dataset}'s {split} split ({self._grid_source('k')})"
            )

    def _check_datasets(self, data_root: str) -> None:
        """Each dataset's config and local copy (its path, layout and archive checksums), before any job runs."""
        from l2h.data import check_dataset_config, verify_local_copy

        owners: dict[str, list[str]] = {}
        for name in dict.fromkeys(run.dataset for run in self.runs):
            node = self.group_config("dataset", name)
            check_dataset_config(node)
            if node.get("local") is not None:
                owners.setdefault(str(node["local"]), []).append(name)
        for local, names in owners.items():
            if len(names) > 1:
                raise InputError(
                    f"dataset.local={local} is set for {len(names)} datasets ({', '.join(names)}): a "
                    f"copy belongs to one dataset; give each its own in the experiment's settings "
                    f"(dataset/{names[0]}: ['dataset.local=...'])"
                )
        for name in dict.fromkeys(run.dataset for run in self.runs):
            verify_local_copy(self.group_config("dataset", name), data_root, progress=True)

    # -- jobs ---------------------------------------------------------------------------------------------
    def jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (stage, wildcard values) job of the plan, without duplicates, in DAG order."""
        seen: dict[tuple, None] = {}
        for name, spec in self.stages.items():
            for fields in spec.jobs(self):
                seen[(name, tuple(fields.items()))] = None
        return [(stage, dict(fields)) for stage, fields in seen]

    def run_of(self, folder: str) -> Run:
        """The run whose folder (relative to the results root) is ``folder``."""
        run = layout.parse_run(folder, self.patterns)
        if run is None:
            raise InputError(f"{folder}: not a run folder ({layout.L2H} or {layout.BASELINE})")
        return run

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
        return self._settings(group, option) + [
            text for g, text in self.overrides.passthrough if g == group and self._applies(text, group, option)
        ]

    def _settings(self, group: str, option: str | None) -> list[str]:
        """The experiment's settings for ``group`` and for ``group/option``."""
        return list(self.settings.get(group, [])) + (list(self.settings.get(f"{group}/{option}", [])) if option else [])

    def _applies(self, text: str, group: str, option: str | None) -> bool:
        """Whether the pass-through override ``text`` applies to ``option`` of ``group``: always, unless it
        changes a key that this option's config does not have (``+``/``++`` overrides always apply: the
        option's schema then decides)."""
        key = self.overrides.keys.get(text)
        if key is None or text in self.overrides.adds:
            return True
        node = self.base_node(group, option)
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True

    def base_node(self, group: str, option: str | None) -> dict[str, Any]:
        """``group``'s option with the experiment's settings, before the user's overrides."""
        base = ((f"{group}={option}",) if option else ()) + tuple(self._settings(group, option))
        return self._node(group, base)

    def _node(self, group: str, overrides: tuple[str, ...]) -> dict[str, Any]:
        from omegaconf import OmegaConf

        return _container(self.compose(overrides), group, OmegaConf)

    def _check_passthrough(self) -> None:
        """Refuse a pass-through override that changes a key none of the plan's options of its group has."""
        used: dict[str, set] = {}
        for stage, fields in self.jobs():
            for group in self.stages[stage].groups:
                used.setdefault(group, set()).add(self._selection(group, fields)[0])
        used["paths"] = {None}
        for group, text in self.overrides.passthrough:
            options = used.get(group)
            if not options:
                raise InputError(f"overrides: {text!r}: no job of experiment {self.name} uses a {group} option")
            if not any(self._applies(text, group, option) for option in options):
                names = ", ".join(sorted(o for o in options if o)) or group
                key = f"{group}.{self.overrides.keys[text]}"
                raise InputError(
                    f"{key}: unknown key: it is in no {group} option this experiment uses ({names}) "
                    f"(set by override {text!r})"
                )

    def group_overrides(self, stage: str, fields: Mapping[str, Any]) -> tuple[str, ...]:
        """The Hydra overrides that configure ``stage`` for the job with wildcard values ``fields``:
        per group its option, the experiment's settings, the user's pass-through overrides and the job's
        values; then the paths overrides."""
        out: list[str] = []
        for group in self.stages[stage].groups:
            option, values = self._selection(group, fields)
            out += ([f"{group}={option}"] if option is not None else []) + self._extras(group, option) + list(values)
        return tuple(out + self._extras("paths", None))

    def group_config(self, group: str, option: str | None = None, values: tuple[str, ...] = ()) -> dict[str, Any]:
        """The resolved and validated ``group`` node as a job with ``option`` and ``values`` sees it.

        Groups are composed separately, with the other groups at their defaults (no option interpolates a
        value of another selectable group); the stage itself composes the job's full config. A group is
        composed once per option and overrides; a job's own values (K, seed, aggregation, strategy) are
        then set on a copy."""
        key = (group, option, tuple(values))
        if key not in self._validated:
            base = tuple(
                ([f"{group}={option}"] if option is not None else [])
                + self._extras(group, option)
                + self._extras("paths", None)
            )
            node = _group_node(str(self.conf_dir), group, base, tuple(values))
            self._check(group, node, option=option)
            self._validated[key] = node
        return copy.deepcopy(self._validated[key])

    def config(self, stage: str, fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The resolved config of every group ``stage`` reads, for the job with wildcard values ``fields``."""
        return {group: self.group_config(group, *self._selection(group, fields)) for group in self.stages[stage].groups}

    def tracked(self, stage: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """What a job's results depend on: the result-changing keys of its groups (runtime knobs left out, as
        their schemas say) and its run descriptor. A change in it re-runs the job."""
        out = {group: schema.result_keys(group, node) for group, node in self.config(stage, fields).items()}
        out["run"] = self.descriptor(stage, fields)
        return out

    def descriptor(self, stage: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """What the job computes (the ``stage.run`` node): its wildcard values, and for evaluate the run and
        the method's display name; for report the experiment and the figure of each run."""
        if stage == "evaluate":
            run = self.run_of(fields["run"])
            group = "clusterer" if run.kind == "l2h" else "baseline"
            node = self.group_config(group, run.method)
            return {**run.descriptor(), "method": layout.method_label(run.kind, run.method, node)}
        if stage == "report":
            from l2h.report.tables import reference_names

            paper = [str(p) for p in self.experiment.get("paper") or []]
            unknown = sorted(set(paper) - set(reference_names()))
            if unknown:
                raise InputError(
                    f"experiment.paper = {unknown}: no such paper table; available: "
                    f"{', '.join(reference_names())} (in {self._rel(self.experiment_file)})"
                )
            return {
                "experiment": self.name,
                "table": self.table_name,
                "description": str(self.experiment.get("description") or ""),
                "figures": [self.figure(run) for run in self.runs],
                "plots": self.plot_stems(),
                "report": self.path(REPORTS, f"{self.table_name}.html"),
                "paper": paper,
            }
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
        return self.path(self.stages[stage].folder.format(**fields))

    def output_patterns(self, stage: str) -> list[str]:
        """Output paths of ``stage`` with wildcards (the rule's ``output:``), its record files included."""
        spec = self.stages[stage]
        if stage == "report":
            return self.report_outputs()
        folder = self.path(spec.folder)
        return [f"{folder}/{name}" for name in (*spec.outputs, *spec.records())]

    def outputs(self, stage: str, fields: Mapping[str, Any]) -> list[str]:
        """The output files of one job."""
        return [p.format(**fields) for p in self.output_patterns(stage)]

    def report_outputs(self) -> list[str]:
        """The report's tables, records, figures, sweep plots and HTML page (no wildcards: one report per
        invocation)."""
        spec = self.stages["report"]
        folder = self.path(spec.folder)
        tables = [f"{folder}/{name}".format(table=self.table_name) for name in (*spec.outputs, *spec.records())]
        figures = [f for f in (self.figure(run) for run in self.runs) if f]
        return tables + figures + self.plots() + [self.path(REPORTS, f"{self.table_name}.html")]

    def plot_stems(self) -> dict[str, str]:
        """The sweep plots the runs call for (``l2h.report.sweeps``), each as its path without extension."""
        from l2h.report.sweeps import PLOTS, has_levels, sweep_kinds

        levels = any(has_levels(self.group_config("dataset", d)) for d in dict.fromkeys(r.dataset for r in self.runs))
        runs = [
            {
                "kind": r.kind,
                "dataset": r.dataset,
                "backbone": r.backbone,
                "method": r.method,
                "k": r.k,
                "aggregation": r.aggregation,
                "strategy": r.strategy,
            }
            for r in self.runs
        ]
        folder = FIGURES.format(experiment=self.table_name)
        return {kind: self.path(folder, PLOTS[kind]) for kind in sweep_kinds(runs, levels=levels)}

    def plots(self) -> list[str]:
        """The sweep plot files (PNG and SVG of each of :meth:`plot_stems`)."""
        from l2h.report.sweeps import FORMATS

        return [f"{stem}.{fmt}" for stem in self.plot_stems().values() for fmt in FORMATS]

    def all_outputs(self) -> list[str]:
        """Every output of every job: the default target, so that a missing intermediate is rebuilt."""
        return list(dict.fromkeys(p for stage, fields in self.jobs() for p in self.outputs(stage, fields)))

    def log_pattern(self, stage: str) -> str:
        """The job's log file (under ``<results>/logs/<stage>/``, mirroring its output folder)."""
        spec = self.stages[stage]
        if stage == "report":
            return self.path(LOGS, stage, f"{self.table_name}.log")
        stem = spec.folder + ("/{backbone}" if "{backbone}" in "".join(spec.outputs) else "")
        return self.path(LOGS, stage, stem + ".log")

    def logs(self) -> list[str]:
        """The log file of every job of the plan."""
        return list(dict.fromkeys(self.log_pattern(stage).format(**fields) for stage, fields in self.jobs()))

    def wildcard_constraints(self) -> dict[str, str]:
        """A regex per wildcard; ``run`` matches an L2H or a baseline run folder."""
        return dict(self.patterns)

    # -- per-job inputs, resources and command lines --------------------------------------------------------
    def inputs(self, stage: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Named input files of the job (for the rule's ``input:`` via ``unpack``)."""
        return self.stages[stage].inputs(self, fields)

    def needs_gpu(self, stage: str, fields: Mapping[str, Any]) -> bool:
        """Whether the job asks for a GPU: its options' schemas decide (k-means, pixels: never)."""
        spec = self.stages[stage]
        config = self.config(stage, fields)
        return any(schema.needs_gpu(group, config[group]) for group in spec.gpu_groups)

    def mem_mb(self, stage: str, input_mb: float) -> int:
        spec = self.stages[stage]
        return int(max(spec.mem_mb, spec.mem_per_input * input_mb))

    def checkpoint_dir(self, stage: str, fields: Mapping[str, Any]) -> str | None:
        """Where the job keeps its checkpoints: inside its own folder, unless its option names a folder
        or has no checkpoints."""
        group = self.stages[stage].checkpoints
        if group is None:
            return None
        node = self.config(stage, fields)[group]
        if "checkpoint_dir" not in node or node["checkpoint_dir"] is not None:
            return None
        return f"{self.folder(stage, fields)}/{CHECKPOINTS.format(stage=stage)}"

    def command(self, stage: str, fields: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
        """The shell command of the job: ``python -m l2h.stages.<stage>`` with its Hydra overrides."""
        if stage == "report":
            named = {
                "metrics": [self.path(run.folder, "metrics.json") for run in self.runs],
                "leaves": [self.path(run.folder, "leaves.npy") for run in self.runs],
                "labels": [self.path(DATA.format(dataset=run.dataset), "labels.npz") for run in self.runs],
            }
            output = self.path(TABLES)
        else:
            named = {key: (list(val) if not isinstance(val, str) else val) for key, val in inputs.items()}
            output = self.folder(stage, fields)
        extra = []
        checkpoints = self.checkpoint_dir(stage, fields)
        if checkpoints is not None:
            extra.append(f"{self.stages[stage].checkpoints}.checkpoint_dir={hydra_value(checkpoints)}")
        stage_node = {"inputs": named or None, "output": output, "run": self.descriptor(stage, fields)}
        args = [
            sys.executable,
            "-m",
            f"l2h.stages.{stage}",
            "--config-path",
            str(self.conf_dir),
            *self.group_overrides(stage, fields),
            *extra,
            *(f"stage.{key}={hydra_value(val)}" for key, val in stage_node.items()),
        ]
        return shlex.join(args)


def _container(cfg, group: str, OmegaConf) -> dict[str, Any]:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg[group], resolve=True)
    except OmegaConfBaseException as exc:
        raise InputError(f"{group}: {' '.join(str(exc).split())}") from None


@cache
def _group_node(conf_dir: str, group: str, base: tuple[str, ...], values: tuple[str, ...]) -> dict[str, Any]:
    """``group`` of the root config composed with ``base``, with the plain ``key=value`` overrides ``values``
    set afterwards (parsed by Hydra's override parser, set with OmegaConf)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = _compose(conf_dir, base)
    if values:
        cfg = copy.deepcopy(cfg)
        try:
            for ov in OverridesParser.create().parse_overrides(list(values)):
                OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=False)
        except OmegaConfBaseException as exc:
            raise InputError(f"{group}: cannot set {' '.join(values)}: {' '.join(str(exc).split())}") from None
    return _container(cfg, group, OmegaConf)


@cache
def _compose(conf_dir: str, overrides: tuple[str, ...]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        message = " ".join(str(exc).split())
        raise InputError(
            f"the config does not compose with {' '.join(overrides) or 'no overrides'}: {message}"
        ) from None
