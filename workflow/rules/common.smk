# Compose the experiment with Hydra and expose the plan to the rules (see l2h.stages.plan).
#   --config experiment=NAME        an experiment of conf/experiment/ (default: conf/config.yaml's, demo)
#   --config overrides="..."        Hydra overrides; a comma list / range() on a grid key is a sweep
#   --config tag=NAME               write the table as tables/<experiment>+NAME (keeps sweeps apart)
#   --config conf_dir=PATH          another conf/ folder (default: conf/ beside the Snakefile)
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from l2h.errors import InputError
from l2h.stages.plan import Plan

CONF_DIR = Path(config.get("conf_dir", Path(workflow.basedir) / "conf"))
try:
    PLAN = Plan(CONF_DIR, experiment=config.get("experiment"), overrides=config.get("overrides"),
                tag=config.get("tag"))
except InputError as exc:
    raise WorkflowError(f"configuration error: {exc}") from None

print(f"l2h: experiment {PLAN.name}: {len(PLAN.runs)} runs, results in {PLAN.results}/", file=sys.stderr)

wildcard_constraints:
    **PLAN.wildcard_constraints(),


def stage_inputs(stage):
    """The named input files of a job of `stage` (use with unpack)."""
    return lambda wildcards: PLAN.inputs(stage, dict(wildcards))


def stage_command(stage):
    """The job's command line: python -m l2h.stages.<stage> plus its Hydra overrides.

    It reads the job's input files, so Snakemake does not treat it as a rerun trigger (paths and other
    values that do not change results may differ between runs); `stage_config` is the trigger."""
    return lambda wildcards, input: PLAN.command(stage, dict(wildcards), dict(input.items()))


def stage_config(stage):
    """The resolved config the job depends on (JSON): a change in it re-runs the job (params trigger)."""
    import json

    return lambda wildcards: json.dumps(PLAN.tracked(stage, dict(wildcards)), sort_keys=True)
