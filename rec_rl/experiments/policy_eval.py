"""`rec-rl eval --policy RUN`: a trained run's policy scored beside the baselines, on any split or data set.

The run folder's `config.yaml` says how the policy was made (model, route, codes, prompt); `key=value`
overrides choose what to score it on (`eval.split`, `eval.max_rows`, `data.path` for other users of the
same catalog, `eval.ks`, ...). The policy is loaded as `rec-rl train --resume` loads it (the explicit
route's SFT model from `RUN/sft`) with the adapter in `RUN/final`, decodes exactly as the run's own
evaluation did (same prompts, completion limit, batch size and decoding), and is ranked over the full
catalog. With `eval.max_rows` equal to the run's `train.test_rows` (and no cold-start rows) it scores the
run's own test users, and its row equals the run's `trained policy` row.

Writes `metrics.md` / `metrics.json` (the policy and every baseline with 95% intervals, and the paired
policy - baseline differences with Holm's adjustment) and `completions.jsonl` (what the policy wrote for
each row) to `eval.output_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from rec_rl.config import ConfigError, load_config
from rec_rl.data import load_task
from rec_rl.evaluation.bootstrap import paired_difference
from rec_rl.evaluation.policy import evaluate_policy
from rec_rl.evaluation.report import DIFFERENCES_NOTE, differences_table, write_report
from rec_rl.evaluation.run import metric_names, score_baselines
from rec_rl.policy import load_policy, stop_at_line_end
from rec_rl.training.routes import route_of
from rec_rl.training.rows import parse_mode, prompt_rows
from rec_rl.training.trl_args import trainer_args
from retrievers import build_retriever


def load_run_policy(run_dir: Path, config):
    """The trained policy of `run_dir` (its final adapter over its starting policy), its tokenizer, route and
    decoding settings, ready to evaluate as the run did."""
    from peft import PeftModel

    if not (run_dir / "final").is_dir():
        raise ConfigError(f"--policy {run_dir}: no final/ adapter (the run has not finished training)")
    route = route_of(config)
    if route.trains_before_rl(config) and not (run_dir / "sft").is_dir():
        # `prepare` would train that SFT stage again instead of loading it: evaluation never trains.
        raise ConfigError(f"--policy {run_dir}: no sft/ folder, but its config trains an SFT policy before RL "
                          f"(train.sft / train.warm_start), which final/ was trained from")
    task = load_task(config.data)
    retriever = build_retriever(config.retriever, task.catalog, config.codes)
    model, tokenizer = route.load_policy(config, retriever, run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        args = trainer_args(config, Path(scratch))
    if config.train.stop_at_newline:
        stop_at_line_end(model, tokenizer, args)
    prepared = route.prepare(config, task, retriever, model, tokenizer, run_dir, resume=True)
    final = run_dir / "final"
    if (final / "adapter_config.json").is_file():
        policy = PeftModel.from_pretrained(prepared.model, str(final))
    else:  # trained without LoRA (policy.model=codes-lm): final/ is the whole model
        policy, _ = load_policy(dataclasses.replace(config.policy, model=str(final)))
        policy.generation_config.eos_token_id = prepared.model.generation_config.eos_token_id
    return task, retriever, route, policy, prepared, args.max_completion_length


def evaluate_run(run_dir: str | Path, overrides: list[str]) -> str:
    """Score `run_dir`'s trained policy beside the baselines (module docstring); return the markdown."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"--policy {run_dir}: not a run folder (no config.yaml)")
    config = load_config(run_dir / "config.yaml", overrides)
    task, retriever, route, policy, prepared, max_new_tokens = load_run_policy(run_dir, config)
    rows = route.rows(task.split(config.eval.split, config.eval.max_rows, config.data.split_seed), task, retriever,
                      config)
    prompts = prompt_rows(rows, config, prepared.tokenizer)["prompt"]
    result, completions = evaluate_policy(
        "trained policy", policy, prepared.tokenizer, rows, prompts, retriever, task.catalog, parse_mode(config), config.eval.ks,
        max_new_tokens, config.train.eval_batch_size, recall_min_gain=task.recall_min_gain,
        constraint=prepared.constraint,
        beam=route.beam_ranking(config, prepared.tokenizer, retriever, prepared.constraint, task),
        query_expansion=config.reward.query_expansion)
    systems, names = [result, *score_baselines(config, task, rows)], metric_names(config.eval.ks)
    differences = {f"policy - {other.name}": {m: paired_difference(result.per_row[m], other.per_row[m],
                                                                   config.eval.bootstrap, config.seed) for m in names}
                   for other in systems[1:]}
    output = Path(config.eval.output_dir)
    header = {"policy": str(run_dir), "dataset": config.data.path or "embedded amazon_games_seq",
              "split": config.eval.split, "rows": len(rows), "catalog_items": len(task.catalog),
              "decoding": config.eval.decoding, "ranking": "full catalog"}
    markdown = write_report(output, [s.summary(config.eval.bootstrap, config.seed) for s in systems], names, header)
    table = differences_table(differences, names) if differences else ""
    markdown += f"\n{DIFFERENCES_NOTE}\n\n{table}\n" if table else ""
    (output / "metrics.md").write_text(markdown)
    report = json.loads((output / "metrics.json").read_text())
    report.update(differences=differences, row_ids=list(rows["row_id"]),
                  per_row={s.name: {k: v.tolist() for k, v in s.per_row.items()} for s in systems})
    (output / "metrics.json").write_text(json.dumps(report, indent=2))
    with open(output / "completions.jsonl", "w") as handle:
        for row_id, text in zip(rows["row_id"], completions):
            handle.write(json.dumps({"row_id": row_id, "completion": text}) + "\n")
    return markdown
