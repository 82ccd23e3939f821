"""The verl PPO adapter: data export round-trips, the reward matches TRL's, verl's reward manager drives it."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

from rec_rl.config import VERL_DEFAULTS, ConfigError, load_config, to_dict
from rec_rl.data import load_task
from rec_rl.ppo.export import DATA_SOURCE, export_task, reward_columns
from rec_rl.ppo.launch import hydra_value, verl_overrides
from rec_rl.ppo.reward import compute_score
from rec_rl.prompts import build_messages, get_template
from rec_rl.training.rows import reward_setup
from rec_rl.training.run import train
from retrievers import build_retriever

COMPLETIONS = ["Query: zelda mario switch", "Query: xbox one halo", "no query line at all", "",
               "Query: playstation 4", "Query: \x00\ud800 ((("]


def ppo_config(data: Path, run_dir: Path, *extra: str):
    return load_config(None, [f"data.path={data}", "retriever.engine=bm25s", "train.algorithm=ppo",
                              "train.template=history_query_example", f"train.run_dir={run_dir}",
                              "train.valid_rows=1", "reward.k=5", "reward.recall_weight=0.5", *extra])


def saved_config(config, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return path


def test_export_round_trips_prompts_and_reward_columns(tiny_sequential: Path, tmp_path: Path):
    config = ppo_config(tiny_sequential, tmp_path / "run")
    task = load_task(config.data)
    paths = export_task(task, config, tmp_path / "verl_data")

    exported = datasets.Dataset.from_parquet(str(paths["train"]))
    rows = task.split("train")
    assert len(exported) == len(rows) > 0
    assert len(datasets.Dataset.from_parquet(str(paths["valid"]))) == 1
    template = get_template(config.train.template)
    for record, row in zip(exported, rows):
        assert record["data_source"] == DATA_SOURCE and record["extra_info"]["row_id"] == row["row_id"]
        assert record["prompt"] == build_messages(row, template, config.train.max_title_chars)
        columns = reward_columns(record["reward_model"]["ground_truth"])
        assert columns == {"target_item_ids": row["target_item_ids"], "gains": pytest.approx(row["gains"]),
                           "exclude_item_ids": row["exclude_item_ids"]}


def test_export_refuses_a_prefilled_template(tiny_sequential: Path, tmp_path: Path):
    config = ppo_config(tiny_sequential, tmp_path / "run", "train.template=history_query")
    with pytest.raises(ConfigError, match="train.template 'history_query' pre-fills"):
        export_task(load_task(config.data), config, tmp_path / "verl_data")


def test_compute_score_equals_trls_weighted_reward(tiny_sequential: Path, tmp_path: Path):
    config = ppo_config(tiny_sequential, tmp_path / "run")
    config_path = saved_config(config, tmp_path / "run")
    task = load_task(config.data)
    rows = task.split("train")
    _, functions, weights = reward_setup(config, task, build_retriever(config.retriever, task.catalog, config.codes))
    row = rows[0]
    ground_truth = json.dumps({key: list(row[key]) for key in ("target_item_ids", "gains", "exclude_item_ids")})

    # TRL calls each reward function on the whole batch, with the dataset columns repeated per completion.
    columns = {key: [row[key]] * len(COMPLETIONS) for key in ("target_item_ids", "gains", "exclude_item_ids")}
    per_function = np.array([f(prompts=[""] * len(COMPLETIONS), completions=COMPLETIONS, **columns)
                             for f in functions], dtype=float)
    trl_totals = np.nansum(per_function * np.array(weights)[:, None], axis=0)

    scores = [compute_score(DATA_SOURCE, c, ground_truth, {}, config_path=str(config_path)) for c in COMPLETIONS]
    assert [s["score"] for s in scores] == pytest.approx(trl_totals.tolist())
    assert weights[:2] == [1.0, 0.5] and any(t > 0 for t in trl_totals), "a hit must score, or the check is empty"
    assert all(np.isfinite(s["score"]) for s in scores)
    assert {"ndcg@5", "recall@5", "mrr@5"} <= set(scores[0])


def test_verl_reward_manager_drives_compute_score(tiny_sequential: Path, tmp_path: Path):
    torch = pytest.importorskip("torch")
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import get_reward_manager_cls

    from rec_rl.policy import resolve_model_path

    config = ppo_config(tiny_sequential, tmp_path / "run")
    config_path = saved_config(config, tmp_path / "run")
    row = load_task(config.data).split("train")[0]
    ground_truth = json.dumps({key: list(row[key]) for key in ("target_item_ids", "gains", "exclude_item_ids")})
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(load_config(None, ["policy.model=tiny"]).policy))

    # verl loads the function from a file path, as the launcher configures it.
    from rec_rl.ppo import reward

    verl_config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": reward.__file__, "name": "compute_score", "reward_kwargs": {"config_path": str(config_path)}}}})
    manager = get_reward_manager_cls("naive")(tokenizer, num_examine=0, compute_score=get_custom_reward_fn(verl_config))

    # A verl rollout batch: left-padded prompts, right-padded responses, one attention mask over both.
    prompt_ids = tokenizer("a prompt", add_special_tokens=False)["input_ids"]
    responses = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in COMPLETIONS[:3]]
    width = max(len(r) for r in responses)
    pad = tokenizer.pad_token_id or 0
    batch = {
        "prompts": torch.tensor([prompt_ids] * len(responses)),
        "responses": torch.tensor([r + [pad] * (width - len(r)) for r in responses]),
        "attention_mask": torch.tensor([[1] * len(prompt_ids) + [1] * len(r) + [0] * (width - len(r))
                                        for r in responses]),
    }
    data = DataProto.from_dict(tensors=batch, non_tensors={
        "data_source": np.array([DATA_SOURCE] * len(responses), dtype=object),
        "reward_model": np.array([{"ground_truth": ground_truth}] * len(responses), dtype=object),
        "extra_info": np.array([{} for _ in responses], dtype=object)})
    result = manager(data, return_dict=True)

    expected = [compute_score(DATA_SOURCE, tokenizer.decode(r, skip_special_tokens=True), ground_truth,
                              config_path=str(config_path))["score"] for r in responses]
    placed = [result["reward_tensor"][i, len(r) - 1].item() for i, r in enumerate(responses)]
    assert placed == pytest.approx(expected)
    assert result["reward_tensor"].sum().item() == pytest.approx(sum(expected))  # nothing anywhere else
    assert any(e > 0 for e in expected)


def test_verl_overrides_use_keys_verl_knows(tiny_sequential: Path, tmp_path: Path):
    verl_config = pytest.importorskip("verl").__file__
    schema = yaml.safe_load((Path(verl_config).parent / "trainer/config/_generated_ppo_trainer.yaml").read_text())
    config = ppo_config(tiny_sequential, tmp_path / "run")
    data = {"train": tmp_path / "train.parquet", "valid": tmp_path / "valid.parquet"}
    overrides = verl_overrides(config, data, tmp_path / "config.yaml", tmp_path / "model")

    for override in overrides:
        key, value = override.split("=", 1)
        if key.startswith("+"):  # hydra's "+" adds a key verl's schema does not declare (reward_kwargs)
            continue
        node = schema
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"verl has no config key {key!r}"
            node = node[part]
    assert "trainer.logger=[console,wandb]" in overrides
    assert set(VERL_DEFAULTS) <= {o.split("=", 1)[0] for o in overrides}
    with pytest.raises(ConfigError, match=r"train.verl sets \['data.train_files'\]"):
        verl_overrides(ppo_config(tiny_sequential, tmp_path / "run", 'train.verl={"data.train_files": x}'),
                       data, tmp_path / "config.yaml", tmp_path / "model")


def test_hydra_values():
    assert hydra_value(["console", "wandb"]) == "[console,wandb]"
    assert hydra_value(False) == "false" and hydra_value(None) == "null" and hydra_value(8) == "8"
    assert hydra_value("/tmp/a b=c") == '"/tmp/a b=c"'


def test_ppo_refuses_resume_and_a_machine_without_gpu(tiny_sequential: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="verl resumes PPO runs itself"):
        train(ppo_config(tiny_sequential, tmp_path / "run"), resume=True)
    pytest.importorskip("verl")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train(ppo_config(tiny_sequential, tmp_path / "run"))


def test_ppo_refuses_the_explicit_route_before_anything_runs(tiny_sequential: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="train.algorithm=ppo with retriever.backend=codes"):
        train(ppo_config(tiny_sequential, tmp_path / "run", "retriever.backend=codes", "train.template=history_codes"))
    assert not (tmp_path / "run").exists()


def test_ppo_writes_the_config_verl_runs(tiny_sequential: Path, tmp_path: Path, monkeypatch):
    """With wandb disabled verl logs to the console only, and config.yaml says so (it is what verl reads)."""
    import subprocess

    import torch

    from rec_rl.ppo import launch

    pytest.importorskip("verl")
    commands = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    run_dir = tmp_path / "run"
    launch.run_ppo(ppo_config(tiny_sequential, run_dir, "train.wandb_mode=disabled"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["verl"]["trainer.logger"] == ["console"]
    assert "trainer.logger=[console]" in commands[0]
