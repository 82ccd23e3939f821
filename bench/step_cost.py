"""Seconds per GRPO step, split into generation, reward and optimisation: the default vs naive setups.

    python bench/step_cost.py [--steps 6] [--out bench/results/step_cost.json] [key=value ...]

All four run in this one invocation, one after the other, each as its own `rec-rl train` process on the
embedded data (SmolLM2-135M, BM25), for `--steps` optimizer steps; the first step is dropped as
warm-up. Extra `key=value` overrides apply to all (e.g. `retriever.engine=bm25s`).

- **default**: rec-rl's CPU defaults (configs/default.yaml): LoRA r=16 on the top 4 layers' projections,
  2 prompts x 8 completions of <= 24 tokens per step, generation stopped at the end of the query line,
  no gradient checkpointing.
- **default, shared_prefix off**: the same, with each prompt computed once per completion, as TRL does
  (`train.shared_prefix=false`): what the shared prompt forward saves.
- **default, 1 prompt x 8**: the default at the naive setup's 8 completions per step (same work per step).
- **naive**: what one gets from TRL's defaults: LoRA r=16 on the attention projections (q, k, v, o) of
  every layer, gradient checkpointing on (TRL's GRPOConfig default), 1 prompt x 8 completions of
  <= 24 tokens, no stop at the line end, TRL's own forward.

From each step's timing (TRL's trainer, timed by rec_rl.training.trainer.StepTimer): generation, reward
(parsing + retrieval + metrics) and the rest (forward, backward, optimizer). Also the reward's share
of the step, and the share of completions answered by an identical completion's search in the same
step (GRPO groups repeat themselves; each distinct query is searched once). Ratios are per step and
per completion (the default puts 16 completions in a step, the naive setup 8), and at equal work. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from rec_rl.experiments.launch import run_child
from report import machine, markdown_table, write_json

COMMON = ["train.eval_every=0", "train.test_rows=8", "train.valid_rows=8", "train.wandb_mode=disabled"]
SETUPS = {
    "default": [],
    "default, shared_prefix off": ["train.shared_prefix=false"],
    "default, 1 prompt x 8": ["train.grpo.per_device_train_batch_size=8"],
    "naive": ["policy.lora_layers=null", "policy.lora_target_modules=[q_proj, k_proj, v_proj, o_proj]",
              "train.stop_at_newline=false", "train.shared_prefix=false", "train.grpo.gradient_checkpointing=true",
              "train.grpo.per_device_train_batch_size=8", "train.grpo.num_generations=8",
              "train.grpo.max_completion_length=24"],
}


def run_setup(name: str, overrides: list[str], steps: int, run_dir: Path) -> dict:
    """Train `steps` steps in a child process; its per-step timings and peak memory."""
    command = ["rec-rl", "train", f"train.run_dir={run_dir}", f"train.grpo.max_steps={steps}",
               f"train.grpo.save_steps={steps}", *COMMON, *overrides]
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())),
                   "TOKENIZERS_PARALLELISM": "false"}
    child = run_child(command, environment, stdout=subprocess.DEVNULL)
    if child.exit_code != 0:
        raise SystemExit(f"{name}: `{' '.join(command)}` failed with exit status {child.exit_code}")
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    measured = [e for e in events if e["kind"] == "train"][1:]  # step 1 warms up caches and allocators
    completions = [e["completions/mean_length"] for e in measured]
    mean = {key: float(np.mean([e[key] for e in measured]))
            for key in ("time/step_s", "time/generation_s", "time/reward_s", "retrieval/distinct_query_share")}
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    batch = resolved["train"]["grpo"]["per_device_train_batch_size"] * resolved["train"]["grpo"][
        "gradient_accumulation_steps"]  # one process: the completions of one optimizer step
    return {"setup": name, "steps measured": len(measured), "completions/step": batch,
            "step_s": mean["time/step_s"], "generation_s": mean["time/generation_s"],
            "reward_s": mean["time/reward_s"],
            "optimisation_s": mean["time/step_s"] - mean["time/generation_s"] - mean["time/reward_s"],
            "reward share": mean["time/reward_s"] / mean["time/step_s"],
            "repeat hit rate": 1 - mean["retrieval/distinct_query_share"],
            "s/completion": mean["time/step_s"] / batch, "mean completion tokens": float(np.mean(completions)),
            "peak_rss_mb": child.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default="bench/results/step_cost.json")
    parser.add_argument("overrides", nargs="*", help="key=value applied to every setup")
    options = parser.parse_args()
    if options.steps < 2:
        parser.error("--steps must be at least 2 (the first step is dropped as warm-up)")

    results = []
    with tempfile.TemporaryDirectory(prefix="rec-rl-step-cost-") as scratch:
        for name, overrides in SETUPS.items():
            print(f"{name}: {options.steps} steps ...", file=sys.stderr, flush=True)
            results.append(run_setup(name, [*overrides, *options.overrides], options.steps, Path(scratch) / name))
    default, unshared, same_work, naive = results
    ratios = {"default/naive per step": default["step_s"] / naive["step_s"],
              "default/naive per completion": default["s/completion"] / naive["s/completion"],
              "default at 8 completions/naive per step": same_work["step_s"] / naive["step_s"],
              "default/unshared per step": default["step_s"] / unshared["step_s"],
              "default reward share": default["reward share"]}
    columns = ["setup", "completions/step", "step_s", "generation_s", "reward_s", "optimisation_s", "reward share",
               "repeat hit rate", "s/completion", "mean completion tokens", "peak_rss_mb"]
    print(f"\n## GRPO step cost, mean of steps 2..{options.steps}; {machine()}\n")
    print(markdown_table(results, columns))
    print("\n" + "\n".join(f"- {key}: {value:.3f}" for key, value in ratios.items()))
    write_json(options.out, {"steps": options.steps, "overrides": options.overrides, "setups": SETUPS,
                             "results": results, "ratios": ratios})
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    main()
