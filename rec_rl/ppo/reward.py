"""verl's custom reward function, backed by rec-rl's reward functions.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)` once
per response; the launcher passes `config_path` (the run's config.yaml) through
`reward.custom_reward_function.reward_kwargs`. The score is the weighted sum of the same reward
functions, with the same weights, that `rec-rl train` gives TRL, so GRPO, RLOO and PPO optimise one
objective. The retriever and catalog are built once per process and kept.
"""

from __future__ import annotations

import math
from functools import lru_cache

from rec_rl.config import load_config
from rec_rl.data import load_task
from rec_rl.ppo.export import reward_columns
from retrievers import build_retriever


@lru_cache(maxsize=4)
def _rewards_for(config_path: str) -> tuple[list, list[float]]:
    from rec_rl.training.rows import reward_setup

    config = load_config(config_path)
    task = load_task(config.data)
    _, functions, weights = reward_setup(config, task, build_retriever(config.retriever, task.catalog, config.codes))
    return functions, weights


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  config_path: str | None = None, **_) -> dict:
    """The reward of one response: `{"score": weighted sum, <reward name>: value, ...}`.

    verl logs every key of the returned dict; `score` is what PPO optimises. A malformed response
    gets the reward functions' own defined value (no exception reaches verl's loop).

    Example:
        >>> compute_score("rec_rl", "Query: halo 3 xbox", '{"target_item_ids": ["B0"], "gains": [1.0], '
        ...               '"exclude_item_ids": []}', config_path="runs/ppo/config.yaml")  # doctest: +SKIP
        {'score': 0.21, 'ndcg@1000': 0.21, 'recall@1000': 1.0, 'mrr@1000': 0.05, 'query_length': 3.0}
    """
    if config_path is None:
        raise ValueError("compute_score needs config_path: set reward.custom_reward_function.reward_kwargs.config_path")
    functions, weights = _rewards_for(config_path)
    columns = {name: [value] for name, value in reward_columns(ground_truth).items()}
    values = {}
    for function in functions:
        value = function(prompts=[""], completions=[solution_str], **columns)[0]
        values[function.__name__] = math.nan if value is None else float(value)
    # TRL sums weighted rewards ignoring NaN (torch.nansum); do the same so both trainers see one score.
    score = sum(w * v for w, v in zip(weights, values.values()) if w and not math.isnan(v))
    return {"score": float(score), **values}
