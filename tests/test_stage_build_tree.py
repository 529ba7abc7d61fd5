"""The pipeline's `l2h.bootstrap` option: it reaches the build_tree job (command and rerun trigger), and the
stage then writes the support of each merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from l2h.hierarchy import Hierarchy
from l2h.stages.app import Job
from l2h.stages.build_tree import run
from l2h.stages.plan import Plan

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_bootstrap_reaches_build_tree_and_triggers_reruns():
    base, boot = Plan(CONF, overrides="l2h.bootstrap=0"), Plan(CONF, overrides="l2h.bootstrap=50 l2h.bootstrap_seed=3")
    jobs = [fields for stage, fields in base.jobs() if stage == "build_tree"]
    assert jobs
    for fields in jobs:
        assert base.tracked("build_tree", fields)["l2h"]["bootstrap"] == 0
        tracked = boot.tracked("build_tree", fields)["l2h"]
        assert (tracked["bootstrap"], tracked["bootstrap_seed"]) == (50, 3)
        command = boot.command("build_tree", fields, boot.inputs("build_tree", fields))
        assert "l2h.bootstrap=50" in command and "l2h.bootstrap_seed=3" in command
    for stage, fields in base.jobs():
        if stage in ("train_clusterer", "extract_features"):
            assert base.tracked(stage, fields) == boot.tracked(stage, fields)


def test_build_tree_writes_supports(tmp_path):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(400, 6)) * 3).astype(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    cfg = OmegaConf.create({"l2h": OmegaConf.load(CONF / "l2h" / "default.yaml")})
    results = {}
    for bootstrap in (0, 20):
        cfg.l2h.bootstrap = bootstrap
        out = tmp_path / f"b{bootstrap}"
        run(cfg, Job("build_tree", {"logits": str(tmp_path / "logits.npy")}, out, out, {}))
        results[bootstrap] = Hierarchy.load(out / "tree.json")
    assert results[0].support is None
    assert results[20].support.shape == (5,) and results[20].info["bootstrap"]["resamples"] == 20
    assert results[20].merges == results[0].merges
    assert ")1;" in (tmp_path / "b20" / "tree.nwk").read_text()
