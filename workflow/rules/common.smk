# Compose the experiment with Hydra and expose the plan to the rules (see l2h.stages.plan). Every rule takes
# its inputs, outputs, command line, rerun trigger, log, threads and resources from its stage's declaration
# (SPEC in src/l2h/stages/<stage>.py) through the helpers below.
#   --config experiment=NAME        an experiment of conf/experiment/ (default: conf/config.yaml's, demo)
#   --config overrides="..."        Hydra overrides; a comma list / range() on a grid key is a sweep
#   --config tag=NAME               write the table as tables/<experiment>+NAME (keeps sweeps apart)
#   --config conf_dir=PATH          another conf/ folder (default: conf/ beside the Snakefile)
import json
import sys
import time
from pathlib import Path

import yaml

from l2h import schema
from l2h.errors import InputError
from l2h.stages import session
from l2h.stages.plan import Plan

L2H_STARTED = time.time()
try:
    if workflow.is_main_process:
        session.hold_lock(Path.cwd())
    schema.check(dict(config), yaml.safe_load(Path(workflow.basedir, "workflow/schemas/config.schema.yaml").read_text()),
                 label="--config")
    PLAN = Plan(config.get("conf_dir", Path(workflow.basedir) / "conf"), experiment=config.get("experiment"),
                overrides=config.get("overrides"), tag=None if config.get("tag") is None else str(config["tag"]))
except (InputError, RuntimeError) as exc:
    session.fail(str(exc))

if workflow.is_main_process:
    print(f"l2h: experiment {PLAN.name}: {len(PLAN.runs)} runs, results in {PLAN.results}/", file=sys.stderr)
    for line in session.sweep_corrupt(PLAN.all_outputs(), Path(PLAN.results), execute=session.executes(sys.argv)):
        print(line, file=sys.stderr)

wildcard_constraints:
    **PLAN.wildcard_constraints(),


onerror:
    for line in session.failed_job_errors(PLAN.logs(), L2H_STARTED):
        print(line, file=sys.stderr)


def stage_inputs(stage):
    """The named input files of a job of `stage` (use with unpack)."""
    return lambda wildcards: PLAN.inputs(stage, dict(wildcards))


def stage_outputs(stage):
    """The job's outputs, flagged `update`: Snakemake keeps the previous set until the job succeeds and
    restores it if the job fails (the stage itself replaces the set only when complete)."""
    return [update(path) for path in PLAN.output_patterns(stage)]


def stage_log(stage):
    return PLAN.log_pattern(stage)


def stage_threads(stage):
    return PLAN.threads(stage)


def stage_local(stage):
    return PLAN.stages[stage].local


def stage_priority(stage):
    return PLAN.stages[stage].priority


def stage_resources(stage):
    """GPU (from the job's options: k-means and pixels need none), memory and run time of a cluster job."""
    spec = PLAN.stages[stage]
    return {"gpu": lambda wildcards: int(PLAN.needs_gpu(stage, dict(wildcards))),
            "mem_mb": lambda wildcards, input: PLAN.mem_mb(stage, input.size_mb),
            "runtime": spec.runtime}


def stage_command(stage):
    """The job's command line: python -m l2h.stages.<stage> plus its Hydra overrides.

    It reads the job's input files, so Snakemake does not treat it as a rerun trigger (paths and other
    values that do not change results may differ between runs); `stage_trigger` is the trigger."""
    return lambda wildcards, input: PLAN.command(stage, dict(wildcards), dict(input.items()))


def stage_trigger(stage):
    """What the job's results depend on (JSON): the result-changing keys of its options and what it computes.
    A change in it re-runs the job (Snakemake's params trigger); runtime knobs are left out."""
    return lambda wildcards: json.dumps(PLAN.tracked(stage, dict(wildcards)), sort_keys=True)
