"""A stage's declaration: what a Snakemake rule, its command line and its rerun trigger are derived from.

Every stage module ``l2h.stages.<name>`` declares ``SPEC = StageSpec(...)`` beside its ``run`` function:
the config groups it reads, its output folder and files, its named inputs, whether it runs where
Snakemake runs (downloads), and its resource needs. :func:`stages` collects the declarations; the rules
in ``workflow/rules/*.smk`` take everything from them through the plan.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from l2h.stages.plan import Plan

Inputs = Callable[["Plan", Mapping[str, Any]], dict[str, Any]]
Jobs = Callable[["Plan"], list[dict[str, Any]]]


@dataclass(frozen=True)
class StageSpec:
    """The declaration of a pipeline stage.

    Parameters
    ----------
    name : str
        The stage (= module ``l2h.stages.<name>`` = Snakemake rule).
    groups : tuple of str
        Config groups whose resolved values the stage reads: validated before any job runs; their
        result-changing keys are its rerun trigger.
    folder : str
        Layout template of its output folder (:mod:`l2h.stages.layout`).
    outputs : tuple of str
        The files it writes there (templates may use the job's wildcards).
    jobs : callable
        ``jobs(plan) -> [wildcards, ...]``, the stage's jobs in a plan (e.g. :func:`per_run`).
    inputs : callable
        ``inputs(plan, wildcards) -> {name: path or list of paths}``, the job's named input files.
    record : str
        Stem of the ``<record>.config.yaml`` / ``<record>.provenance.json`` files (default: the name).
    local : bool
        Runs where Snakemake runs (downloads, summaries), never as a cluster job.
    threads : int
        Threads a job asks for (an experiment's ``threads:`` entry may change it).
    mem_mb, runtime : int
        Memory (MB) and wall time (minutes) a cluster job asks for; ``mem_mb`` grows with the inputs'
        size by ``mem_per_input``.
    mem_per_input : float
        Extra memory per MB of input files.
    gpu_groups : tuple of str
        Groups whose option decides whether a job needs a GPU (the option schema's ``gpu``).
    checkpoints : str or None
        The group whose option gets ``checkpoint_dir`` inside the job's folder (when it has that key).
    priority : int
        Snakemake's job priority: among ready jobs, higher ones start first (long jobs early, so that short
        ones fill the cores beside them).
    """

    name: str
    groups: tuple[str, ...]
    folder: str
    outputs: tuple[str, ...]
    jobs: Jobs
    inputs: Inputs
    record: str = ""
    local: bool = False
    threads: int = 1
    mem_mb: int = 4000
    mem_per_input: float = 0.0
    runtime: int = 60
    gpu_groups: tuple[str, ...] = ()
    checkpoints: str | None = None
    priority: int = 0

    @property
    def record_stem(self) -> str:
        return self.record or self.name

    def records(self) -> tuple[str, str]:
        """The config and provenance record files it writes beside its outputs."""
        return f"{self.record_stem}.config.yaml", f"{self.record_stem}.provenance.json"


def no_inputs(plan: "Plan", fields: Mapping[str, Any]) -> dict[str, Any]:
    """For stages that read no files of the pipeline (downloads)."""
    return {}


# Which jobs a stage has, from the plan's runs (``jobs`` of a declaration).
def per_dataset(plan: "Plan") -> list[dict[str, Any]]:
    return [{"dataset": run.dataset} for run in plan.runs]


def per_space(plan: "Plan") -> list[dict[str, Any]]:
    return [{"backbone": space} for run in plan.runs for space in run.spaces]


def per_dataset_space(plan: "Plan") -> list[dict[str, Any]]:
    return [{"dataset": run.dataset, "backbone": space} for run in plan.runs for space in run.spaces]


def per_clusterer(plan: "Plan") -> list[dict[str, Any]]:
    keys = ("dataset", "backbone", "clusterer", "k", "seed")
    return [{key: run.fields()[key] for key in keys} for run in plan.runs if run.kind == "l2h"]


def per_run(kind: str | None):
    """Jobs with one job per run of ``kind`` (``l2h``, ``baseline``), or per run folder when ``kind`` is None."""

    def jobs(plan: "Plan") -> list[dict[str, Any]]:
        if kind is None:
            return [{"run": run.folder} for run in plan.runs]
        return [run.fields() for run in plan.runs if run.kind == kind]

    return jobs


def once(plan: "Plan") -> list[dict[str, Any]]:
    return [{"experiment": plan.table_name}]


@cache
def stages() -> dict[str, StageSpec]:
    """Every stage declared by a module of :mod:`l2h.stages`, in DAG order (the order of :data:`ORDER`,
    then any other stage by name)."""
    import l2h.stages as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"l2h.stages.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, StageSpec):
            if spec.name != info.name:
                raise RuntimeError(f"l2h.stages.{info.name} declares a stage named {spec.name!r}")
            found[spec.name] = spec
    return {
        name: found[name] for name in sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    }


#: The stages in DAG order (for listings; the DAG itself comes from the files).
ORDER = (
    "prepare_data",
    "prefetch_weights",
    "extract_features",
    "train_clusterer",
    "build_tree",
    "run_baseline",
    "evaluate",
    "report",
)
