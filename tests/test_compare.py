"""`rec-rl compare`: its test rows (sample + cold start), its run settings, and the comparison end to end on tiny data."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from rec_rl.cli import main
from rec_rl.config import ConfigError, load_config, to_dict
from rec_rl.data import load_task
from rec_rl.experiments.compare import BUDGETS, compare, route_runs, run_overrides

from tests.conftest import TINY_ITEMS, TINY_SEQUENCES, write_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cold_sequential(tmp_path: Path) -> Path:
    """The tiny dataset plus two users whose next item (10) nobody had touched before: item cold start."""
    folder = tmp_path / "cold_seq"
    folder.mkdir()
    write_jsonl(folder / "items.jsonl", [{"item_id": i, "title": t} for i, t in TINY_ITEMS + [(10, "Bayonetta 2 - Wii U")]])
    sequences = TINY_SEQUENCES + [("u6", [0, 1, 2, 10]), ("u7", [3, 4, 5, 10])]
    write_jsonl(folder / "sequences.jsonl", [{"user_id": u, "item_ids": s} for u, s in sequences])
    return folder


def test_cold_start_rows_are_added_to_the_seeded_sample(cold_sequential: Path):
    # Every user in every split (shared), so that each split's cold-start users can be listed by hand.
    task = load_task(load_config(None, [f"data.path={cold_sequential}", "data.user_split=shared"]).data)
    test = task.splits["test"]
    assert [u for u, cold in zip(test["row_id"], task.cold_start("test", test)) if cold] == ["u6", "u7"]
    valid = task.splits["valid"]
    # Before the valid targets nobody had touched item 5 (u2, u7) or item 9 (u4); u1's 9 is its test target.
    assert [u for u, cold in zip(valid["row_id"], task.cold_start("valid", valid)) if cold] == ["u2", "u4", "u7"]

    sample = task.split("test", 3, seed=0)
    rows = task.evaluation_rows("test", 3, cold_rows=1, seed=0)
    assert rows["row_id"][:3] == sample["row_id"], "the sample comes first, unchanged"
    added = rows["row_id"][3:]
    missing_cold = {"u6", "u7"} - set(sample["row_id"])
    assert len(added) == min(1, len(missing_cold)) and set(added) <= missing_cold
    assert task.evaluation_rows("test", 3, cold_rows=1, seed=0)["row_id"] == rows["row_id"], "seeded"
    everything = task.evaluation_rows("test", 3, cold_rows=10, seed=0)["row_id"]
    assert len(everything) == len(set(everything)) and {"u6", "u7"} <= set(everything)
    assert task.evaluation_rows("test", 3, cold_rows=0, seed=0)["row_id"] == sample["row_id"]


def test_run_settings_are_budget_then_user_then_route(capsys):
    runs = route_runs(load_config())
    config = load_config(None, run_overrides("cpu", ["train.grpo.max_steps=3", "retriever.backend=bm25"],
                                             runs["explicit_rq"], Path("runs/x")))
    assert config.train.grpo["max_steps"] == 3, "the user's override beats the preset"
    assert config.train.test_rows == BUDGETS["cpu"]["train.test_rows"], "the preset beats the defaults"
    assert (config.retriever.backend, config.codes.method, config.train.template) == ("codes", "rq", "codes_sequence")
    assert config.train.run_dir == "runs/x"
    assert "retriever.backend" in capsys.readouterr().out, "the ignored override is reported"
    assert config.train.sft["num_train_epochs"] == 20 and config.train.sft["max_steps"] == -1, \
        "the compact policy's own training beats the preset's 40 SFT steps"
    config = load_config(None, run_overrides("cpu", ["train.sft.num_train_epochs=2"], runs["explicit_rq"], Path("x")))
    assert config.train.sft["num_train_epochs"] == 2, "the user's override beats the compact policy's training"
    implicit = load_config(None, run_overrides("cpu", [], runs["implicit_bm25"], Path("x")))
    assert (implicit.policy.model, implicit.train.sft["max_steps"]) == ("smollm2-135m", BUDGETS["cpu"]["train.sft.max_steps"])


@pytest.mark.parametrize("method", ["rq", "opq_pq", "random"])
def test_compared_explicit_runs_train_as_configs_explicit_yaml(method: str):
    """The comparison's compact runs are `rec-rl train configs/explicit.yaml` (with that code method), on the
    comparison's shared test rows and in its own folders."""
    runs = route_runs(load_config())
    compared = to_dict(load_config(None, run_overrides("cpu", [], runs[f"explicit_{method}"], Path("runs/x"))))
    shipped = to_dict(load_config(REPO / "configs" / "explicit.yaml", [f"codes.method={method}"]))
    for config in (compared, shipped):
        for key in ("test_rows", "test_cold_rows", "run_dir"):
            config["train"].pop(key)
    assert compared == shipped


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_budget_preset_makes_valid_run_configs(budget: str):
    from trl import GRPOConfig, SFTConfig

    from rec_rl.training.routes import route_of

    grpo_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    sft_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    for run in route_runs(load_config()).values():
        config = load_config(None, run_overrides(budget, [], run, Path("runs/x")))
        route_of(config).check(config)
        assert set(config.train.grpo) <= grpo_fields and set(config.train.sft) <= sft_fields
        grpo = config.train.grpo
        assert grpo["per_device_train_batch_size"] % grpo["num_generations"] == 0


def test_compare_refuses_what_it_cannot_run(capsys):
    assert main(["compare", "train.algorithm=rloo"]) == 2
    assert "train.algorithm" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="budget"):
        compare(None, [], budget="tpu")
    with pytest.raises(ConfigError, match="compare.runs"):
        load_config(None, ["compare.runs=[explicit_sq]"])


def tiny_compare(data: Path, output: Path, *extra: str) -> list[str]:
    return [f"data.path={data}", f"compare.output_dir={output}", "compare.runs=[implicit_dense, explicit_rq]",
            "policy.model=tiny", "policy.lora_layers=[-1]", "codes.levels=2", "codes.codebook_bits=2",
            "train.test_rows=4", "train.test_cold_rows=2", "train.valid_rows=2", "train.eval_every=1",
            "train.wandb_mode=offline", "reward.k=10", "eval.ks=[1, 5]", "eval.bootstrap=50",
            "eval.baselines=[popularity, dense]",
            "train.sft={max_steps: 2, per_device_train_batch_size: 4, logging_steps: 1, warmup_steps: 0}",
            "train.grpo={max_steps: 2, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6, "
            "save_steps: 1, warmup_steps: 0, learning_rate: 0.01}", *extra]


def test_compare_end_to_end_then_reuses_its_runs(cold_sequential: Path, tmp_path: Path, capsys):
    output = tmp_path / "compare"
    overrides = tiny_compare(cold_sequential, output)
    markdown = compare(None, overrides, budget="none")

    data = json.loads((output / "compare.json").read_text())
    systems = {s["name"]: s for s in data["systems"]}
    assert list(systems) == ["popularity", "dense[flat] last-1 titles", "dense[flat] last-5 titles",
                             "base policy -> dense", "GRPO -> dense", "SFT -> rq codes", "SFT+GRPO -> rq codes",
                             "rq code of last item"]
    assert [systems[n]["route"] for n in systems] == ["baseline"] * 3 + ["implicit"] * 2 + ["explicit"] * 2 + ["baseline"]
    sample, cold = data["rows"]["sample"], data["rows"]["cold_start"]
    assert sample == 4 and cold >= 2, "every cold-start user of this data is evaluated"
    for system in systems.values():
        for section in ("metrics", "cold_start"):
            for metric in ("ndcg@1", "ndcg@5", "recall@1", "recall@5"):
                value = system[section][metric]
                assert 0 <= value["low"] <= value["mean"] <= value["high"] <= 1, (system["name"], section, metric)
        assert system["peak_rss_mb"] > 100
    for name in ("base policy -> dense", "GRPO -> dense", "SFT -> rq codes", "SFT+GRPO -> rq codes"):
        assert systems[name]["tokens_generated"] > 0 and systems[name]["test_eval_seconds"] > 0
        assert set(systems[name]["valid_metrics"]) == {"ndcg@1", "ndcg@5", "recall@1", "recall@5"}
    assert systems["base policy -> dense"]["rl_seconds"] == 0 < systems["GRPO -> dense"]["rl_seconds"]
    assert systems["base policy -> dense"]["sft_seconds"] == systems["GRPO -> dense"]["sft_seconds"] == 0
    assert 0 < systems["SFT -> rq codes"]["sft_seconds"] == systems["SFT+GRPO -> rq codes"]["sft_seconds"]
    assert systems["SFT -> rq codes"]["rl_seconds"] == 0 < systems["SFT+GRPO -> rq codes"]["rl_seconds"]
    # The table says which policy each run trained, what it read and what it could write.
    assert systems["GRPO -> dense"]["prompt"].startswith("tiny: history_query_recent, last 5 items")
    assert systems["SFT -> rq codes"]["prompt"].startswith("codes-lm: codes_sequence, last 20 items")
    assert systems["SFT+GRPO -> rq codes"]["invalid_rate"] == 0, "constrained decoding writes catalog codes"

    # The rows equal what each run reported itself, on the sample rows.
    run = json.loads((output / "runs" / "implicit_dense" / "results.json").read_text())
    trained = run["per_row"]["trained policy"]["ndcg@5"]
    assert math.isclose(systems["GRPO -> dense"]["metrics"]["ndcg@5"]["mean"], sum(trained[:sample]) / sample)

    paired = data["paired"]
    # Each route's best system is the one with the higher validation NDCG@1 (its run's validation users).
    implicit = max(("base policy -> dense", "GRPO -> dense"), key=lambda n: systems[n]["valid_metrics"]["ndcg@1"])
    explicit = max(("SFT -> rq codes", "SFT+GRPO -> rq codes"), key=lambda n: systems[n]["valid_metrics"]["ndcg@1"])
    assert (paired["a"], paired["b"], paired["selected_by"]) == (implicit, explicit, "validation ndcg@1")
    assert all("p_holm" in d for d in paired["differences"].values()) and "Holm" in markdown
    assert set(paired["differences"]) == {"ndcg@1", "ndcg@5", "recall@1", "recall@5"}
    assert "## Best implicit vs best explicit" in markdown and f"## Cold start: {cold} test users" in markdown
    assert all((output / name).stat().st_size > 10_000 for name in ("rewards.png", "metrics.png"))
    assert (output / "runs" / "explicit_rq" / "sft" / "tokenizer.json").exists()

    capsys.readouterr()
    compare(None, overrides, budget="none")
    printed = capsys.readouterr().out
    assert printed.count("reusing the finished run") == 2 and "training (log" not in printed
    reused = json.loads((output / "compare.json").read_text())["systems"]
    assert [(s["name"], s["metrics"], s["cold_start"]) for s in reused] == \
        [(s["name"], s["metrics"], s["cold_start"]) for s in data["systems"]]

    with pytest.raises(ConfigError, match="another config .*learning_rate"):
        compare(None, overrides + ["train.grpo.learning_rate=0.5"], budget="none")
