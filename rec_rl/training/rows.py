"""What a run trains and scores on: each row's rendered prompt beside the columns the rewards read, and the
reward functions every trainer (TRL's or verl's) scores completions with."""

from __future__ import annotations

import dataclasses

import datasets

from rec_rl.config import RunConfig
from rec_rl.data import TaskData
from rec_rl.prompts import get_template, render_prompt
from rewards import RetrievalScorer, RewardConfig, build_reward_functions

REWARD_COLUMNS = ("target_item_ids", "gains", "exclude_item_ids", "history_titles")  # history_titles: reward.query_expansion


def prompt_rows(rows, config: RunConfig, tokenizer) -> datasets.Dataset:
    """The GRPO dataset: the rendered `prompt` per row, plus the columns the reward functions read."""
    template = get_template(config.train.template)
    prompts = [render_prompt(row, template, tokenizer, config.train.max_title_chars) for row in rows]
    return datasets.Dataset.from_dict({"prompt": prompts, **{c: rows[c] for c in REWARD_COLUMNS}})


def shuffled_targets(dataset: datasets.Dataset, seed: int) -> datasets.Dataset:
    """`train.shuffled_reward_targets`: each row's `target_item_ids` and `gains` replaced by another row's, by a
    seeded permutation; the prompt and the history (`exclude_item_ids`, `history_titles`) stay with their row.

    Example:
        >>> rows = datasets.Dataset.from_dict({"prompt": ["a", "b", "c"], "target_item_ids": [["1"], ["2"], ["3"]],
        ...                                    "gains": [[1.0], [1.0], [1.0]]})
        >>> shuffled = shuffled_targets(rows, seed=0)
        >>> list(shuffled["prompt"]), sorted(shuffled["target_item_ids"]) == sorted(rows["target_item_ids"])
        (['a', 'b', 'c'], True)
    """
    import numpy as np

    donors = dataset.select(np.random.default_rng(seed).permutation(len(dataset)))
    kept = dataset.remove_columns(["target_item_ids", "gains"])
    return kept.add_column("target_item_ids", donors["target_item_ids"]).add_column("gains", donors["gains"])


def parse_mode(config: RunConfig) -> str:
    """How a completion is read as a query: `reward.parse`, else the prompt template's answer format."""
    return config.reward.parse or get_template(config.train.template).parse


def reward_setup(config: RunConfig, task: TaskData, retriever) -> tuple[RewardConfig, list, list[float]]:
    """The reward config (its parse mode resolved by `parse_mode`), the reward functions and their weights:
    what every trainer, TRL's or verl's, scores completions with."""
    reward_config = dataclasses.replace(config.reward, parse=parse_mode(config))
    scorer = RetrievalScorer.from_config(retriever, task.catalog, reward_config)
    encoder = embeddings = None
    if reward_config.similarity_weight:
        if config.retriever.backend == "codes":
            raise ValueError("reward.similarity_weight compares query text with item text; the codes retriever "
                             "(explicit route) has no query text")
        encoder, embeddings = text_encoder(config, task, retriever)
    reward_funcs, reward_weights = build_reward_functions(scorer, reward_config, encoder, embeddings)
    return reward_config, reward_funcs, reward_weights


def text_encoder(config: RunConfig, task: TaskData, retriever=None):
    """`retriever.model`'s sentence-transformers encoder (a function of texts) and the catalog's cached
    embeddings from it: what `reward.similarity_weight` compares queries and targets with. A dense
    retriever already holds both, so its own are reused rather than loading the model a second time."""
    from rec_rl.embeddings import catalog_embeddings, encode_texts, load_model, resolve_model
    from retrievers.dense import DenseRetriever

    if isinstance(retriever, DenseRetriever):
        return retriever.encode, retriever.embeddings
    settings = config.retriever
    embeddings = catalog_embeddings(task.catalog, settings.model, settings.batch_size, settings.cache_dir)
    model = load_model(resolve_model(settings.model))
    return (lambda texts: encode_texts(model, texts, settings.batch_size)), embeddings
