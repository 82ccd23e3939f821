"""The GPU step benchmark runs on CPU too (a tiny random policy), and writes what a GPU run would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_gpu_step_bench_runs_on_cpu_with_a_tiny_policy(tiny_sequential: Path, tmp_path: Path):
    out = tmp_path / "gpu_step.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_step.py"), "--archs", "tiny", "--steps", "2",
                             "--out", str(out), f"data.path={tiny_sequential}", "train.test_rows=4", "train.valid_rows=1",
                             "train.grpo.per_device_train_batch_size=4", "train.grpo.num_generations=2",
                             "train.grpo.max_completion_length=6", "reward.k=10", "eval.bootstrap=20"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert report["device"] == "no GPU" and row["architecture"] == "tiny" and row["steps_measured"] == 1
    assert 1 < row["parameters_m"] < 10 and row["completions_per_step"] == 4
    assert 0 < row["generation_s"] < row["step_s"] and row["generated_tokens_per_s"] > 0
    assert row["peak_gpu_mb"] is None, "no GPU, no GPU memory figure"
    assert "| tiny |" in result.stdout
