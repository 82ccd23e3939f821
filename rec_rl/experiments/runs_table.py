"""`rec-rl table RUN [RUN ...]`: finished runs scored on the same users, side by side, with paired tests.

`rec-rl compare` trains its runs itself; this reads runs that are already finished (each `results.json`
keeps every system's per-user values, `row_ids` in order) and puts them in one table: each run's starting
and trained policy, the baselines (`eval.baselines` of the first run's config) ranked on the same users,
all rows and then the cold-start rows apart, and paired bootstrap differences with Holm's adjustment over
the whole family:

- each run's trained policy against the policy it started RL from;
- the first run's starting and trained policies against every other run's (e.g. semantic codes against
  random ids, before and after RL);
- every run's starting and trained policy against each baseline.

Runs must have been scored on the same rows (same `row_ids`); the table says which runs and configs it
read (`protocol.config_hash`, seed, codes hash). Writes `table.md` and `table.json` into `--output`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from rec_rl.config import ConfigError, load_config
from rec_rl.data import load_task
from rec_rl.evaluation.bootstrap import paired_difference
from rec_rl.evaluation.report import DIFFERENCES_NOTE, SystemResult, differences_table, markdown_table
from rec_rl.evaluation.run import metric_names, score_baselines


def _system(results: dict, role: str, label: str) -> SystemResult:
    key = results["roles"][role]
    return SystemResult(label, {k: np.array(v) for k, v in results["per_row"][key].items()})


def runs_table(runs: list[Path], output: Path, overrides: list[str] = ()) -> str:
    """The table of `runs` (module docstring); written to `output`, returned as markdown."""
    if not runs:
        raise ConfigError("rec-rl table: name at least one run folder")
    loaded = {}
    for folder in runs:
        if not (folder / "results.json").is_file():
            raise ConfigError(f"{folder}: no results.json (not a finished rec-rl train run)")
        loaded[folder] = json.loads((folder / "results.json").read_text())
    first_folder, first = runs[0], loaded[runs[0]]
    for folder, results in loaded.items():
        if results["row_ids"] != first["row_ids"]:
            raise ConfigError(f"{folder} was scored on other rows than {first_folder}: runs pair only on the same users")
    config = load_config(first_folder / "config.yaml", list(overrides))
    task = load_task(config.data)
    split = first["protocol"]["table"]["split"]
    rows = task.split(split)
    position = {row_id: i for i, row_id in enumerate(rows["row_id"])}
    rows = rows.select([position[row_id] for row_id in first["row_ids"]])
    names = metric_names(config.eval.ks)

    systems, differences = [], {}
    started, trained = {}, {}
    for folder, results in loaded.items():
        start = _system(results, "base", f"{folder.name}: {results['roles']['base']}")
        end = _system(results, "trained", f"{folder.name}: {results['roles']['trained']}")
        systems += [start, end]
        started[folder], trained[folder] = start, end
        differences[f"{folder.name}: trained - start"] = {
            m: paired_difference(end.per_row[m], start.per_row[m], config.eval.bootstrap, config.seed) for m in names}
    settings = dataclasses.replace(config, eval=dataclasses.replace(config.eval, split=split))
    baselines = score_baselines(settings, task, rows)
    systems += baselines
    for role, policies in (("start", started), ("trained", trained)):
        for folder in runs[1:]:
            differences[f"{first_folder.name} - {folder.name} ({role})"] = {
                m: paired_difference(policies[first_folder].per_row[m], policies[folder].per_row[m],
                                     config.eval.bootstrap, config.seed) for m in names}
    for folder in runs:
        for role, policies in (("start", started), ("trained", trained)):
            for baseline in baselines:
                differences[f"{folder.name} {role} - {baseline.name}"] = {
                    m: paired_difference(policies[folder].per_row[m], baseline.per_row[m], config.eval.bootstrap,
                                         config.seed) for m in names}

    cold = task.cold_start(split, rows)
    summaries = [s.summary(config.eval.bootstrap, config.seed) for s in systems]
    cold_summaries = [SystemResult(s.name, {k: v[cold] for k, v in s.per_row.items()}).summary(
        config.eval.bootstrap, config.seed) for s in systems] if cold.any() else []
    sources = [{"run": str(folder), "config_hash": r["protocol"]["config_hash"], "seed": r["protocol"]["seed"],
                "codes_hash": r["protocol"].get("codes_hash"), "route": r["protocol"]["route"]}
               for folder, r in loaded.items()]
    lines = [f"# {len(runs)} runs on the same {len(rows)} {split} users", "",
             "Runs: " + "; ".join(f"`{s['run']}` (config {s['config_hash']}, seed {s['seed']}"
                                  + (f", codes {s['codes_hash']}" if s["codes_hash"] else "") + ")" for s in sources),
             "", "95% bootstrap intervals in brackets (x100).", "", markdown_table(summaries, names), "",
             DIFFERENCES_NOTE, "", differences_table(differences, names), ""]
    if cold_summaries:
        lines += [f"Cold start: the {int(cold.sum())} of these users whose next item had no interaction before it:", "",
                  markdown_table(cold_summaries, names), ""]
    text = "\n".join(lines)
    output.mkdir(parents=True, exist_ok=True)
    (output / "table.md").write_text(text)
    (output / "table.json").write_text(json.dumps({
        "runs": sources, "split": split, "rows": len(rows), "row_ids_hash": first["protocol"]["table"]["row_ids_hash"],
        "systems": summaries, "differences": differences, "cold_start": {"rows": int(cold.sum()), "systems": cold_summaries}},
        indent=2))
    return text
