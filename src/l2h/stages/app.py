"""What every stage entry point shares: the Hydra main, the job's files, and the records beside its outputs.

A stage module defines ``run(cfg, job) -> dict`` (the work; returns extra provenance) and calls
:func:`stage_main`. The pipeline passes the job's files in the ``stage`` node (see ``conf/config.yaml``);
after ``run`` succeeds, ``<record>.config.yaml`` (the resolved config the stage depends on) and
``<record>.provenance.json`` (config, package versions, input checksums) are written beside the outputs.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from l2h.errors import InputError
from l2h.io import write_provenance, write_text
from l2h.stages.plan import STAGES, default_conf_dir

log = logging.getLogger("l2h.stages")


@dataclass(frozen=True)
class Job:
    """The files of one job: named inputs (a path or a list of paths), the output folder, what it computes."""

    stage: str
    inputs: dict[str, Any]
    output: Path
    run: dict[str, Any]

    def input(self, name: str) -> Any:
        if name not in self.inputs:
            raise InputError(f"{self.stage}: input {name!r} not given (stage.inputs has {sorted(self.inputs)})")
        return self.inputs[name]

    def files(self) -> list[str]:
        """Every input file, in a stable order."""
        out: list[str] = []
        for value in self.inputs.values():
            out += [value] if isinstance(value, str) else list(value)
        return out

    @property
    def record_stem(self) -> str:
        return STAGES[self.stage].record_stem.format(**self.run)


def resolved(cfg, groups) -> dict[str, Any]:
    """The resolved config of the given groups plus the ``stage`` node, as plain data."""
    from omegaconf import OmegaConf

    out = {group: OmegaConf.to_container(cfg[group], resolve=True) for group in groups}
    out["stage"] = OmegaConf.to_container(cfg.stage, resolve=True)
    return out


def remove_stale_temporaries(folder: Path, names: list[str]) -> None:
    """Delete temporaries a killed earlier attempt of this job left beside its own output files."""
    if not folder.is_dir():
        return
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def stage_main(stage: str, body: Callable[[Any, Job], dict | None]) -> None:
    """Run ``body`` as the Hydra application of ``stage`` (``python -m l2h.stages.<stage> [overrides]``)."""
    import hydra
    from omegaconf import OmegaConf

    spec = STAGES[stage]

    @hydra.main(config_path=str(default_conf_dir()), config_name="config", version_base="1.3")
    def main(cfg) -> None:
        node = OmegaConf.to_container(cfg.stage, resolve=True)
        job = Job(stage=stage, inputs=dict(node.get("inputs") or {}), output=Path(node["output"]),
                  run=dict(node.get("run") or {}))
        names = [n.format(**job.run) for n in spec.outputs]
        remove_stale_temporaries(job.output, [*names, f"{job.record_stem}.config.yaml",
                                              f"{job.record_stem}.provenance.json"])
        log.info("%s: %s -> %s", stage, job.run, job.output)
        try:
            extra = body(cfg, job) or {}
        except InputError as exc:
            log.error("%s failed: %s", stage, exc)
            sys.exit(2)
        config = resolved(cfg, (*spec.groups, "paths"))
        write_text(job.output / f"{job.record_stem}.config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
        write_provenance(job.output / f"{job.record_stem}.provenance.json", config, job.files(), stage=stage,
                         **extra)
        log.info("%s done", stage)

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    main()
