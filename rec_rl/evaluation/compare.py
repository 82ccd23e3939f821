"""`rec-rl compare`: the implicit route and the explicit bridge on the same work, in one table.

The training runs (`compare.runs`), each one `rec-rl train` in its own process and folder:
- implicit_bm25, implicit_dense: the policy writes a search query; rows for the base policy (zero-shot)
  and after GRPO;
- explicit_rq, explicit_opq_pq: it writes a semantic item code (residual, or OPQ + product codes) with
  constrained decoding; rows after the SFT warm-up and after SFT + GRPO;
- hybrid_rq: a code plus title words, unconstrained, searched by code and by BM25 over the words.
Beside them: the baselines of `eval.baselines` (popularity, transitions, BM25 and dense over the last
1 and last `data.history_len` titles) and each code method's "code of the last item".

Every system is scored on the same test rows: a seeded sample (`train.test_rows`, the main table) plus
`train.test_cold_rows` cold-start rows (the next item had no interaction before the test period),
reported apart. Every run shares the data, the policy model and the RL budget (`train.grpo`: prompts
per step, completions per prompt, optimizer steps), which a budget preset (`BUDGETS`) sets; the
user's overrides win over the preset, and each run's own route settings (`RUNS`) over both.

Writes `compare.md`, `compare.json`, `rewards.png` (the training reward of every run on one chart,
and the SFT losses) and `metrics.png` (bars with 95% intervals). Every run logs to wandb project
`train.wandb_project` in group `compare-<output folder name>`, and so does the summary.
A finished run found in the output folder is reused (after checking it was made with the same
config), so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from rec_rl.config import ConfigError, RunConfig, load_config, to_dict
from rec_rl.data import TaskData, load_task
from rec_rl.evaluation.bootstrap import bootstrap_interval, paired_difference
from rec_rl.evaluation.launch import run_training
from rec_rl.evaluation.report import DIFFERENCES_NOTE, SystemResult, differences_table, interval_cell
from rec_rl.evaluation.run import baseline_rankers, metric_names, score_rankings

# Budget presets: overrides applied to every run before the user's own.
BUDGETS: dict[str, dict[str, object]] = {
    # 2 CPU cores, all five runs and the baselines within an hour (README, "Comparing the routes").
    "cpu": {"train.grpo.max_steps": 20, "train.sft.max_steps": 40, "train.sft.warmup_steps": 4,
            "train.sft_input_grad": False, "train.test_rows": 200, "train.test_cold_rows": 50, "train.valid_rows": 32,
            "train.eval_every": 10},
    # One GPU with 40+ GB (A100/H100 class): 8 prompts x 8 completions a step, every cold-start user.
    "gpu": {"train.grpo.max_steps": 300, "train.grpo.per_device_train_batch_size": 64, "train.grpo.bf16": True,
            "train.grpo.save_steps": 100, "train.sft.max_steps": 3000, "train.sft.per_device_train_batch_size": 64,
            "train.sft.warmup_steps": 100, "train.sft.bf16": True, "train.test_rows": 2000,
            "train.test_cold_rows": 100000, "train.valid_rows": 256, "train.eval_every": 50,
            "train.eval_batch_size": 256},
    "none": {},  # the config's own values
}


@dataclass(frozen=True)
class RouteRun:
    """One training run of the comparison: its route, and the settings that make it that route."""

    route: str  # "implicit" or "explicit"
    label: str  # how its systems are named in the table
    overrides: dict[str, object]


def _codes(method: str, constrained: bool, hybrid_weight: float) -> dict[str, object]:
    return {"retriever.backend": "codes", "codes.method": method, "codes.constrained": constrained,
            "codes.hybrid_weight": hybrid_weight, "train.template": "history_titles_codes"}


def route_runs(config: RunConfig) -> dict[str, RouteRun]:
    """Every run `compare.runs` may name."""
    # A code is levels + 1 tokens (the de-duplicating level) and the end; a hybrid answer adds title words.
    code_tokens = config.codes.levels + 2
    # Both routes read the same history: the last data.history_len titles, newest first, no header.
    implicit = {"train.template": "history_query_recent", "codes.hybrid_weight": 0.0}
    return {
        "implicit_bm25": RouteRun("implicit", "bm25", {"retriever.backend": "bm25", **implicit}),
        "implicit_dense": RouteRun("implicit", "dense", {"retriever.backend": "dense", **implicit}),
        "explicit_rq": RouteRun("explicit", "rq codes", {**_codes("rq", True, 0.0),
                                                          "train.grpo.max_completion_length": code_tokens}),
        "explicit_opq_pq": RouteRun("explicit", "opq_pq codes", {**_codes("opq_pq", True, 0.0),
                                                                  "train.grpo.max_completion_length": code_tokens}),
        "hybrid_rq": RouteRun("explicit", "hybrid rq", _codes("rq", False, config.compare.hybrid_weight)),
    }


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: strings, numbers, booleans and lists read back as given


def run_overrides(budget: str, user: list[str], run: RouteRun, run_dir: Path) -> list[str]:
    """The `rec-rl train` overrides of one run: budget preset, then the user's, then the route's own."""
    ours = {**run.overrides, "train.run_dir": str(run_dir)}
    clashing = [o.split("=", 1)[0] for o in user if o.split("=", 1)[0].strip() in ours]
    if clashing:
        print(f"note: {', '.join(clashing)} is set by each compared run itself; the override is ignored there")
    return ([_override(k, v) for k, v in BUDGETS[budget].items()] + list(user)
            + [_override(k, v) for k, v in ours.items()])


@dataclass
class CompareEntry:
    """One row of the comparison: a system's per-row results and what it cost."""

    result: SystemResult
    route: str  # baseline, implicit or explicit
    run: str | None = None  # the training run it came from
    sft_seconds: float = 0.0  # SFT that made it (the explicit route's warm-up)
    rl_seconds: float = 0.0  # GRPO that made it, with its periodic validations, without the test evaluation
    peak_rss_mb: float | None = None  # of the process that trained and evaluated it
    valid_metrics: dict | None = None  # its mean metrics on the run's validation users: what the best system is chosen by
    prompt: str = ""  # what the policy read and could write: template, completion cap


def run_entries(name: str, run: RouteRun, folder: Path, facts: dict, row_ids: list[str]) -> list[CompareEntry]:
    """The systems one finished run evaluated, from its `results.json`."""
    results = json.loads((folder / "results.json").read_text())
    if results.get("row_ids") != row_ids:
        raise ConfigError(f"{folder / 'results.json'} was evaluated on other test rows than this comparison's; "
                          "remove the folder or set compare.output_dir")
    summaries = {s["name"]: s for s in results["systems"]}
    roles, valid = results["roles"], results["valid_metrics"]
    settings = yaml.safe_load((folder / "config.yaml").read_text())
    prompt = (f"{settings['train']['template']}, {settings['data']['history_len']} titles, "
              f"<= {settings['train']['grpo']['max_completion_length']} tokens")

    def result(role: str, name: str) -> SystemResult:
        key = roles[role]
        info = {k: v for k, v in summaries[key].items() if k not in ("name", "rows", "metrics")}
        return SystemResult(name, {k: np.array(v) for k, v in results["per_row"][key].items()}, info)

    sft, grpo = results.get("sft_seconds", 0.0), results["train_seconds"]
    if run.route == "implicit":
        entries = [CompareEntry(result("base", f"base policy -> {run.label}"), "implicit", name),
                   CompareEntry(result("trained", f"GRPO -> {run.label}"), "implicit", name, rl_seconds=grpo)]
    else:
        entries = [CompareEntry(result("base", f"SFT -> {run.label}"), "explicit", name, sft_seconds=sft),
                   CompareEntry(result("trained", f"SFT+GRPO -> {run.label}"), "explicit", name, sft, grpo)]
        if name.startswith("explicit"):  # what the code retriever gives with no policy at all
            entries.append(CompareEntry(result("trivial", f"{run.label.split()[0]} code of last item"), "baseline", name))
    for entry, role in zip(entries, ("base", "trained", "trivial")):
        entry.peak_rss_mb, entry.valid_metrics, entry.prompt = facts["peak_rss_mb"], valid[roles[role]], prompt
    return entries


def baseline_entries(config: RunConfig, task: TaskData, rows) -> list[CompareEntry]:
    """The `eval.baselines` on the comparison's rows, over the last 1 and last `history_len` titles."""
    titles = sorted({*config.eval.query_titles, config.data.history_len})
    settings = dataclasses.replace(config, eval=dataclasses.replace(config.eval, split="test", query_titles=titles))
    exclude = [task.catalog.rows(ids) for ids in rows["exclude_item_ids"]]
    entries = []
    for name, rank in baseline_rankers(settings, task, rows).items():
        started = time.perf_counter()
        found = rank(max(config.eval.ks), exclude)
        entries.append(CompareEntry(SystemResult(name, score_rankings(found, rows, task.catalog, config.eval.ks),
                                                 {"seconds": time.perf_counter() - started}), "baseline"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for entry in entries:
        entry.peak_rss_mb = peak  # this process: the data, the indexes and the dense encoder
    return entries


def _interval(values: np.ndarray, config: RunConfig) -> dict:
    mean, low, high = bootstrap_interval(values, config.eval.bootstrap, config.seed)
    return {"mean": mean, "low": low, "high": high}


def best_of(entries: list[CompareEntry], route: str, metric: str) -> CompareEntry | None:
    """The route's system with the highest mean `metric` on its run's validation users (never on the test rows)."""
    candidates = [e for e in entries if e.route == route and e.valid_metrics]
    return max(candidates, key=lambda e: e.valid_metrics[metric], default=None)


def summarize(entries: list[CompareEntry], sample: np.ndarray, cold: np.ndarray, config: RunConfig) -> dict:
    """Every system's metrics with intervals on the sample rows and the cold-start rows, and the paired test."""
    names = metric_names(config.eval.ks)
    systems = []
    for entry in entries:
        info = entry.result.info
        systems.append({
            "name": entry.result.name, "route": entry.route, "run": entry.run, "prompt": entry.prompt,
            "metrics": {m: _interval(entry.result.per_row[m][sample], config) for m in names},
            "cold_start": {m: _interval(entry.result.per_row[m][cold], config) for m in names},
            "valid_metrics": entry.valid_metrics,
            "invalid_rate": info.get("invalid_rate"), "mean_query_words": info.get("mean_query_words"),
            "tokens_generated": info.get("tokens_generated"), "test_eval_seconds": info.get("seconds"),
            "sft_seconds": entry.sft_seconds, "rl_seconds": entry.rl_seconds, "peak_rss_mb": entry.peak_rss_mb})
    paired = {}
    implicit, explicit = (best_of(entries, route, names[0]) for route in ("implicit", "explicit"))
    if implicit and explicit:
        differences = {"best implicit - best explicit": {
            m: paired_difference(implicit.result.per_row[m][sample], explicit.result.per_row[m][sample],
                                 config.eval.bootstrap, config.seed) for m in names}}
        paired = {"a": implicit.result.name, "b": explicit.result.name, "selected_by": f"validation {names[0]}",
                  "table": differences_table(differences, names), "differences": differences["best implicit - best explicit"]}
    return {"metric_names": names, "systems": systems, "paired": paired}


def _number(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def markdown(summary: dict, header: str, sample_rows: int, cold_rows: int) -> str:
    """compare.md: the main table, the paired test, and the cold-start table."""
    names = summary["metric_names"]
    columns = ["system", "route", *[f"{m} (x100)" for m in names], "invalid %", "query words", "tokens generated",
               "SFT s", "RL s (with validation)", "test eval s", "peak MB", "prompt"]
    lines = [header, "", f"## All systems: {sample_rows} sampled test users (95% bootstrap intervals)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for s in summary["systems"]:
        invalid = None if s["invalid_rate"] is None else 100 * s["invalid_rate"]
        cells = [s["name"], s["route"], *[interval_cell(s["metrics"][m]) for m in names], _number(invalid),
                 _number(s["mean_query_words"]), _number(s["tokens_generated"], 0), _number(s["sft_seconds"], 0),
                 _number(s["rl_seconds"], 0), _number(s["test_eval_seconds"]), _number(s["peak_rss_mb"], 0), s["prompt"]]
        lines.append("| " + " | ".join(cells) + " |")
    paired = summary["paired"]
    if paired:
        lines += ["", f"## Best implicit vs best explicit (each chosen by its {paired['selected_by']}, not on these rows)",
                  "", f"`{paired['a']}` - `{paired['b']}`. {DIFFERENCES_NOTE}", "", paired["table"]]
    lines += ["", f"## Cold start: {cold_rows} test users whose next item had no interaction before the test period", ""]
    if cold_rows:
        lines += ["| system | route | " + " | ".join(f"{m} (x100)" for m in names) + " |", "|" + "---|" * (len(names) + 2)]
        lines += ["| " + " | ".join([s["name"], s["route"], *[interval_cell(s["cold_start"][m]) for m in names]]) + " |"
                  for s in summary["systems"]]
    else:
        lines.append("None in this comparison (train.test_cold_rows is 0, or the data has no such users).")
    return "\n".join(lines) + "\n"


def plot_rewards(folders: dict[str, Path], path: Path) -> None:
    """Training reward of every run on one chart (5-step means), and the SFT loss of the explicit runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rec_rl.tracking import MetricsLog

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, folder in folders.items():
        train = [e for e in MetricsLog(folder / "metrics.jsonl").read() if e.get("kind") == "train" and "reward" in e]
        if train:
            rewards = np.array([e["reward"] for e in train], dtype=float)
            smooth = np.convolve(rewards, np.ones(5) / 5, mode="valid") if len(rewards) >= 5 else rewards
            left.plot([e["step"] for e in train][len(train) - len(smooth):], smooth, label=name)
        sft = [e for e in MetricsLog(folder / "sft_metrics.jsonl").read() if "loss" in e]
        if sft:
            right.plot([e["step"] for e in sft], [e["loss"] for e in sft], label=name)
    left.set(xlabel="GRPO step", ylabel="mean reward (5-step mean)", title="training reward of every route")
    right.set(xlabel="SFT step", ylabel="loss", title="explicit route: SFT warm-up")
    for axis in (left, right):
        if axis.lines:
            axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_metrics(summary: dict, path: Path, metrics: list[str]) -> None:
    """Horizontal bars of `metrics` per system, with 95% intervals, coloured by route."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = summary["systems"]
    colours = {"baseline": "tab:gray", "implicit": "tab:blue", "explicit": "tab:orange"}
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 0.35 * len(systems) + 1.5), sharey=True)
    for axis, metric in zip(np.atleast_1d(axes), metrics):
        means = np.array([100 * s["metrics"][metric]["mean"] for s in systems])
        errors = np.array([[means[i] - 100 * s["metrics"][metric]["low"], 100 * s["metrics"][metric]["high"] - means[i]]
                           for i, s in enumerate(systems)]).T
        axis.barh(range(len(systems)), means, xerr=errors, color=[colours[s["route"]] for s in systems], capsize=2)
        axis.set(xlabel=f"{metric} (x100)", title=metric)
    axes_list = np.atleast_1d(axes)
    axes_list[0].invert_yaxis()  # the first system on top (the axes share it)
    axes_list[0].set_yticks(range(len(systems)), [s["name"] for s in systems], fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axes_list[-1].legend(handles, list(colours), loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
    from rec_rl.training.run import check_explicit_route

    if budget not in BUDGETS:
        raise ConfigError(f"--budget {budget!r}: expected one of {sorted(BUDGETS)}")
    started = time.perf_counter()
    config = load_config(config_path, [_override(k, v) for k, v in BUDGETS[budget].items()] + list(overrides))
    if config.train.algorithm != "grpo":
        raise ConfigError(f"train.algorithm is {config.train.algorithm!r}: rec-rl compare trains every route with grpo "
                          "(the explicit route's constrained rollouts need it)")
    output = Path(config.compare.output_dir)
    group = f"compare-{output.resolve().name}"
    runs = route_runs(config)
    plans = {}
    for name in config.compare.runs:  # every run's config is checked before the first one starts
        plans[name] = run_overrides(budget, overrides, runs[name], output / "runs" / name)
        check_explicit_route(load_config(config_path, plans[name]))

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
              f"excluded), same policy ({config.policy.model}), same RL budget for every route: "
              f"{grpo['max_steps']} GRPO steps of {grpo['per_device_train_batch_size'] // grpo['num_generations']} "
              f"prompts x {grpo['num_generations']} completions; the explicit route first runs "
              f"{config.train.sft['max_steps']} SFT steps of {config.train.sft['per_device_train_batch_size']} examples. "
              f"Both routes read the same last {config.data.history_len} titles, newest first ('prompt' says what each "
              f"run read and how many tokens it could write). 'SFT s' and 'RL s' are the training behind a row, RL with "
              f"its periodic validations, neither with the test evaluation ('test eval s'); 'peak MB' is the peak "
              f"resident memory of the process that made the row. Each route's best system is chosen on its run's "
              f"validation users, which are disjoint from these test users. Metrics are x100.")
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
