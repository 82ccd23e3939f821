"""The GRPO loop end to end with a tiny random SmolLM2-shaped policy: rewards, learning, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rec_rl.config import ConfigError, load_config
from rec_rl.training.run import is_main_process, stop_at_line_end, train, trainer_args


RLOO_CONFIG = Path(__file__).parents[1] / "configs" / "rloo.yaml"


def tiny_run(data: Path, run_dir: Path, steps: int, *extra: str, config_file: Path | None = None, section: str = "grpo"):
    # Dense retrieval ranks every item for any query, so even a random policy's rewards vary within a
    # group and GRPO has a gradient to follow.
    return load_config(config_file, [
        f"data.path={data}", "retriever.backend=dense", "policy.model=tiny", "policy.lora_layers=[-1]",
        f"train.run_dir={run_dir}", "train.test_rows=5", "train.valid_rows=5", "train.eval_every=1",
        "train.wandb_mode=offline", "reward.k=20", "eval.ks=[1, 5]", "eval.bootstrap=50",
        f"train.{section}={{max_steps: {steps}, per_device_train_batch_size: 4, num_generations: 2, "
        "max_completion_length: 6, save_steps: 1, warmup_steps: 0, learning_rate: 0.01}", *extra])


def train_events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_learns_writes_artefacts_and_resumes(tiny_sequential: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    markdown = train(tiny_run(tiny_sequential, run_dir, steps=2))

    events = train_events(run_dir)
    steps = [e["step"] for e in events if e["kind"] == "train"]
    assert steps == [1, 2]
    assert all("rewards/ndcg@20/mean" in e and "time/generation_s" in e for e in events if e["kind"] == "train")
    assert [e["step"] for e in events if e["kind"] == "valid"] == [0, 1, 2]
    assert events[0]["startup_reference_reward"] > 0
    assert "trained - base" in markdown and (run_dir / "results.md").read_text() == markdown
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
    with pytest.raises(ConfigError, match="no checkpoint"):
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
    from rec_rl.tracking import MetricsLog

    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    other = MetricsLog(tmp_path / "metrics.jsonl", writable=False)
    other.write({"step": 2})
    other.truncate_after(0)
    assert other.read() == [{"step": 1}]
