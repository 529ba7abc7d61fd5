"""What every stage entry point shares: the Hydra main, the checks before any work, and how outputs land.

A stage module declares ``SPEC`` (:mod:`l2h.stages.spec`), defines ``run(cfg, job) -> dict`` (the work;
returns extra provenance) and calls :func:`stage_main`. The pipeline passes the job's files in the
``stage`` node (see ``conf/config.yaml``). Before ``run``:

* the config groups the stage reads are validated against their schemas (:mod:`l2h.schema`);
* every input file is checked: it must exist, and where the stage that wrote it recorded its SHA-256
  (every stage records its outputs' checksums), the file must still match. A corrupt input is moved to
  ``<results>/.quarantine/`` so that the next run rebuilds it, and the job stops with one line.

``run`` writes into a staging folder beside the outputs; only when it succeeded are the records written
(``<record>.config.yaml``, ``<record>.provenance.json`` with the checksums of inputs and outputs) and the
whole set moved into place, so a failed or killed job never leaves a partial set of new files among the
previous ones. The job's checkpoints (kept inside its folder across attempts) are removed on success.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2h.errors import InputError
from l2h.io import write_provenance, write_text
from l2h.stages.integrity import output_record, verify_inputs
from l2h.stages.layout import CHECKPOINTS, STAGING
from l2h.stages.plan import default_conf_dir

log = logging.getLogger("l2h.stages")


@dataclass(frozen=True)
class Job:
    """The files of one job: named inputs (a path or a list of paths), the folder its outputs are written to
    (``output``: a staging folder, moved onto ``folder`` when the job succeeds) and what it computes."""

    stage: str
    inputs: dict[str, Any]
    output: Path
    folder: Path
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


def resolved(cfg, groups) -> dict[str, Any]:
    """The resolved config of the given groups plus the ``stage`` node, as plain data."""
    from omegaconf import OmegaConf

    out = {group: OmegaConf.to_container(cfg[group], resolve=True) for group in groups}
    out["stage"] = OmegaConf.to_container(cfg.stage, resolve=True)
    return out


def publish(staging: Path, folder: Path) -> list[str]:
    """Move every file of ``staging`` onto ``folder`` (each by one rename), then remove ``staging``."""
    names = sorted(p.name for p in staging.iterdir() if p.is_file())
    for name in names:
        os.replace(staging / name, folder / name)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    shutil.rmtree(staging)
    return names


def stage_main(stage: str, body: Callable[[Any, Job], dict | None]) -> None:
    """Run ``body`` as the Hydra application of ``stage`` (``python -m l2h.stages.<stage> [overrides]``)."""
    import hydra
    from omegaconf import OmegaConf

    from l2h import schema
    from l2h.stages.spec import stages

    spec = stages()[stage]

    @hydra.main(config_path=str(default_conf_dir()), config_name="config", version_base="1.3")
    def main(cfg) -> None:
        node = OmegaConf.to_container(cfg.stage, resolve=True)
        run = dict(node.get("run") or {})
        folder = Path(node["output"])
        job = Job(
            stage=stage,
            inputs=dict(node.get("inputs") or {}),
            output=folder / STAGING.format(stage=stage),
            folder=folder,
            run=run,
        )
        log.info("%s: %s -> %s", stage, job.run, job.folder)
        try:
            config = resolved(cfg, (*spec.groups, "paths"))
            for group in (*spec.groups, "paths"):
                schema.validate(group, config[group])
            checksums = verify_inputs(job.files(), results=Path(str(cfg.paths.results)))
            shutil.rmtree(job.output, ignore_errors=True)  # what a killed earlier attempt left
            job.output.mkdir(parents=True)
            extra = body(cfg, job) or {}
            write_text(
                job.output / f"{spec.record_stem.format(**run)}.config.yaml",
                OmegaConf.to_yaml(OmegaConf.create(config)),
            )
            write_provenance(
                job.output / f"{spec.record_stem.format(**run)}.provenance.json",
                config,
                checksums=checksums,
                stage=stage,
                outputs=output_record(job.output),
                **extra,
            )
        except InputError as exc:
            shutil.rmtree(job.output, ignore_errors=True)
            message = " ".join(str(exc).split())
            log.error("%s failed: %s", stage, message)
            print(f"l2h: error: {message}", file=sys.stderr)
            sys.exit(2)
        except BaseException:
            shutil.rmtree(job.output, ignore_errors=True)
            raise
        publish(job.output, job.folder)
        if spec.checkpoints is not None:
            own = job.folder / CHECKPOINTS.format(stage=stage)
            if str(OmegaConf.select(cfg, f"{spec.checkpoints}.checkpoint_dir") or "") == str(own):
                shutil.rmtree(own, ignore_errors=True)
                if own.parent.is_dir() and not any(own.parent.iterdir()):
                    own.parent.rmdir()
        log.info("%s done", stage)

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    main()
