"""The systems of a comparison, read by name from each finished run's results.json and from the baselines,
and the summary over them: intervals on the sample and cold-start rows, and the validation-chosen paired test."""

from __future__ import annotations

import dataclasses
import json
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from rec_rl.config import ConfigError, RunConfig
from rec_rl.data import TaskData
from rec_rl.evaluation.bootstrap import bootstrap_interval, paired_difference
from rec_rl.evaluation.report import SystemResult, differences_table
from rec_rl.evaluation.run import metric_names, score_baselines
from rec_rl.experiments.compare.plan import RouteRun

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
    prompt: str = ""  # the policy, what it read and what it could write: model, template, history, completion cap


def run_entries(name: str, run: RouteRun, folder: Path, facts: dict, row_ids: list[str]) -> list[CompareEntry]:
    """The systems one finished run evaluated, from its `results.json`."""
    results = json.loads((folder / "results.json").read_text())
    if results.get("row_ids") != row_ids:
        raise ConfigError(f"{folder / 'results.json'} was evaluated on other test rows than this comparison's; "
                          "remove the folder or set compare.output_dir")
    summaries = {s["name"]: s for s in results["systems"]}
    roles, valid = results["roles"], results["valid_metrics"]
    settings = yaml.safe_load((folder / "config.yaml").read_text())
    prompt = (f"{settings['policy']['model']}: {settings['train']['template']}, last {settings['data']['history_len']} "
              f"items, <= {settings['train']['grpo']['max_completion_length']} tokens")

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
    entries = [CompareEntry(result, "baseline") for result in score_baselines(settings, task, rows)]
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
