"""`rec-rl compare`: the implicit route and the explicit bridge on the same work, in one table.

The training runs (`compare.runs`), each one `rec-rl train` in its own process and folder:
- implicit_bm25, implicit_dense: the LLM policy (policy.model) writes a search query; rows for the base
  policy (zero-shot) and after GRPO;
- explicit_rq, explicit_opq_pq: the compact semantic-ID policy (codes-lm, configs/explicit.yaml's training:
  plan.COMPACT_TRAINING) writes the next item's code (residual, or OPQ + product codes), ranked by
  constrained beam search; rows after its next-item pretraining (SFT) and after SFT + GRPO;
- explicit_random: the same with random ids of the same shape, the control for semantic codes;
- hybrid_rq (not in the default list): the LLM writes a code plus title words, unconstrained, searched by
  code and by BM25 over the words.
Beside them: the baselines of `eval.baselines` (popularity, transitions, BM25 and dense over the last
1 and last `data.history_len` titles) and each code method's "code of the last item".

Every system is scored on the same test rows: a seeded sample (`train.test_rows`, the main table) plus
`train.test_cold_rows` cold-start rows (the next item had no interaction before the test period),
reported apart. Every run shares the data, the test and validation users, and the budget preset's
settings (`BUDGETS`); the explicit runs' own training (`COMPACT_TRAINING`) replaces the preset's, the
user's overrides win over both, and what makes each run its route (`RouteRun.overrides`) over all.

Writes `compare.md`, `compare.json`, `rewards.png` (the training reward of every run on one chart,
and the SFT losses) and `metrics.png` (bars with 95% intervals). Every run logs to wandb project
`train.wandb_project` in group `compare-<output folder name>`, and so does the summary.
A finished run found in the output folder is reused (after checking it was made with the same
config), so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from rec_rl.config import ConfigError, RunConfig, load_config, to_dict
from rec_rl.data import load_task
from rec_rl.experiments.compare.collect import baseline_entries, run_entries, summarize
from rec_rl.experiments.compare.plan import BUDGETS, override_text, route_runs, run_overrides
from rec_rl.experiments.compare.plots import plot_metrics, plot_rewards
from rec_rl.experiments.compare.report import markdown
from rec_rl.experiments.launch import run_training

__all__ = ["BUDGETS", "compare", "route_runs", "run_overrides"]


def machine() -> str:
    """The CPU (and GPU) the comparison ran on."""
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{gpu}"


def log_to_wandb(config: RunConfig, output: Path, group: str, summary: dict) -> None:
    """The comparison table and plots as one more wandb run in the comparison's group."""
    from rec_rl.tracking import configure_wandb

    mode = configure_wandb(output, config.train.wandb_project, config.train.wandb_mode, group)
    if mode == "disabled":
        return
    import wandb

    names = summary["metric_names"]
    table = wandb.Table(columns=["system", "route", *names],
                        data=[[s["name"], s["route"], *[s["metrics"][m]["mean"] for m in names]] for s in summary["systems"]])
    run = wandb.init(dir=str(output), project=config.train.wandb_project, group=group, name="compare",
                     job_type="compare", mode=mode, config=to_dict(config))
    run.log({"compare": table, "rewards": wandb.Image(str(output / "rewards.png")),
             "metrics": wandb.Image(str(output / "metrics.png"))})
    run.finish()


def compare(config_path: str | None, overrides: list[str], budget: str = "cpu") -> str:
    """Run the comparison (module docstring); return compare.md's text."""
    from rec_rl.training.routes import route_of
    from rec_rl.training.trl_args import trainer_args

    if budget not in BUDGETS:
        raise ConfigError(f"--budget {budget!r}: expected one of {sorted(BUDGETS)}")
    started = time.perf_counter()
    config = load_config(config_path, [override_text(k, v) for k, v in BUDGETS[budget].items()] + list(overrides))
    if config.train.algorithm != "grpo":
        raise ConfigError(f"train.algorithm is {config.train.algorithm!r}: rec-rl compare trains every route with grpo "
                          "(the explicit route's constrained rollouts need it)")
    output = Path(config.compare.output_dir)
    group = f"compare-{output.resolve().name}"
    runs = route_runs(config)
    plans = {}
    for name in config.compare.runs:  # every run's config is checked before the first one starts
        plans[name] = run_overrides(budget, overrides, runs[name], output / "runs" / name)
        settings = load_config(config_path, plans[name])
        route_of(settings).check(settings)
        trainer_args(settings, output)  # TRL's own checks of train.grpo, before any run starts

    task = load_task(config.data)
    split_seed = config.data.split_seed
    rows = task.evaluation_rows("test", config.train.test_rows, config.train.test_cold_rows, split_seed)
    row_ids = list(rows["row_id"])
    sample = np.zeros(len(rows), dtype=bool)
    sample[:len(task.split("test", config.train.test_rows, split_seed))] = True
    cold = task.cold_start("test", rows)
    print(f"comparing {len(config.compare.runs)} runs and the baselines on {int(sample.sum())} sampled test users "
          f"and {int(cold.sum())} cold-start users; writing {output}", flush=True)
    entries = baseline_entries(config, task, rows)
    facts = {}
    for name, settings in plans.items():
        folder = output / "runs" / name
        facts[name] = run_training(name, config_path, settings, folder, group)
        entries += run_entries(name, runs[name], folder, facts[name], row_ids)

    summary = summarize(entries, sample, cold, config)
    wall = time.perf_counter() - started
    grpo = config.train.grpo
    command = " ".join(["rec-rl compare", *([config_path] if config_path else []), f"--budget {budget}", *overrides])
    header = (f"# rec-rl compare\n\n`{command}` on {machine()}: {wall / 60:.1f} min in all "
              f"(runs reused from an earlier invocation count their own time in 'SFT s' and 'RL s' only).\n\n"
              f"Same data ({config.data.path or 'embedded Amazon Games 2018'}, full-catalog ranking, the user's history "
              f"excluded) and the same test users for every system. The implicit runs train {config.policy.model} with "
              f"{grpo['max_steps']} GRPO steps of {grpo['per_device_train_batch_size'] // grpo['num_generations']} "
              f"prompts x {grpo['num_generations']} completions; the explicit runs train the compact semantic-ID policy "
              f"(codes-lm) as configs/explicit.yaml does (next-item pretraining, then GRPO). 'policy: prompt' says what "
              f"each run's policy read and how many tokens it could write. 'SFT s' and 'RL s' are the training behind a "
              f"row, each with its periodic validations, neither with the test evaluation ('test eval s'); 'peak MB' is "
              f"the peak resident memory of the process that made the row. Each route's best system is chosen on its "
              f"run's validation users, which are disjoint from these test users. Metrics are x100.")
    text = markdown(summary, header, int(sample.sum()), int(cold.sum()))
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare.md").write_text(text)
    folders = {name: output / "runs" / name for name in plans}
    plot_rewards(folders, output / "rewards.png")
    plot_metrics(summary, output / "metrics.png", [summary["metric_names"][0], summary["metric_names"][-1]])
    (output / "compare.json").write_text(json.dumps({
        "command": command, "machine": machine(), "wall_seconds": wall, "budget": budget,
        "rows": {"sample": int(sample.sum()), "cold_start": int(cold.sum())}, "runs": facts,
        "config": to_dict(config), **summary}, indent=2))
    log_to_wandb(config, output, group, summary)
    return text
