"""What `rec-rl compare` runs: the budget presets, the routes' runs, and each run's `rec-rl train` overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rec_rl.config import RunConfig

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
        # The control: the same route with random ids of the same shape (codes.method=random).
        "explicit_random": RouteRun("explicit", "random ids", {**_codes("random", True, 0.0),
                                                               "train.grpo.max_completion_length": code_tokens}),
        "hybrid_rq": RouteRun("explicit", "hybrid rq", _codes("rq", False, config.compare.hybrid_weight)),
    }


def override_text(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: strings, numbers, booleans and lists read back as given


def run_overrides(budget: str, user: list[str], run: RouteRun, run_dir: Path) -> list[str]:
    """The `rec-rl train` overrides of one run: budget preset, then the user's, then the route's own."""
    ours = {**run.overrides, "train.run_dir": str(run_dir)}
    clashing = [o.split("=", 1)[0] for o in user if o.split("=", 1)[0].strip() in ours]
    if clashing:
        print(f"note: {', '.join(clashing)} is set by each compared run itself; the override is ignored there")
    return ([override_text(k, v) for k, v in BUDGETS[budget].items()] + list(user)
            + [override_text(k, v) for k, v in ours.items()])
