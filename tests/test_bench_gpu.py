"""benchmarks/bench_gpu.py runs: its CPU smoke mode (tiny models of the same kinds, tiny sizes) writes every
part of the results file, and without CUDA the real mode stops at once with a one-line message."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_smoke_mode_writes_every_part(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--repeats", "1", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert [row["backbone"] for row in result["extraction"]] == ["clip_vitl14", "dinov2_vitg14"]
    for row in result["extraction"]:
        assert row["forward_only_img_s"] > 0 and row["pipeline_img_s"] > 0 and row["peak_gpu_memory_gib"] is None
    assert result["turtle"]["seconds_per_outer_step"] > 0 and result["turtle"]["steps_timed"] == 3
    assert result["temi"]["seconds_per_epoch"] > 0 and result["temi"]["iterations_per_epoch"] == 4
    assert "status" in result["treevae"]
    assert result["machine"]["load_average_1m"] >= 0 and result["load_average_1m_at_end"] >= 0


def test_without_cuda_it_stops_with_a_message(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU for the script, on any machine
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "gpu.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 1 and "CUDA is not available" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "gpu.json").exists()
