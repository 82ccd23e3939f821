"""verl's data format for a rec-rl task: one parquet row per prompt, with the reward columns inside.

verl's RL dataset reads `prompt` (chat messages; verl applies the chat template), `data_source`
(which picks the reward function), `reward_model.ground_truth` and `extra_info`. The ranking
targets, their gains and the items to drop from the ranking travel as JSON in `ground_truth`, and
come back out with `reward_columns`, so the verl reward sees exactly what TRL's reward functions see.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from rec_rl.config import ConfigError, RunConfig
from rec_rl.data import TaskData
from rec_rl.prompts import build_messages, get_template

DATA_SOURCE = "rec_rl"


def verl_row(row: dict, index: int, split: str, config: RunConfig) -> dict:
    """One verl row for a task row: the prompt messages and the reward columns as JSON ground truth.

    Example:
        >>> row = {"row_id": "u1", "query": "", "history_titles": ["Halo 3"], "target_item_ids": ["B0"],
        ...        "gains": [1.0], "exclude_item_ids": ["A9"]}
        >>> from rec_rl.config import load_config
        >>> record = verl_row(row, 0, "train", load_config(None, ["train.template=history_query_example"]))
        >>> record["prompt"][-1]["content"].endswith("- Halo 3"), record["reward_model"]["ground_truth"]
        (True, '{"target_item_ids": ["B0"], "gains": [1.0], "exclude_item_ids": ["A9"]}')
    """
    template = get_template(config.train.template)
    ground_truth = {"target_item_ids": list(row["target_item_ids"]), "gains": [float(g) for g in row["gains"]],
                    "exclude_item_ids": list(row["exclude_item_ids"])}
    return {
        "data_source": DATA_SOURCE,
        "prompt": build_messages(row, template, config.train.max_title_chars),
        "ability": "recommendation",
        "reward_model": {"style": "rule", "ground_truth": json.dumps(ground_truth)},
        "extra_info": {"split": split, "index": index, "row_id": row["row_id"]},
    }


def reward_columns(ground_truth: str) -> dict:
    """The reward columns (`target_item_ids`, `gains`, `exclude_item_ids`) back from a row's ground truth."""
    return json.loads(ground_truth)


def export_task(task: TaskData, config: RunConfig, folder: Path) -> dict[str, Path]:
    """Write the train split and `train.valid_rows` valid rows as verl parquet files; return their paths by split.

    verl opens a fresh assistant turn after the prompt, so a template that pre-fills the answer
    (`answer_prefix`) cannot be continued there: choose one that teaches the format instead.
    """
    template = get_template(config.train.template)
    if template.answer_prefix:
        raise ConfigError(f"train.template {config.train.template!r} pre-fills the answer ({template.answer_prefix!r}), "
                          "which verl cannot continue; for algorithm=ppo use one without, e.g. history_query_example")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, max_rows in (("train", None), ("valid", config.train.valid_rows)):
        rows = task.split(split, max_rows, config.data.split_seed)
        records = [verl_row(row, i, split, config) for i, row in enumerate(rows)]
        paths[split] = folder / f"{split}.parquet"
        datasets.Dataset.from_list(records).to_parquet(str(paths[split]))
    return paths
