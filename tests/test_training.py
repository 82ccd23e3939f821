"""The GRPO loop end to end with a tiny random SmolLM2-shaped policy: rewards, learning, checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rec_rl.config import ConfigError, config_hash, load_config
from rec_rl.tracking import MetricsLog, is_main_process
from rec_rl.policy import stop_at_line_end
from rec_rl.training.checkpoints import checkpoint_step, last_complete_checkpoint
from rec_rl.training.run import train
from rec_rl.training.trl_args import trainer_args
from rec_rl.training.shared_prefix import shared_prefill_generate, shared_prefix_logps


RLOO_CONFIG = Path(__file__).parents[1] / "configs" / "rloo.yaml"


def tiny_overrides(data: Path, run_dir: Path, steps: int, *extra: str, section: str = "grpo") -> list[str]:
    # Dense retrieval ranks every item for any query, so even a random policy's rewards vary within a
    # group and GRPO has a gradient to follow.
    return [f"data.path={data}", "retriever.backend=dense", "policy.model=tiny", "policy.lora_layers=[-1]",
            f"train.run_dir={run_dir}", "train.test_rows=5", "train.valid_rows=5", "train.eval_every=1",
            "train.wandb_mode=offline", "reward.k=20", "eval.ks=[1, 5]", "eval.bootstrap=50",
            f"train.{section}={{max_steps: {steps}, per_device_train_batch_size: 4, num_generations: 2, "
            "max_completion_length: 6, save_steps: 1, warmup_steps: 0, learning_rate: 0.01}", *extra]


def tiny_run(data: Path, run_dir: Path, steps: int, *extra: str, config_file: Path | None = None, section: str = "grpo"):
    return load_config(config_file, tiny_overrides(data, run_dir, steps, *extra, section=section))


def train_events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_learns_writes_artefacts_and_resumes(tiny_sequential: Path, tmp_path: Path, monkeypatch):
    from rec_rl.training import trainer

    shared_calls = []
    monkeypatch.setattr(trainer, "shared_prefix_logps",
                        lambda *args, **kwargs: shared_calls.append("loss") or shared_prefix_logps(*args, **kwargs))
    monkeypatch.setattr(trainer, "shared_prefill_generate",
                        lambda *args: shared_calls.append("generate") or shared_prefill_generate(*args))
    run_dir = tmp_path / "run"
    markdown = train(tiny_run(tiny_sequential, run_dir, steps=2))
    assert shared_calls == ["generate", "loss"] * 2, "each distinct prompt computed once, every step"

    events = train_events(run_dir)
    steps = [e["step"] for e in events if e["kind"] == "train"]
    assert steps == [1, 2]
    assert all("rewards/ndcg@20/mean" in e and "time/generation_s" in e for e in events if e["kind"] == "train")
    assert [e["step"] for e in events if e["kind"] == "valid"] == [0, 1, 2]
    assert events[0]["trivial/reward"] > 0
    assert "trained - base" in markdown and (run_dir / "results.md").read_text() == markdown
    assert "Holm" in markdown and "Test rows: 4 (test split" in markdown and "Seed 0, config " in markdown
    results = json.loads((run_dir / "results.json").read_text())
    protocol = results["protocol"]
    assert protocol["config_hash"] == config_hash(tiny_run(tiny_sequential, run_dir, 2))
    assert (protocol["validation"]["rows"], protocol["table"]["rows"]) == (1, 4)
    assert not set(protocol["validation"]["row_ids"]) & set(results["row_ids"]), "validation users are not test users"
    assert set(results["valid_metrics"]) == set(results["roles"].values())
    assert all(len(d) == 4 and all("p_holm" in cell for cell in d.values()) for d in results["differences"].values())
    assert (run_dir / "curves.png").stat().st_size > 10_000
    assert list((run_dir / "wandb").glob("offline-run-*")), "wandb should have written an offline run"
    assert {p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2"}

    adapter = load_file(run_dir / "final" / "adapter_model.safetensors")
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    assert lora_b and any(tensor.abs().sum() > 0 for tensor in lora_b), "LoRA B starts at zero: no update happened"
    assert all(".layers.1." in name for name in adapter), "adapters only on the top layer, as configured"

    train(tiny_run(tiny_sequential, run_dir, steps=3), resume=True)
    steps = [e["step"] for e in train_events(run_dir) if e["kind"] == "train"]
    assert steps == [1, 2, 3], "resume continues from checkpoint-2 without repeating or skipping steps"


def test_sigkill_mid_run_resumes_without_duplicated_or_missing_steps(tiny_sequential: Path, tmp_path: Path):
    run_dir, steps = tmp_path / "run", 12
    overrides = tiny_overrides(tiny_sequential, run_dir, steps, "train.eval_every=0",
                               "train.grpo.save_steps=2", "train.grpo.save_total_limit=2")
    process = subprocess.Popen([sys.executable, "-m", "rec_rl.cli", "train", *overrides],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = MetricsLog(run_dir / "metrics.jsonl")
    try:
        deadline = time.monotonic() + 300
        # Kill between saves: a checkpoint exists and steps past it are already logged.
        while process.poll() is None and time.monotonic() < deadline:
            checkpoint = last_complete_checkpoint(run_dir / "checkpoints")
            logged = [e["step"] for e in log.read() if e["kind"] == "train"]
            if checkpoint and logged and max(logged) > checkpoint_step(checkpoint):
                break
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    logged = [e["step"] for e in log.read() if e["kind"] == "train"]
    saved = checkpoint_step(last_complete_checkpoint(run_dir / "checkpoints"))
    assert saved < max(logged) < steps

    # A save the kill interrupted: a newer checkpoint folder without its trainer_state.json.
    torn = run_dir / "checkpoints" / f"checkpoint-{saved + 1}"
    torn.mkdir(exist_ok=True)
    (torn / "adapter_model.safetensors").write_bytes(b"torn")
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind": "train", "st')  # and a log line cut off mid-write

    train(load_config(None, overrides), resume=True)
    events = log.read()
    assert [e["step"] for e in events if e["kind"] == "train"] == list(range(1, steps + 1))
    assert [e["step"] for e in events if e["kind"] == "valid"] == [0]


def test_train_refuses_validation_users_that_are_test_users(tiny_sequential: Path, tmp_path: Path, monkeypatch):
    from rec_rl.training import routes

    # Every route loads its policy through rec_rl.training.routes.load_policy.
    monkeypatch.setattr(routes, "load_policy", lambda *args: pytest.fail("refused before the policy is loaded"))
    with pytest.raises(ConfigError, match=r"validation users are also test users .*data.user_split=disjoint"):
        train(tiny_run(tiny_sequential, tmp_path / "run", 1, "data.user_split=shared"))
    # Tuning on validation users: the before/after table may read them (nothing is confirmed on test users).
    run_dir = tmp_path / "tuning"
    monkeypatch.undo()
    markdown = train(tiny_run(tiny_sequential, run_dir, 1, "data.user_split=shared", "train.final_split=valid",
                              "train.eval_every=0"))
    assert "Valid rows: 5 (valid split" in markdown
    assert json.loads((run_dir / "results.json").read_text())["protocol"]["table"]["split"] == "valid"


def test_bm25s_engine_and_mrr_reward_by_override_alone(tiny_sequential: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    train(tiny_run(tiny_sequential, run_dir, 1, "retriever.backend=bm25", "retriever.engine=bm25s",
                   "reward.ndcg_weight=0", "reward.mrr_weight=1", "train.eval_every=0"))
    (step,) = [e for e in train_events(run_dir) if e["kind"] == "train"]
    assert {"rewards/mrr@20/mean", "rewards/ndcg@20/mean", "rewards/recall@20/mean"} <= set(step)
    # the weighted sum TRL logs as `reward` is the MRR reward alone
    assert step["reward"] == pytest.approx(step["rewards/mrr@20/mean"])
    assert "bm25[bm25s]" in (run_dir / "results.md").read_text()


def test_rloo_trains_through_the_same_loop(tiny_sequential: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    config = tiny_run(tiny_sequential, run_dir, 2, "train.eval_every=0", config_file=RLOO_CONFIG, section="rloo")
    assert config.train.algorithm == "rloo" and config.train.rloo["normalize_advantages"] is True
    markdown = train(config)

    steps = [e for e in train_events(run_dir) if e["kind"] == "train"]
    assert [e["step"] for e in steps] == [1, 2]
    assert all("rewards/ndcg@20/mean" in e and "time/generation_s" in e for e in steps)
    assert markdown.startswith("# rec-rl train: RLOO tiny")
    adapter = load_file(run_dir / "final" / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name), "RLOO made no update"


def test_rloo_knobs_reach_trl(tmp_path: Path):
    args = trainer_args(load_config(RLOO_CONFIG, ["train.rloo.beta=0.02"]), tmp_path)
    assert type(args).__name__ == "RLOOConfig" and args.beta == 0.02 and args.normalize_advantages is True
    assert args.bf16 is False and args.gradient_checkpointing is False and args.num_generations == 8
    with pytest.raises(ConfigError, match="unknown key 'train.rloo.loss_type': not a field of trl.RLOOConfig"):
        trainer_args(load_config(RLOO_CONFIG, ["train.rloo.loss_type=dapo"]), tmp_path)


def test_train_refuses_to_overwrite_a_run_and_resume_needs_a_checkpoint(tiny_sequential: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        train(tiny_run(tiny_sequential, run_dir, steps=1), resume=True)
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_run(tiny_sequential, run_dir, steps=1))


def test_grpo_knobs_reach_trl_and_typos_name_the_key(tmp_path: Path):
    config = load_config(None, ["train.grpo.beta=0.04", "train.grpo.loss_type=dr_grpo", "train.grpo.num_generations=4",
                                "train.grpo.per_device_train_batch_size=8", "train.grpo.scale_rewards=batch"])
    args = trainer_args(config, tmp_path)
    assert (args.beta, args.loss_type, args.num_generations, args.scale_rewards) == (0.04, "dr_grpo", 4, "batch")
    assert args.max_completion_length == 24 and args.bf16 is False and args.gradient_checkpointing is False
    with pytest.raises(ConfigError, match="train.grpo.num_generation"):
        trainer_args(load_config(None, ["train.grpo.num_generation=4"]), tmp_path)
    with pytest.raises(ConfigError, match="train.grpo.learning_rate must be a number, got 'fast'"):
        trainer_args(load_config(None, ["train.grpo.learning_rate=fast"]), tmp_path)
    with pytest.raises(ConfigError, match="train.grpo.output_dir is set by rec-rl"):
        trainer_args(load_config(None, ["train.grpo.output_dir=/x"]), tmp_path)


def test_stop_at_line_end_reaches_transformers_and_vllm_rollouts(tmp_path: Path):
    from types import SimpleNamespace

    from rec_rl.config import PolicyConfig
    from rec_rl.policy import load_policy, newline_token_ids

    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    newlines = newline_token_ids(tokenizer)
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    args = SimpleNamespace(use_vllm=False, generation_kwargs=None)
    stop_at_line_end(model, tokenizer, args)
    assert newlines and set(model.generation_config.eos_token_id) == set(eos) | set(newlines)
    assert args.generation_kwargs is None  # transformers rollouts read generation_config
    args = SimpleNamespace(use_vllm=True, generation_kwargs={"top_k": 50})
    stop_at_line_end(model, tokenizer, args)
    assert args.generation_kwargs == {"stop_token_ids": newlines, "top_k": 50}


def test_only_the_first_process_writes(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    other = MetricsLog(tmp_path / "metrics.jsonl", writable=False)
    other.write({"step": 2})
    other.truncate_after(0)
    assert other.read() == [{"step": 1}]


@pytest.mark.parametrize("overrides, message", [
    (["codes.hybrid_weight=0.3"], "codes.hybrid_weight > 0 needs codes.constrained=false"),
    (["train.algorithm=rloo"], "codes.constrained rollouts need train.algorithm=grpo"),
    (["train.sft.weight_decay=0.01"], "train.sft.weight_decay must be 0"),
    (["policy.lora=false"], "set policy.lora=true"),
    (["reward.query_expansion=true"], "reward.query_expansion adds the policy's words to a text query"),
])
def test_explicit_route_refuses_settings_it_cannot_combine_before_any_work(tmp_path: Path, overrides, message):
    config = load_config(None, ["retriever.backend=codes", "train.template=history_codes", f"train.run_dir={tmp_path / 'run'}",
                                *overrides])
    with pytest.raises(ConfigError, match=message):
        train(config)
    assert not (tmp_path / "run").exists(), "refused before the run folder, the index or the policy"


def test_shared_prefix_logps_equal_trls_forward_with_gradients():
    """Each distinct prompt run once gives TRL's fused-head log-probs, entropies and LoRA gradients."""
    import torch
    from peft import get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from rec_rl.config import PolicyConfig
    from rec_rl.policy import load_policy, lora_config

    model, _ = load_policy(PolicyConfig(model="tiny"))
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    model = get_peft_model(model, lora_config(PolicyConfig(model="tiny", lora_layers=[-1])))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # LoRA B starts at zero; make the adapters change the prompt's keys and values
            torch.nn.init.normal_(parameter, std=0.02)
    model.train()
    generator = torch.Generator().manual_seed(0)
    width, completion = 30, 7
    ids, mask = [], []
    for prompt_length in (30, 22):  # two prompts, the second left-padded, four completions each
        prompt = torch.randint(5, 1000, (prompt_length,), generator=generator)
        for j in range(4):
            ids.append(torch.cat([torch.zeros(width - prompt_length, dtype=torch.long), prompt,
                                  torch.randint(5, 1000, (completion,), generator=generator)]))
            mask.append(torch.cat([torch.zeros(width - prompt_length, dtype=torch.long),
                                   torch.ones(prompt_length, dtype=torch.long),
                                   (torch.arange(completion) < 2 + 2 * j).long()]))  # right-padded completions
    ids, mask = torch.stack(ids), torch.stack(mask)

    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-completion] = -100
    full = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    logps, entropies = shared_prefix_logps(model, ids, mask, completion, compute_entropy=True)
    scored = mask[:, -completion:].bool()
    assert torch.allclose(logps[scored], full.log_probs[:, -completion:][scored], atol=1e-5)
    assert torch.allclose(entropies[scored], full.entropy[:, -completion:][scored], atol=1e-5)
    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = torch.autograd.grad((full.log_probs[:, -completion:] * scored).sum(), trainable)
    shared = torch.autograd.grad((logps * scored).sum(), trainable)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(expected, shared))
    assert max(g.abs().max() for g in expected) > 1e-3, "the gradients compared are not all zero"
    assert shared_prefix_logps(model, ids[::4], mask[::4], completion) is None, "no shared prompt: TRL's forward"


def test_shared_prefill_generates_what_generate_does():
    import torch

    from rec_rl.config import PolicyConfig
    from rec_rl.policy import load_policy

    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
             for text in ("recommend me a racing game like forza please", "zelda")]
    inputs = tokenizer([chat for chat in chats for _ in range(4)], return_tensors="pt", padding=True,
                       add_special_tokens=False)
    assert inputs["attention_mask"][4:, 0].eq(0).all(), "the second prompt is left-padded"
    for sampling in (False, True):
        options = dict(max_new_tokens=10, do_sample=sampling, pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(0)
        plain = model.generate(**inputs, **options)
        torch.manual_seed(0)
        shared = shared_prefill_generate(model)(**inputs, **options)
        assert torch.equal(plain, shared)


def test_seeds_train_one_config_per_seed_on_the_same_users(tiny_sequential: Path, tmp_path: Path):
    from rec_rl.experiments.seeds import run_seeds, summarize_seeds

    output = tmp_path / "seeds"
    overrides = tiny_overrides(tiny_sequential, tmp_path / "replaced", 1, "train.eval_every=0",
                               "train.wandb_mode=disabled")
    markdown = run_seeds(None, overrides, [0, 1], output, parallel=2)  # side by side, a core each
    summary = json.loads((output / "seeds.json").read_text())
    assert "--parallel 2" in summary["command"]
    assert summary["seeds"] == [0, 1] and sorted(p.name for p in output.glob("seed-*")) == ["seed-0", "seed-1"]
    assert [json.loads((output / f"seed-{s}" / "results.json").read_text())["protocol"]["seed"] for s in (0, 1)] == [0, 1]
    trivial = summary["across_seeds"][summary["roles"]["trivial"]]
    # The trivial query has no randomness: the same value under both seeds shows both scored the same users.
    assert all(m["std"] == 0 and len(m["values"]) == 2 for m in trivial.values())
    learns = summary["trained_minus_start"]["ndcg@1"]
    assert learns["seeds"] == 2 and 0 <= learns["seeds_above_zero_holm"] <= learns["seeds_above_zero"] <= 2
    assert "2 seeds of config" in markdown and "± " in markdown

    # rec-rl table: the finished runs side by side on their shared users, differences paired row by row.
    from rec_rl.cli import main

    assert main(["table", str(output / "seed-0"), str(output / "seed-1"), "--output", str(tmp_path / "table"),
                 "eval.baselines=[popularity]"]) == 0
    table = json.loads((tmp_path / "table" / "table.json").read_text())
    runs = [json.loads((output / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    import numpy as np

    head, other = (np.array(r["per_row"][r["roles"]["trained"]]["ndcg@1"]) for r in runs)
    cell = table["differences"]["seed-0 - seed-1 (trained)"]["ndcg@1"]
    assert np.isclose(cell["mean"], (head - other).mean()) and "p_holm" in cell
    assert [s["name"] for s in table["systems"]][-1] == "popularity" and table["rows"] == len(head)
    assert main(["table"]) == 2, "no run named: an error, not an empty table"

    # A run's config file read through today's schema: a key the file lacks (added since) counts at its default ...
    import yaml

    path = output / "seed-1" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["eval"]["beam_width"]
    path.write_text(yaml.safe_dump(saved))
    assert summarize_seeds({0: output / "seed-0", 1: output / "seed-1"})["seeds"] == [0, 1]
    # ... while runs of another configuration are not seeds of this one.
    saved["train"]["grpo"]["learning_rate"] = 0.5
    path.write_text(yaml.safe_dump(saved))
    with pytest.raises(ValueError, match="not seeds of one configuration"):
        summarize_seeds({0: output / "seed-0", 1: output / "seed-1"})


def test_route_checks_run_before_any_work_and_name_the_key(tmp_path: Path):
    from rec_rl.training.routes import ExplicitRoute, ImplicitRoute, route_of

    explicit = load_config(None, ["retriever.backend=codes", "train.template=history_codes", "train.sft.max_stepz=3"])
    assert isinstance(route_of(explicit), ExplicitRoute)
    with pytest.raises(ConfigError, match="unknown key 'train.sft.max_stepz'"):
        route_of(explicit).check(explicit)
    implicit = load_config(None, ["train.template=history_codes"])
    assert isinstance(route_of(implicit), ImplicitRoute)
    for template in ("history_codes", "history_titles_codes"):
        with pytest.raises(ConfigError, match="asks for item codes"):
            train(load_config(None, [f"train.template={template}", f"train.run_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run").exists(), "refused before the run folder is made"
    queries = load_config(None, ["retriever.backend=codes", "train.template=history_query_recent"])
    with pytest.raises(ConfigError, match="asks for a search query"):
        route_of(queries).check(queries)
    for overrides, message in ((["data.kind=esci"], "data.kind='esci' rows have no history"),
                               (["train.algorithm=ppo"], "verl's reward rows carry no history titles")):
        expanded = load_config(None, ["reward.query_expansion=true", *overrides])
        with pytest.raises(ConfigError, match=message):
            route_of(expanded).check(expanded)


def test_eval_policy_reproduces_the_runs_trained_row_and_scores_other_users(tiny_sequential: Path, tmp_path: Path):
    from rec_rl.cli import main

    run_dir = tmp_path / "run"
    train(tiny_run(tiny_sequential, run_dir, 2, "train.eval_every=0", "train.wandb_mode=disabled"))
    results = json.loads((run_dir / "results.json").read_text())
    out = tmp_path / "eval"
    assert main(["eval", "--policy", str(run_dir), "eval.max_rows=5", f"eval.output_dir={out}",
                 "eval.baselines=[popularity, transitions]"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["row_ids"] == results["row_ids"], "the run's own test users"
    assert report["per_row"]["trained policy"] == results["per_row"]["trained policy"], "the run's trained row, exactly"
    assert set(report["differences"]) == {"policy - popularity", "policy - transitions"}
    assert len((out / "completions.jsonl").read_text().splitlines()) == len(results["row_ids"])

    # Other users of the same catalog, through config alone: the valid split here.
    other = tmp_path / "eval_valid"
    assert main(["eval", "--policy", str(run_dir), "eval.split=valid", f"eval.output_dir={other}"]) == 0
    assert json.loads((other / "metrics.json").read_text())["split"] == "valid"
    # New users of the same catalog in another data folder.
    from tests.conftest import write_jsonl

    new_users = tmp_path / "new_users"
    new_users.mkdir()
    (new_users / "items.jsonl").write_text((tiny_sequential / "items.jsonl").read_text())
    write_jsonl(new_users / "sequences.jsonl", [{"user_id": f"n{i}", "item_ids": s}
                                                for i, s in enumerate([[0, 1, 2, 4], [5, 6, 7, 8], [9, 0, 3, 1]])])
    elsewhere = tmp_path / "eval_new"
    assert main(["eval", "--policy", str(run_dir), f"data.path={new_users}", f"eval.output_dir={elsewhere}"]) == 0
    assert set(json.loads((elsewhere / "metrics.json").read_text())["row_ids"]) <= {"n0", "n1", "n2"}
    assert main(["eval", "--policy", str(tmp_path / "nowhere")]) == 2


def test_recommend_answers_good_lines_and_names_the_bad_ones(tiny_sequential: Path, tmp_path: Path):
    from rec_rl.experiments.recommend import load_recommender

    run_dir = tmp_path / "run"
    train(tiny_run(tiny_sequential, run_dir, 1, "train.eval_every=0", "train.wandb_mode=disabled"))
    lines = "\n".join([json.dumps({"user_id": "a", "history": ["0", "1"]}),
                       "{not json",
                       json.dumps({"user_id": "b", "history": ["3", "999"]}),
                       json.dumps({"user_id": "c"}),
                       json.dumps({"user_id": "d", "history": ["6", "7", "8"]})]) + "\n"
    result = subprocess.run([sys.executable, "-m", "rec_rl.cli", "recommend", str(run_dir), "--k", "3"], input=lines,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["id"] for a in answers] == ["a", "d"], "the good lines, in order"
    assert "<stdin>:2: skipped" in result.stderr and "<stdin>:3: skipped: item '999'" in result.stderr
    assert "<stdin>:4: skipped" in result.stderr
    for answer, history in zip(answers, (["0", "1"], ["6", "7", "8"])):
        assert len(answer["items"]) == 3 and "query" in answer
        assert all(item["title"] and item["item_id"] not in history for item in answer["items"]), "history dropped"
    # The Python API gives the same top items.
    api = load_recommender(run_dir).recommend([["0", "1"]], k=3)[0]
    assert [i["item_id"] for i in api["items"]] == [i["item_id"] for i in answers[0]["items"]]
    # With reward.query_expansion the answer names what was searched, the history's titles then the policy's
    # words, and its items are that text's ranking.
    from rewards.parsing import expand_query

    expanded = load_recommender(run_dir, ["reward.query_expansion=true"])
    catalog = expanded.task.catalog
    (answer,) = expanded.recommend([["0", "1"]], k=3)
    assert answer["query"] == expand_query(api["query"], [catalog.titles[catalog.row_of[i]] for i in ("0", "1")])
    searched = expanded.retriever.search([answer["query"]], 3, [[catalog.row_of["0"], catalog.row_of["1"]]])
    assert [i["item_id"] for i in answer["items"]] == [catalog.ids[r] for r in searched.rows[0] if r >= 0]


def test_warm_start_clones_the_trivial_query_then_rl_starts_from_it(tiny_sequential: Path, tmp_path: Path):
    from rec_rl.data import load_task
    from rec_rl.evaluation.baselines import last_titles_query
    from rec_rl.policy import load_policy
    from rec_rl.training.sft import trivial_query_examples

    run_dir = tmp_path / "run"
    config = tiny_run(tiny_sequential, run_dir, 1, "retriever.backend=bm25", "train.warm_start=true",
                      "train.sft={max_steps: 12, per_device_train_batch_size: 4, learning_rate: 0.01, "
                      "logging_steps: 1, warmup_steps: 0}")
    task = load_task(config.data)
    _, tokenizer = load_policy(config.policy)
    examples = trivial_query_examples(task, config, tokenizer)
    rows = task.split("train")
    assert len(examples) == len(rows)
    for example, row in zip(examples, rows):
        # The answer is the trivial query's words, newest title first, titles marked apart, and the prompt is the
        # RL prompt.
        assert sorted(example["completion"].replace(";", " ").split()) == sorted(
            last_titles_query(row["history_titles"], 5).split())
        titles = [title[:config.train.max_title_chars].strip() for title in reversed(row["history_titles"][-5:])]
        assert example["completion"] == " " + "; ".join(titles)
        assert example["prompt"].rstrip().endswith("Query:")

    markdown = train(config)
    losses = [e["loss"] for e in MetricsLog(run_dir / "sft_metrics.jsonl").read() if "loss" in e]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]), "the warm start's SFT loss falls"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["roles"]["base"] == "warm-started policy" and results["sft_seconds"] > 0
    assert "trained - warm-started policy" in markdown
    # Every stage on the same rows: the zero-shot policy (before the warm start) is scored beside its successors.
    assert results["roles"]["zero_shot"] == "zero-shot policy" and "trained - zero-shot policy" in markdown
    assert [s["name"] for s in results["systems"]][:2] == ["zero-shot policy", "warm-started policy"]
    assert {len(v) for v in results["per_row"]["zero-shot policy"].values()} == {len(results["row_ids"])}
    assert (run_dir / "sft" / "config.json").is_file() and (run_dir / "final" / "adapter_model.safetensors").is_file()


def test_warm_start_with_nothing_to_train_is_refused(tmp_path: Path):
    from rec_rl.training.routes import route_of

    config = load_config(None, ["train.warm_start=true", "train.sft.max_steps=0", f"train.run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="train.warm_start"):
        route_of(config).check(config)


def test_shuffled_reward_targets_move_each_targets_gains_with_it_and_keep_prompts_and_histories(tiny_sequential: Path):
    """train.shuffled_reward_targets (a control): the GRPO rows' targets and gains are permuted together, seeded;
    every row keeps its prompt and its history, and each target still comes from some row."""
    import datasets

    from rec_rl.config import load_config
    from rec_rl.data import load_task
    from rec_rl.training.rows import shuffled_targets

    rows = load_task(load_config(None, [f"data.path={tiny_sequential}"]).data).split("train")
    dataset = datasets.Dataset.from_dict({"prompt": [f"p{i}" for i in range(len(rows))],
                                          "target_item_ids": rows["target_item_ids"],
                                          "gains": [[float(i)] for i in range(len(rows))],
                                          "exclude_item_ids": rows["exclude_item_ids"]})
    shuffled = shuffled_targets(dataset, seed=0)
    assert list(shuffled["prompt"]) == list(dataset["prompt"])
    assert list(shuffled["exclude_item_ids"]) == list(dataset["exclude_item_ids"])
    moved = [int(g[0]) for g in shuffled["gains"]]
    assert sorted(moved) == list(range(len(rows))) and moved != list(range(len(rows))), "a permutation, not the identity"
    assert [list(t) for t in shuffled["target_item_ids"]] == [list(dataset["target_item_ids"][i]) for i in moved], \
        "each target moves with its own gains"
    assert list(shuffled_targets(dataset, seed=0)["gains"]) == list(shuffled["gains"]), "seeded"
