"""What `rec-rl compare` runs: the budget presets, the routes' runs, and each run's `rec-rl train` overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rec_rl.config import CODES_LM, RunConfig

# Budget presets: overrides applied to every run before the user's own.
BUDGETS: dict[str, dict[str, object]] = {
    # 2 CPU cores, every default run and the baselines within 90 minutes (55 measured: README, "Comparing the
    # routes"). Its SFT keys reach only the LLM's explicit run (hybrid_rq); the compact runs keep their own.
    "cpu": {"train.grpo.max_steps": 20, "train.sft.max_steps": 40, "train.sft.warmup_steps": 4,
            "train.sft_input_grad": False, "train.test_rows": 500, "train.test_cold_rows": 100, "train.valid_rows": 32,
            "train.eval_every": 10},
    # One GPU with 40+ GB (A100/H100 class): 8 prompts x 8 completions a step, every cold-start user.
    "gpu": {"train.grpo.max_steps": 300, "train.grpo.per_device_train_batch_size": 64, "train.grpo.bf16": True,
            "train.grpo.save_steps": 100, "train.sft.max_steps": 3000, "train.sft.per_device_train_batch_size": 64,
            "train.sft.warmup_steps": 100, "train.sft.bf16": True, "train.test_rows": 2000,
            "train.test_cold_rows": 100000, "train.valid_rows": 256, "train.eval_every": 50,
            "train.eval_batch_size": 256},
    "none": {},  # the config's own values
}

# The compact semantic-ID policy's training, as configs/explicit.yaml sets it (tests/test_compare.py checks
# that the two agree): the explicit runs start from these, and the budget preset cannot shrink them, because
# a whole run of this policy takes about 13 minutes on 2 CPU cores. The user's overrides still win.
COMPACT_TRAINING: dict[str, object] = {
    "policy.architecture": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2,
                            "num_attention_heads": 4, "num_key_value_heads": 4},
    "data.history_len": 20, "train.sft_alignment": False, "train.sft_input_grad": True, "train.sft_max_items": 20,
    "train.sft_test_history": True, "train.sft_patience": 0,
    "train.valid_rows": 1000, "train.eval_batch_size": 128, "train.eval_every": 50,
    "train.sft.max_steps": -1, "train.sft.num_train_epochs": 20, "train.sft.learning_rate": 5.0e-3,
    "train.sft.weight_decay": 0.1, "train.sft.per_device_train_batch_size": 32, "train.sft.warmup_steps": 100,
    "train.sft.lr_scheduler_type": "cosine", "train.sft.logging_steps": 20,
    "train.grpo.max_steps": 150, "train.grpo.learning_rate": 1.0e-4, "train.grpo.num_generations": 16,
    "train.grpo.per_device_train_batch_size": 256, "train.grpo.save_steps": 50,
    "eval.decoding": "beam", "eval.beam_width": 50,
}


@dataclass(frozen=True)
class RouteRun:
    """One training run of the comparison: its route, and the settings that make it that route."""

    route: str  # "implicit" or "explicit"
    label: str  # how its systems are named in the table
    overrides: dict[str, object]  # what makes the run this route: they win over everything
    defaults: dict[str, object] = field(default_factory=dict)  # the route's own training: the user's overrides win


def _compact(method: str, levels: int) -> RouteRun:
    """The compact policy (policy.model=codes-lm) writing `method` codes of `levels` levels for the user's next item."""
    label = "random ids" if method == "random" else f"{method} codes"
    # A code is levels + 1 tokens (the de-duplicating level), then the end.
    return RouteRun("explicit", label, {"policy.model": CODES_LM, "policy.lora": False, "retriever.backend": "codes",
                                        "codes.method": method, "codes.constrained": True, "codes.hybrid_weight": 0.0,
                                        "train.template": "codes_sequence", "train.sft_data": "sequence"},
                    {**COMPACT_TRAINING, "train.grpo.max_completion_length": levels + 2})


def route_runs(config: RunConfig) -> dict[str, RouteRun]:
    """Every run `compare.runs` may name."""
    # The implicit runs read the last data.history_len titles, newest first, no header.
    implicit = {"train.template": "history_query_recent", "codes.hybrid_weight": 0.0}
    return {
        "implicit_bm25": RouteRun("implicit", "bm25", {"retriever.backend": "bm25", **implicit}),
        "implicit_dense": RouteRun("implicit", "dense", {"retriever.backend": "dense", **implicit}),
        "explicit_rq": _compact("rq", config.codes.levels),
        "explicit_opq_pq": _compact("opq_pq", config.codes.levels),
        # The control: the same policy and training with random ids of the same shape (codes.method=random).
        "explicit_random": _compact("random", config.codes.levels),
        # The LLM writes a code and title words, unconstrained: the one explicit run that needs words.
        "hybrid_rq": RouteRun("explicit", "hybrid rq", {
            "retriever.backend": "codes", "codes.method": "rq", "codes.constrained": False,
            "codes.hybrid_weight": config.compare.hybrid_weight, "train.template": "history_titles_codes"}),
    }


def override_text(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: strings, numbers, booleans and lists read back as given


def run_overrides(budget: str, user: list[str], run: RouteRun, run_dir: Path) -> list[str]:
    """The `rec-rl train` overrides of one run: budget preset, the route's training, the user's, then what
    makes the run its route (and its folder)."""
    ours = {**run.overrides, "train.run_dir": str(run_dir)}
    clashing = [o.split("=", 1)[0] for o in user if o.split("=", 1)[0].strip() in ours]
    if clashing:
        print(f"note: {', '.join(clashing)} is set by each compared run itself; the override is ignored there")
    return ([override_text(k, v) for k, v in {**BUDGETS[budget], **run.defaults}.items()] + list(user)
            + [override_text(k, v) for k, v in ours.items()])
