"""`rec-rl seeds`: one configuration trained over several seeds, each claim read across all of them.

A gain seen with one seed may be that seed's luck. Each seed is a `rec-rl train` run of the same config
(`seed=S`, run folder `OUTPUT/seed-S`); `data.split_seed` stays fixed, so every seed is validated and
tested on the same users and the runs' per-user rows pair up. The summary (`seeds.md`, `seeds.json`):

- per seed, every system's metrics with 95% bootstrap intervals, and the paired difference
  trained - start (the policy RL started from) with its raw and Holm-adjusted significance;
- across seeds, each system's mean and standard deviation, and the difference's;
- how many seeds the trained policy beat its start with the 95% interval above 0: the "learns" claim.

Finished runs in the output folder are reused (when their config matches) and cut runs resumed, so an
interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rec_rl.config import config_hash, load_config
from rec_rl.experiments.launch import run_training
from rec_rl.evaluation.report import interval_cell


def run_seeds(config_path: str | None, overrides: list[str], seeds: list[int], output: Path, parallel: int = 1) -> str:
    """Train the config once per seed into `output/seed-S` (`parallel` at once); write and return the summary."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {seeds}: each seed once")
    if parallel < 1:
        raise ValueError(f"--parallel {parallel}: at least 1")
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
    folders = {seed: output / f"seed-{seed}" for seed in seeds}

    def train(seed: int) -> dict:
        return run_training(f"seed-{seed}", config_path, [*overrides, f"seed={seed}", f"train.run_dir={folders[seed]}"],
                            folders[seed], f"seeds-{output.resolve().name}", threads=threads)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(train, seeds))  # each seed is a child process; list() re-raises a failed one
    command = " ".join(["rec-rl seeds", *([config_path] if config_path else []), "--seeds", *map(str, seeds),
                        "--output", str(output), *(["--parallel", str(parallel)] if parallel > 1 else []), *overrides])
    summary = summarize_seeds(folders)
    summary["command"] = command
    summary["config_hash"] = config_hash(load_config(config_path, overrides))
    text = seeds_markdown(summary)
    (output / "seeds.md").write_text(text)
    (output / "seeds.json").write_text(json.dumps(summary, indent=2))
    return text


def summarize_seeds(folders: dict[int, Path]) -> dict:
    """Per seed and across seeds: every system's metrics, and trained - start with its significance."""
    runs = {seed: json.loads((folder / "results.json").read_text()) for seed, folder in folders.items()}
    first = next(iter(runs.values()))
    # Each run's config file read through today's schema (a key added since counts at its default), so runs
    # made before a new key existed still pair with runs made after it.
    hashes = {config_hash(load_config(folder / "config.yaml")) for folder in folders.values()}
    rows = {run["protocol"]["table"]["row_ids_hash"] for run in runs.values()}
    if len(hashes) > 1 or len(rows) > 1:
        raise ValueError(f"the runs in {sorted(map(str, folders.values()))} differ in config ({sorted(hashes)}) or in "
                         f"the rows they were scored on ({sorted(rows)}): they are not seeds of one configuration")
    names = list(first["systems"][0]["metrics"])
    roles = first["roles"]
    difference_label = f"trained - {roles['base']}"
    per_seed = {}
    for seed, run in runs.items():
        systems = {s["name"]: s["metrics"] for s in run["systems"]}
        per_seed[seed] = {"systems": systems, "difference": run["differences"][difference_label],
                          "train_seconds": run["train_seconds"], "sft_seconds": run.get("sft_seconds", 0.0)}
    across = {}
    for role, name in roles.items():
        values = {m: [per_seed[s]["systems"][name][m]["mean"] for s in per_seed] for m in names}
        across[name] = {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                            "values": v} for m, v in values.items()}
    differences = {m: [per_seed[s]["difference"][m] for s in per_seed] for m in names}
    learns = {m: {"mean": float(np.mean([d["mean"] for d in ds])),
                  "std": float(np.std([d["mean"] for d in ds], ddof=1)) if len(ds) > 1 else 0.0,
                  "seeds_above_zero": sum(d["low"] > 0 for d in ds),
                  "seeds_above_zero_holm": sum(d["low"] > 0 and d["significant_holm"] for d in ds),
                  "seeds": len(ds)} for m, ds in differences.items()}
    protocol = first["protocol"]
    return {"seeds": list(per_seed), "metric_names": names, "roles": roles, "difference": difference_label,
            "rows": {"table": protocol["table"], "validation": {k: v for k, v in protocol["validation"].items()
                                                                 if k != "row_ids"}},
            "per_seed": per_seed, "across_seeds": across, "trained_minus_start": learns}


def seeds_markdown(summary: dict) -> str:
    """seeds.md: per-seed rows, the across-seed mean and spread, and the count of seeds that learned."""
    names, roles = summary["metric_names"], summary["roles"]
    table = summary["rows"]["table"]
    lines = [f"# rec-rl seeds: {len(summary['seeds'])} seeds of config {summary['config_hash']}", "",
             f"`{summary['command']}`", "",
             f"Every seed is scored on the same {table['rows']} {table['split']} users (rows {table['row_ids_hash']}); "
             f"validation: {summary['rows']['validation']['rows']} other users. Metrics x100.", "",
             "| seed | system | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for seed, run in summary["per_seed"].items():
        for name in roles.values():
            lines.append(f"| {seed} | {name} | " + " | ".join(interval_cell(run["systems"][name][m]) for m in names) + " |")
        diff = run["difference"]
        lines.append(f"| {seed} | {summary['difference']} | " + " | ".join(
            interval_cell(diff[m], signed=True) + (" (Holm: yes)" if diff[m]["significant_holm"] else "")
            for m in names) + " |")
    lines += ["", "Across seeds (mean ± standard deviation of the per-seed means, x100):", "",
              "| system | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, metrics in summary["across_seeds"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * metrics[m]['mean']:.2f} ± {100 * metrics[m]['std']:.2f}"
                                                for m in names) + " |")
    learns = summary["trained_minus_start"]
    lines.append(f"| {summary['difference']} | " + " | ".join(
        f"{100 * learns[m]['mean']:+.2f} ± {100 * learns[m]['std']:.2f}" for m in names) + " |")
    lines += ["", "Seeds whose trained policy beat its start with the 95% paired interval above 0 "
              "(raw; and also Holm-significant within its own table):", "",
              "| " + " | ".join(names) + " |", "|" + "---|" * len(names),
              "| " + " | ".join(f"{learns[m]['seeds_above_zero']} of {learns[m]['seeds']} "
                                f"({learns[m]['seeds_above_zero_holm']} Holm)" for m in names) + " |"]
    return "\n".join(lines) + "\n"
