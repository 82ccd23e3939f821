"""GRPO step cost of randomly initialised policies of real sizes: the check to run on a GPU machine.

    python bench/gpu_step.py [--archs smollm2-135m llama-0.5b] [--steps 6] [--tokenizer DIR]
                             [--compact-epochs 1] [--compact-set KEY=VALUE ...]
                             [--out bench/results/gpu_step.json] [key=value ...]

A GPU machine here has torch and transformers but no model hub and at most 64 MiB of files brought to
it, so the policies are random-initialised (`rec_rl.policy.tiny_policy` with each architecture's
LlamaConfig fields) beside SmolLM2's tokenizer (`--tokenizer`, a folder of ~3 MB; `scripts/gpu_check.sh`
writes it on the CPU machine). Each architecture trains `--steps` GRPO steps of the embedded data in
its own `rec-rl train` process: bm25s rewards, the default 2 prompts x 8 completions, bf16 on a GPU.
The first step is dropped as warm-up. Per architecture: parameters, seconds per step split into
generation / reward / the rest (forward, backward, optimizer), completion tokens generated per second,
and the GPU memory peak. On a CPU machine it runs too (`--archs tiny`, as the tests do), without the
GPU memory column. Random weights write random text: the timings are the point, not the rewards.

`--compact-epochs N` also times the explicit route's compact semantic-ID policy (`configs/explicit.yaml`,
`policy.model=codes-lm`): N epochs of its next-item SFT, a few GRPO steps and the beam evaluation of
`train.test_rows` users, in its own `rec-rl train` process (`--compact-set` overrides its config; the
catalog's embeddings and codes come from `REC_RL_CACHE`, which `scripts/gpu_check.sh` carries). Reported:
parameters, seconds per SFT epoch (its validation of `train.valid_rows` users included), seconds per
GRPO step and beam-evaluated users per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from safetensors import safe_open

from rec_rl.experiments.launch import run_child
from rec_rl.policy import TINY_ARCHITECTURE, tiny_policy
from report import machine, markdown_table, write_json

ARCHITECTURES = {
    "tiny": TINY_ARCHITECTURE,
    # SmolLM2-135M-Instruct's own shape (134.5M parameters with its 49,152-token tied embedding).
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, max_position_embeddings=8192),
    # A ~0.5B Llama of the same family and vocabulary (0.49B parameters).
    "llama-0.5b": dict(hidden_size=1280, intermediate_size=3584, num_hidden_layers=24, num_attention_heads=20,
                       num_key_value_heads=4, max_position_embeddings=8192),
}
# The default LoRA sits on the top 4 layers; the tiny model has 2.
ARCHITECTURE_OVERRIDES = {"tiny": ["policy.lora_layers=[-1]"]}
COMMON = ["retriever.engine=bm25s", "train.eval_every=0", "train.test_rows=32", "train.valid_rows=16",
          "train.wandb_mode=disabled"]


def parameter_count(model_dir: Path) -> int:
    """Parameters of the model saved in `model_dir`, read from its safetensors header (no weights loaded)."""
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        return sum(int(np.prod(weights.get_slice(key).get_shape())) for key in weights.keys())


def run_architecture(name: str, tokenizer: str | None, steps: int, folder: Path, overrides: list[str]) -> dict:
    """One architecture's `rec-rl train` run; its parameters, per-step timings and memory."""
    import torch

    model_dir = tiny_policy(folder / "policy", tokenizer_source=tokenizer, architecture=ARCHITECTURES[name])
    config = json.loads((model_dir / "config.json").read_text())
    run_dir = folder / "run"
    gpu = ["train.grpo.bf16=true"] if torch.cuda.is_available() else []
    command = [sys.executable, "-m", "rec_rl.cli", "train", f"policy.model={model_dir}", f"train.run_dir={run_dir}",
               f"train.grpo.max_steps={steps}", f"train.grpo.save_steps={steps}", *COMMON, *gpu,
               *ARCHITECTURE_OVERRIDES.get(name, []), *overrides]
    child = run_child(command, {**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if child.exit_code != 0:
        raise SystemExit(f"{name}: `{' '.join(command)}` failed with exit status {child.exit_code}")
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    measured = [e for e in events if e["kind"] == "train"][1:]  # step 1 warms up kernels and allocators
    mean = {key: float(np.mean([e[key] for e in measured]))
            for key in ("time/step_s", "time/generation_s", "time/reward_s")}
    completions = int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["grpo"]["per_device_train_batch_size"])
    tokens = float(np.mean([e["completions/mean_length"] for e in measured])) * completions
    parameters = parameter_count(model_dir)
    peak = [e["memory/peak_gpu_mb"] for e in measured if "memory/peak_gpu_mb" in e]
    return {"architecture": name, "parameters_m": parameters / 1e6, "layers": config["num_hidden_layers"],
            "hidden": config["hidden_size"], "steps_measured": len(measured), "completions_per_step": completions,
            "step_s": mean["time/step_s"], "generation_s": mean["time/generation_s"], "reward_s": mean["time/reward_s"],
            "rest_s": mean["time/step_s"] - mean["time/generation_s"] - mean["time/reward_s"],
            "generated_tokens_per_s": tokens / mean["time/generation_s"],
            "peak_gpu_mb": max(peak) if peak else None, "process_peak_rss_mb": child.peak_rss_mb,
            "wall_s": child.seconds}


COMPACT = ["train.eval_every=0", "train.wandb_mode=disabled", "train.test_rows=2000", "train.valid_rows=1000",
           "train.grpo.max_steps=6", "train.grpo.save_steps=6"]


def run_compact(epochs: int, folder: Path, overrides: list[str]) -> dict:
    """The compact policy's `rec-rl train configs/explicit.yaml` run for `epochs` SFT epochs; its timings."""
    import torch

    run_dir = folder / "run"
    gpu = ["train.sft.bf16=true", "train.grpo.bf16=true"] if torch.cuda.is_available() else []
    config = Path(__file__).parents[1] / "configs" / "explicit.yaml"
    command = [sys.executable, "-m", "rec_rl.cli", "train", str(config), f"train.run_dir={run_dir}",
               f"train.sft.num_train_epochs={epochs}", *COMPACT, *gpu, *overrides]
    child = run_child(command, {**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if child.exit_code != 0:
        raise SystemExit(f"compact policy: `{' '.join(command)}` failed with exit status {child.exit_code}")
    results = json.loads((run_dir / "results.json").read_text())
    base = next(s for s in results["systems"] if s["name"] == results["roles"]["base"])
    sft_steps = max(e["step"] for e in map(json.loads, (run_dir / "sft_metrics.jsonl").read_text().splitlines()))
    parameters = parameter_count(run_dir / "init")
    rows = results["protocol"]["table"]["rows"]
    return {"architecture": "codes-lm (configs/explicit.yaml)", "parameters_m": parameters / 1e6, "sft_epochs": epochs,
            "sft_steps": sft_steps, "sft_s_per_epoch": results["sft_seconds"] / epochs,
            "grpo_step_s": results["timing"].get("time/step_s"), "beam_users": rows,
            "beam_users_per_s": rows / base["seconds"], "process_peak_rss_mb": child.peak_rss_mb, "wall_s": child.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="*", default=["smollm2-135m", "llama-0.5b"], choices=sorted(ARCHITECTURES))
    parser.add_argument("--compact-epochs", type=int, default=0, help="also time the compact policy (0: not)")
    parser.add_argument("--compact-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the compact policy's config (repeatable)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tokenizer", default=None, help="folder with SmolLM2's tokenizer (default: from the GGUF)")
    parser.add_argument("--out", default="bench/results/gpu_step.json")
    options, overrides = parser.parse_known_args()
    if options.steps < 2:
        parser.error("--steps must be at least 2: the first step is dropped as warm-up")
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in options.archs:
            rows.append(run_architecture(name, options.tokenizer, options.steps, Path(scratch) / name, overrides))
            print(f"{name}: {rows[-1]['step_s']:.2f} s/step", file=sys.stderr, flush=True)
        compact = run_compact(options.compact_epochs, Path(scratch) / "compact", options.compact_set) \
            if options.compact_epochs > 0 else None
    columns = ["architecture", "parameters_m", "completions_per_step", "step_s", "generation_s", "reward_s", "rest_s",
               "generated_tokens_per_s", "peak_gpu_mb", "process_peak_rss_mb"]
    print(f"{machine()}, {device}\n\n{markdown_table(rows, columns)}")
    if compact:
        print("\n" + markdown_table([compact], ["architecture", "parameters_m", "sft_epochs", "sft_steps", "sft_s_per_epoch",
                                                "grpo_step_s", "beam_users", "beam_users_per_s", "process_peak_rss_mb"]))
    write_json(options.out, {"device": device, "steps": options.steps, "overrides": overrides, "results": rows,
                             "compact": compact, "compact_overrides": options.compact_set})


if __name__ == "__main__":
    main()
