"""`rec-rl train`: GRPO (or RLOO) fine-tuning of a policy against a frozen retriever.

The policy writes search queries (the implicit route) or semantic item codes (the explicit route,
`retriever.backend=codes`); one loop serves both. In the order it runs:
1. load the task, the frozen retriever and the policy (the default is converted once from its GGUF), and
   let the run's route (`rec_rl.training.routes`) make the policy ready: for the explicit route, add the
   code tokens and run the SFT warm-up (`rec_rl.training.explicit`);
2. build prompts (user context only) and the reward functions (NDCG/Recall of the retrieved list);
3. score the base policy on the test rows, and the trivial last-titles query beside it;
4. check that the reward is not constant on real completions (a broken retriever fails here, loudly);
5. train with TRL's GRPOTrainer (or RLOOTrainer), validating every `train.eval_every` steps;
6. score the trained policy on the same test rows: results.md with paired bootstrap differences.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from rec_rl.codes.build import array_hash
from rec_rl.config import ConfigError, RunConfig, config_hash, to_dict
from rec_rl.data import TaskData, load_task, overlapping_rows
from rec_rl.evaluation.bootstrap import paired_difference
from rec_rl.evaluation.policy import evaluate_policy
from rec_rl.evaluation.report import DIFFERENCES_NOTE, SystemResult, differences_table, markdown_table
from rec_rl.evaluation.run import coverage, metric_names, score_rankings, search_all
from rec_rl.policy import lora_config, stop_at_line_end
from rec_rl.tracking import (MetricsLog, configure_wandb, finish_wandb, is_main_process, plot_curves,
                             start_wandb_run)
from rec_rl.training.callbacks import MetricsLogCallback, ValidationCallback
from rec_rl.training.checkpoints import checkpoint_step, last_complete_checkpoint
from rec_rl.training.routes import Route, route_of
from rec_rl.training.rows import REWARD_COLUMNS, prompt_rows, reward_setup, shuffled_targets
from rec_rl.training.trl_args import trainer_args
from retrievers import build_retriever
from rewards.parsing import format_answer


def trivial_query_result(route: Route, task: TaskData, rows, retriever, config: RunConfig) -> SystemResult:
    """NDCG/Recall of the route's trivial outputs (`Route.trivial_queries`) on `rows`."""
    queries = route.trivial_queries(task, rows, config, retriever)
    exclude = [task.catalog.rows(ids) for ids in rows["exclude_item_ids"]]
    started = time.perf_counter()
    found = search_all(retriever, queries, max(config.eval.ks), exclude, "baseline: search")
    return SystemResult(route.trivial_label(task, config), score_rankings(found, rows, task.catalog, config.eval.ks,
                                                                          task.recall_min_gain),
                        {"seconds": time.perf_counter() - started, **coverage(found.rows)})


REWARD_CHECK_ROWS = 64  # training rows whose trivial queries check the reward and set the reward curve's floor


def check_reward_signal(reward_funcs, reward_weights: list[float], reference: tuple, start: tuple,
                        parse_mode: str) -> dict:
    """Fail before training when the reward cannot vary; report the trivial query's reward (the reward curve's
    floor) and the starting policy's.

    `reference` is `(prompts, trivial queries, rows)` for a sample of training rows, `start` is `(prompts,
    greedy completions, rows)` of the starting policy on the validation users. If both earn one constant
    reward, a retriever that returns nothing or a reward that always reads 0 is the likely cause, and the
    run fails here instead of wasting its steps on a constant (a retriever that raises for every query
    already raised in the scorer). One of them alone may legitimately be constant: an untrained policy
    that never reaches the target, or an exact-match reward (reward.k=1) that the last item's code never
    earns; GRPO then has signal only where some completion of a group scores differently, which is warned.
    """
    weights = np.array(reward_weights, dtype=float)

    def rewards_of(prompts, completions: list[str], rows) -> np.ndarray:
        """Per completion: each reward function's value (columns in `reward_funcs` order)."""
        columns = {c: list(rows[c]) for c in REWARD_COLUMNS}
        columns["beam_rank"] = [0] * len(completions)  # a lone completion: its own group of one beam
        return np.array([f(prompts=prompts, completions=completions, **columns) for f in reward_funcs]).T

    prompts, queries, rows = reference
    trivial = rewards_of(prompts, [format_answer(q, parse_mode) for q in queries], rows)
    policy = rewards_of(*start)
    main_name = reward_funcs[0].__name__
    constant = {name: len(set(values[:, 0].tolist())) == 1 for name, values in (("trivial", trivial), ("start", policy))}
    if all(constant.values()):
        raise RuntimeError(f"reward {main_name} is {trivial[0, 0]} for all {len(trivial)} trivial queries on training "
                           f"rows and {policy[0, 0]} for all {len(policy)} starting-policy completions: the retriever "
                           "or the reward is broken, or reward.k is too small")
    if constant["start"]:
        print(f"warning: the starting policy's {len(policy)} greedy completions on validation users all earn "
              f"{main_name} = {policy[0, 0]}; GRPO learns nothing until some completion in a group scores differently")
    elif constant["trivial"]:
        print(f"warning: the {len(trivial)} trivial queries on training rows all earn {main_name} = {trivial[0, 0]} "
              "(the starting policy's vary)")
    # The weighted sum is what TRL logs as `reward`, so the trivial query's is the reward curve's floor.
    return {"trivial/reward": float((trivial @ weights).mean()), "start/reward": float((policy @ weights).mean()),
            "start/nonzero_share": float(np.mean(policy[:, 0] != 0))}


def results_table(base: SystemResult, trained: SystemResult, trivial: SystemResult, config: RunConfig,
                  earlier: Sequence[SystemResult] = ()) -> tuple[str, dict]:
    """Before/after markdown table with 95% intervals, plus paired differences (trained - base, trained - trivial,
    and trained - each `earlier` stage, e.g. the zero-shot policy of a warm-started run) with raw and
    Holm-adjusted significance over the table's tests."""
    names = metric_names(config.eval.ks)
    summaries = [r.summary(config.eval.bootstrap, config.seed) for r in (*earlier, base, trained, trivial)]
    differences = {label: {name: paired_difference(trained.per_row[name], other.per_row[name], config.eval.bootstrap,
                                                   config.seed) for name in names}
                   for label, other in ((f"trained - {base.name}", base), (f"trained - {trivial.name}", trivial),
                                        *((f"trained - {e.name}", e) for e in earlier))}
    lines = [markdown_table(summaries, names), "", DIFFERENCES_NOTE, "", differences_table(differences, names)]
    return "\n".join(lines), {"systems": summaries, "differences": differences}


def row_ids_hash(rows) -> str:
    """A short hash of which rows (users or queries) a number was computed on, in order."""
    return hashlib.sha256("\n".join(rows["row_id"]).encode("utf-8")).hexdigest()[:16]


def train(config: RunConfig, resume: bool = False) -> str:
    """Run the whole job (see the module docstring); return the results markdown.

    `train.algorithm=ppo` hands the run to verl instead (`rec_rl.ppo.launch`).
    """
    route_of(config).check(config)  # before any branch: PPO refuses the explicit route too
    if config.train.algorithm == "ppo":
        from rec_rl.ppo.launch import run_ppo

        if resume:
            raise ConfigError("--resume: verl resumes PPO runs itself from train.run_dir's checkpoints "
                              "(verl's trainer.resume_mode, default auto); run without --resume")
        return run_ppo(config)
    try:
        return _train_trl(config, resume)
    finally:
        finish_wandb()


def _train_trl(config: RunConfig, resume: bool) -> str:
    """`train` for the TRL algorithms (grpo, rloo), both routes."""
    route = route_of(config)
    run_dir = Path(config.train.run_dir)
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints") if resume else None
    if resume and checkpoint is None:
        raise ConfigError(f"--resume: no complete checkpoint in {run_dir / 'checkpoints'}")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"train.run_dir {str(run_dir)!r} already holds a run; pass --resume or choose another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()
    if main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    args = trainer_args(config, run_dir)
    mode = configure_wandb(run_dir, config.train.wandb_project, config.train.wandb_mode)
    if mode == "disabled":
        args.report_to = [r for r in args.report_to if r != "wandb"]
    elif main and "wandb" in args.report_to:
        start_wandb_run(run_dir, config.train.wandb_project, mode, to_dict(config))

    task = load_task(config.data)
    split_seed, final = config.data.split_seed, config.train.final_split
    valid_rows = task.split("valid", config.train.valid_rows, split_seed)
    final_rows = task.evaluation_rows(final, config.train.test_rows, config.train.test_cold_rows, split_seed)
    shared = overlapping_rows(valid_rows, final_rows) if final == "test" else []
    if shared:
        raise ConfigError(f"{len(shared)} of the {len(valid_rows)} validation users are also test users (e.g. "
                          f"{shared[0]!r}): a stopping step or config chosen on them would be tested on them. Set "
                          "data.user_split=disjoint (the default) so that validation and test users differ")
    retriever = build_retriever(config.retriever, task.catalog, config.codes)
    model, tokenizer = route.load_policy(config, retriever, run_dir)
    if config.train.stop_at_newline:
        stop_at_line_end(model, tokenizer, args)
    prepared = route.prepare(config, task, retriever, model, tokenizer, run_dir, resume)
    model, tokenizer, trie, base_label = prepared.model, prepared.tokenizer, prepared.constraint, prepared.start_label

    train_rows, valid_rows, final_rows = (route.rows(r, task, retriever, config)
                                          for r in (task.split("train"), valid_rows, final_rows))
    train_set, valid_set, final_set = (prompt_rows(r, config, tokenizer) for r in (train_rows, valid_rows, final_rows))
    if config.train.shuffled_reward_targets:
        train_set = shuffled_targets(train_set, config.seed)
    reward_config, reward_funcs, reward_weights = reward_setup(config, task, retriever)
    args.reward_weights = reward_weights
    eval_kwargs = dict(retriever=retriever, catalog=task.catalog, parse_mode=reward_config.parse, ks=config.eval.ks,
                       max_new_tokens=args.max_completion_length, batch_size=config.train.eval_batch_size,
                       recall_min_gain=task.recall_min_gain, constraint=trie,
                       beam=route.beam_ranking(config, tokenizer, retriever, trie, task),
                       query_expansion=reward_config.query_expansion)
    log = MetricsLog(run_dir / "metrics.jsonl", writable=main)

    def validate(policy) -> dict:
        result, _ = evaluate_policy("valid", policy, tokenizer, valid_rows, valid_set["prompt"], **eval_kwargs)
        return validation_entry(result)

    base_file, earlier_file = run_dir / "base_eval.json", run_dir / "earlier_eval.json"
    if resume and base_file.exists():
        saved = json.loads(base_file.read_text())
        base = SystemResult(saved["name"], {k: np.array(v) for k, v in saved["per_row"].items()}, saved["info"])
        earlier_records = json.loads(earlier_file.read_text()) if earlier_file.exists() else []
        log.truncate_after(checkpoint_step(checkpoint))
    else:
        earlier_records = []
        for role, (name, load_stage) in prepared.earlier.items():
            stage = load_stage()
            if config.train.stop_at_newline:
                stop_at_line_end(stage, tokenizer, args)
            result = evaluate_policy(name, stage, tokenizer, final_rows, final_set["prompt"], **eval_kwargs)[0]
            del stage
            earlier_records.append({"role": role, "name": name, "info": result.info,
                                    "per_row": {k: v.tolist() for k, v in result.per_row.items()}})
        if main and earlier_records:
            earlier_file.write_text(json.dumps(earlier_records))
        base, base_completions = evaluate_policy(base_label, model, tokenizer, final_rows, final_set["prompt"], **eval_kwargs)
        if main:
            base_file.write_text(json.dumps({"name": base.name, "per_row": {k: v.tolist() for k, v in base.per_row.items()},
                                             "info": base.info, "examples": base_completions[:20]}))
        # Step 0 on the validation users: the starting policy and the trivial query beside it (the floor every
        # validation point is read against); then the check that the reward can vary at all, on training rows.
        start, start_completions = evaluate_policy("valid", model, tokenizer, valid_rows, valid_set["prompt"], **eval_kwargs)
        trivial_valid = trivial_query_result(route, task, valid_rows, retriever, config)
        check = np.random.default_rng(split_seed).permutation(len(train_rows))[:REWARD_CHECK_ROWS].tolist()
        check_rows = train_rows.select(check)
        startup = check_reward_signal(
            reward_funcs, reward_weights,
            (train_set.select(check)["prompt"], route.trivial_queries(task, check_rows, config, retriever), check_rows),
            (valid_set["prompt"], start_completions, valid_rows), reward_config.parse)
        floors = {f"trivial/{name}": float(values.mean()) for name, values in trivial_valid.per_row.items()}
        log.write({"kind": "valid", "step": 0, **validation_entry(start), **startup, **floors})

    earlier = [SystemResult(r["name"], {k: np.array(v) for k, v in r["per_row"].items()}, r["info"])
               for r in earlier_records]

    def diagnostics(policy):
        return route.diagnostics(policy, tokenizer, valid_set["prompt"], valid_rows, train_rows, task, retriever)

    start_diagnostics = diagnostics(model)

    from rec_rl.training.trainer import TRAINERS

    backend = config.retriever.backend + (f"[{config.retriever.engine}]" if config.retriever.backend == "bm25" else "")
    title = f"{config.train.algorithm.upper()} {config.policy.model} -> {backend} ({config.train.template})"
    trainer = TRAINERS[config.train.algorithm](
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_set, processing_class=tokenizer,
        peft_config=lora_config(config.policy), **prepared.trainer_kwargs,
        callbacks=[MetricsLogCallback(log), ValidationCallback(validate, log, config.train.eval_every,
                                                               run_dir / "curves.png", title)])
    trainer.shared_prefix = config.train.shared_prefix
    trainer.sft_weight, trainer.sft_targets = config.train.grpo_sft_weight, prepared.sft_targets
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - started
    trainer.save_model(str(run_dir / "final"))

    trained, trained_completions = evaluate_policy("trained policy", trainer.model, tokenizer, final_rows,
                                                   final_set["prompt"], **eval_kwargs)
    if not main:
        return ""
    trivial = trivial_query_result(route, task, final_rows, retriever, config)
    table, data = results_table(base, trained, trivial, config, earlier)
    cold = task.cold_start(final, final_rows)
    cold_table, cold_data = "", None
    if cold.any():  # item cold start, reported apart: the next item had no interaction before this period
        subset = [SystemResult(r.name, {k: v[cold] for k, v in r.per_row.items()}) for r in (*earlier, base, trained, trivial)]
        cold_text, cold_data = results_table(*subset[len(earlier):], config, subset[:len(earlier)])
        cold_table = (f"\nCold start: the {int(cold.sum())} of these {len(final_rows)} users whose next item had no "
                      f"interaction before it (their rows are also in the table above):\n\n{cold_text}\n")
    events = log.read()
    steps = [e for e in events if e.get("kind") == "train"]
    timing = {key: float(np.mean([e[key] for e in steps if e.get(key) is not None]))
              for key in ("time/generation_s", "time/reward_s", "time/step_s") if any(e.get(key) for e in steps)}
    valid_points = [e for e in events if e.get("kind") == "valid"]
    names = metric_names(config.eval.ks)
    # What each system scored on the validation users: what `rec-rl compare` and seed sweeps choose by.
    valid_metrics = {base.name: {n: valid_points[0][n] for n in names},
                     trained.name: {n: valid_points[-1][n] for n in names},
                     trivial.name: {n: valid_points[0][f"trivial/{n}"] for n in names}}
    protocol = {
        "config_hash": config_hash(config), "seed": config.seed, "split_seed": split_seed,
        "user_split": config.data.user_split if task.kind == "sequential" else "by query",
        "validation": {"split": "valid", "rows": len(valid_rows), "row_ids_hash": row_ids_hash(valid_rows),
                       "row_ids": list(valid_rows["row_id"]),
                       "used_for": "validation curve (every train.eval_every steps), the reward check, choices"},
        "table": {"split": final, "rows": len(final_rows), "row_ids_hash": row_ids_hash(final_rows),
                  "used_for": "confirmation: the before/after table" if final == "test" else
                  "tuning: the before/after table on validation users"},
        "route": route.name, "codes_hash": None if route.codes(retriever) is None else array_hash(route.codes(retriever))}
    levels = {"start": start_diagnostics, "trained": diagnostics(trainer.model)} if start_diagnostics else None
    header = (f"# rec-rl train: {title}\n\n{final.capitalize()} rows: {len(final_rows)} ({final} split, full-catalog "
              f"ranking{'; validation users are disjoint from them' if final == 'test' else ''}). Seed {config.seed}, "
              f"config {protocol['config_hash']}"
              + (f", codes {protocol['codes_hash']}" if protocol["codes_hash"] else "")
              + f". Steps: {trainer.state.global_step}, training wall time {train_seconds:.0f} s (with "
              f"{len(valid_points) - 1} validations of {len(valid_rows)} users). Mean seconds per step: "
              + ", ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in timing.items()) + ".\n")
    examples = "\n".join(f"- base: `{b.strip()[:100]}` -> trained: `{t.strip()[:100]}`"
                         for b, t in zip(json.loads(base_file.read_text())["examples"][:8], trained_completions[:8]))
    level_lines = "" if not levels else (
        f"\nPer-level code accuracy and loss on the {len(valid_rows)} validation users (teacher-forced, among each "
        "level's codes; floors: always the training targets' most frequent code at that level, and the "
        "cross-entropy of that level's code frequencies):\n\n"
        "| policy | " + " | ".join(f"level {e['level']}" for e in levels["start"]) + " |\n|---|"
        + "---|" * len(levels["start"]) + "\n" + "\n".join(
            f"| {name} | " + " | ".join(f"{e['accuracy']:.3f} (floor {e['floor']:.3f}); loss {e['loss']:.2f} "
                                        f"(floor {e['floor_loss']:.2f})" for e in levels[role]) + " |"
            for role, name in (("start", base.name), ("trained", trained.name))) + "\n")
    markdown = f"{header}\n{table}\n{cold_table}{level_lines}\nExample completions (same users):\n{examples}\n"
    (run_dir / "results.md").write_text(markdown)
    # Per-row values (rows in `row_ids` order) let `rec-rl compare` pair systems of different runs.
    per_row = {r.name: {k: v.tolist() for k, v in r.per_row.items()} for r in (*earlier, base, trained, trivial)}
    stages = {r["role"]: r["name"] for r in earlier_records}
    (run_dir / "results.json").write_text(json.dumps({
        **data, "roles": {**stages, "base": base.name, "trained": trained.name, "trivial": trivial.name},
        "protocol": protocol, "valid_metrics": valid_metrics, "code_level_accuracy": levels,
        "cold_start": None if cold_data is None else {"rows": int(cold.sum()), **cold_data},
        "train_seconds": train_seconds,
        "sft_seconds": prepared.sft_seconds, "timing": timing, "wandb_mode": mode,
        "row_ids": list(final_rows["row_id"]), "per_row": per_row}, indent=2))
    plot_curves(events, run_dir / "curves.png", title)
    return markdown


def validation_entry(result: SystemResult) -> dict:
    """A validation point of metrics.jsonl: mean metrics and the output facts."""
    return {name: float(values.mean()) for name, values in result.per_row.items()} | {
        key: result.info[key] for key in ("mean_query_words", "malformed_rate", "repeated_trigram_share", "invalid_rate")}
