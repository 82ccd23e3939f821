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


def test_gpu_step_bench_times_the_compact_policy_on_cpu(tiny_sequential: Path, tmp_path: Path):
    """`--compact-epochs`: the compact semantic-ID policy's SFT epoch, GRPO step and beam evaluation timed
    in its own `rec-rl train configs/explicit.yaml` process (here a tiny shape on the tiny data)."""
    out = tmp_path / "gpu_step.json"
    shape = ("policy.architecture={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
             "num_attention_heads: 2, num_key_value_heads: 2}")
    sets = [shape, f"data.path={tiny_sequential}", "codes.levels=2", "codes.codebook_bits=2", "train.test_rows=4",
            "train.valid_rows=1", "eval.ks=[1, 5]", "eval.beam_width=5", "eval.bootstrap=20", "reward.k=10",
            "train.sft.per_device_train_batch_size=2", "train.sft.warmup_steps=0",
            "train.grpo={max_steps: 2, save_steps: 2, per_device_train_batch_size: 4, num_generations: 2, "
            "max_completion_length: 3}"]
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_step.py"), "--archs", "--compact-epochs", "2",
                             "--out", str(out), *[f"--compact-set={s}" for s in sets]],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    compact = report["compact"]
    assert report["results"] == [] and compact["sft_epochs"] == 2 and compact["sft_steps"] > 0
    assert 0 < compact["parameters_m"] < 0.1, "the tiny shape asked for, not the shipped one"
    assert compact["sft_s_per_epoch"] > 0 and compact["grpo_step_s"] > 0 and compact["beam_users_per_s"] > 0
    assert compact["beam_users"] == 4
    assert "| codes-lm (configs/explicit.yaml) |" in result.stdout


def test_gpu_check_script_runs_the_bench_on_cpu(tiny_sequential: Path, tmp_path: Path):
    """`scripts/gpu_check.sh run OUT ...`: the one command a GPU machine runs (here without .gpu/ wheels, with
    the tiny policy and no compact epoch) writes OUT/gpu_step.json and its log."""
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "run", str(out), "--archs", "tiny",
                             "--steps", "2", "--compact-epochs", "0", f"data.path={tiny_sequential}",
                             "train.test_rows=4", "train.valid_rows=1", "train.grpo.per_device_train_batch_size=4",
                             "train.grpo.num_generations=2", "train.grpo.max_completion_length=6", "reward.k=10",
                             "eval.bootstrap=20"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    (row,) = json.loads((out / "gpu_step.json").read_text())["results"]
    assert row["architecture"] == "tiny" and row["step_s"] > 0
    assert "| tiny |" in (out / "gpu_step.log").read_text()


def test_generation_bench_times_every_setup_against_the_default_batch(tiny_sequential: Path, tmp_path: Path):
    out = tmp_path / "generation.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "generation.py"), "--rows", "3", "--out", str(out),
                             f"data.path={tiny_sequential}", "policy.model=tiny", "data.user_split=shared"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {row["setup"]: row for row in report["results"]}
    assert list(rows) == ["batch 16", "batch 32 (default)", "batch 64", "batch 32, cap 48", "batch 32, cap 64",
                          "batch 32, no shared prefix"]
    assert report["shared_prefix_tokens"] > 0 and not rows["batch 32, no shared prefix"]["shared prefix"]
    default = rows["batch 32 (default)"]
    assert default["same queries as batch 32"] == 1.0 and default["speed vs batch 32"] == 1.0
    assert all(row["rows"] == 3 and row["seconds"] > 0 and 0 <= row["same queries as batch 32"] <= 1
               for row in rows.values())
    assert rows["batch 32, cap 64"]["tokens generated"] >= default["tokens generated"], "a longer cap writes no less"
    assert "| batch 64 |" in result.stdout and "| batch 64 |" in out.with_suffix(".md").read_text()
