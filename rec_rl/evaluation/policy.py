"""Evaluating a policy: greedy queries for each row, searched with the frozen retriever, scored like a baseline."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from rec_rl.codes.trie import CodeTrie, prefix_allowed_tokens_fn
from rec_rl.data import Catalog
from rec_rl.evaluation.report import SystemResult
from rec_rl.policy import eos_ids
from rec_rl.evaluation.run import coverage, score_rankings, search_all
from retrievers import Retriever, SearchResult
from rewards.functions import repeated_trigram_share
from rewards.parsing import expand_query, extract_query


@dataclass
class SharedPrefix:
    """The token prefix every prompt of an evaluation starts with (the chat template's system turn and the
    instructions: a third of a query-writing prompt) with its keys and values, computed once.

    transformers' generate would prefill it again in every row of every batch. A batch is laid out as
    [prefix | left padding | the rest of each prompt]: positions come from the attention mask, so every token
    keeps the position it has in the plain left-padded layout, and generate continues from a copy of the
    prefix's cache, computing only the rest. The greedy outputs equal the plain path's up to float rounding
    (tests/test_evaluation.py compares them; `bench/generation.py` measures both on the real policy).
    """

    ids: list[int]
    cache: object = None  # the prefix's DynamicCache, batch 1

    MIN_TOKENS = 16  # below this the copies cost about what they save

    @classmethod
    @torch.no_grad()
    def of(cls, model, encoded: Sequence[Sequence[int]]) -> "SharedPrefix":
        """The longest prefix of all `encoded` prompts, leaving each at least one token of its own; empty (no
        sharing) when it is shorter than `MIN_TOKENS` or there is one prompt."""
        if len(encoded) < 2:
            return cls([])
        first, width = encoded[0], min(len(ids) for ids in encoded) - 1
        for ids in encoded[1:]:
            width = next((j for j in range(width) if ids[j] != first[j]), width)
        if width < cls.MIN_TOKENS:
            return cls([])
        prefix = torch.tensor([first[:width]], device=model.device)
        return cls(list(first[:width]), model(input_ids=prefix, use_cache=True).cache)

    def inputs(self, rows: Sequence[Sequence[int]], pad_id: int, device) -> dict:
        """generate's keyword arguments for one batch of encoded prompts (all starting with the prefix)."""
        rests = [list(ids[len(self.ids):]) for ids in rows]
        width = max(len(rest) for rest in rests)
        ids = [self.ids + [pad_id] * (width - len(rest)) + rest for rest in rests]
        mask = [[1] * len(self.ids) + [0] * (width - len(rest)) + [1] * len(rest) for rest in rests]
        inputs = {"input_ids": torch.tensor(ids, device=device), "attention_mask": torch.tensor(mask, device=device)}
        if self.ids:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(rows))
            inputs["cache"] = cache
        return inputs


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
             desc: str = "generate", constraint: CodeTrie | None = None,
             share_prefix: bool = True) -> tuple[list[str], int]:
    """Greedy completions of rendered `prompts` (see `rec_rl.prompts.render_prompt`).

    Returns the completion texts and the number of tokens generated (up to each completion's end).
    Generation stops at any id in `model.generation_config.eos_token_id`, as in training. With a
    `constraint` (the explicit route's code trie) only valid item codes can be written. `share_prefix`
    computes the prefix all prompts share once (`SharedPrefix`); off, every batch is plainly left-padded.
    """
    was_training = model.training
    model.eval()
    eos = set(eos_ids(model.generation_config.eos_token_id))
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    shared = SharedPrefix.of(model, encoded) if share_prefix else SharedPrefix([])
    # Batches of similar length waste little compute on padding; results go back in prompt order.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    texts, generated = [""] * len(prompts), 0
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        batch = order[start:start + batch_size]
        inputs = shared.inputs([encoded[i] for i in batch], tokenizer.pad_token_id, model.device)
        allowed = prefix_allowed_tokens_fn(constraint, inputs["input_ids"].shape[1]) if constraint else None
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, prefix_allowed_tokens_fn=allowed)
        for i, ids in zip(batch, output[:, inputs["input_ids"].shape[1]:].tolist()):
            end = next((j for j, token in enumerate(ids) if token in eos), len(ids))
            generated += min(end + 1, len(ids))
            texts[i] = tokenizer.decode(ids[:end], skip_special_tokens=True)
    model.train(was_training)
    return texts, generated


@dataclass(frozen=True)
class BeamRanking:
    """`eval.decoding=beam`: the top `width` codes of `depth` tokens under `trie` are the ranking, by their
    log-probability less `penalty` of their item (`eval.beam_popularity_alpha`; none: the policy's order)."""

    trie: CodeTrie
    depth: int
    width: int
    row_of_code: dict[tuple[int, ...], int]  # a code's token ids -> its catalog row
    penalty: np.ndarray | None = None  # per catalog row, subtracted from its beam's score

    @functools.cached_property
    def tables(self):
        """The trie as per-level tensors (`rec_rl.codes.beam.level_tables`), built once per ranking."""
        from rec_rl.codes.beam import level_tables

        return level_tables(self.trie, self.depth)

def evaluate_policy(name: str, model, tokenizer, rows, prompts: Sequence[str], retriever: Retriever,
                    catalog: Catalog, parse_mode: str, ks: Sequence[int], max_new_tokens: int,
                    batch_size: int, constraint: CodeTrie | None = None, beam: BeamRanking | None = None,
                    recall_min_gain: float = 0.0, query_expansion: bool = False) -> tuple[SystemResult, list[str]]:
    """Full-catalog NDCG@k/Recall@k of the policy's greedy outputs on `rows` (or of its beams, with `beam`);
    also returns the completions (with `beam`, each row's best code).

    `invalid_rate` is the share of outputs the retriever cannot read as what it searches (an empty
    query; for the codes backend, no complete code of a catalog item). `distinct_first_items` counts the
    different items ranked first over the rows (1: every user got the same recommendation), `distinct_items@10`
    those anywhere in the top 10 (`rec_rl.evaluation.run.coverage`). With `query_expansion` each query is
    searched after the row's history titles (`reward.query_expansion`).
    """
    found, completions, info = policy_rankings(model, tokenizer, rows, prompts, retriever, catalog, parse_mode,
                                               max(ks), max_new_tokens, batch_size, constraint, beam, name,
                                               query_expansion)
    return SystemResult(name, score_rankings(found, rows, catalog, ks, recall_min_gain), info), completions


def policy_rankings(model, tokenizer, rows, prompts: Sequence[str], retriever: Retriever, catalog: Catalog,
                    parse_mode: str, k: int, max_new_tokens: int, batch_size: int, constraint: CodeTrie | None = None,
                    beam: BeamRanking | None = None, name: str = "policy",
                    query_expansion: bool = False) -> tuple[SearchResult, list[str], dict]:
    """The policy's top-`k` catalog rows per row (the user's `exclude_item_ids` dropped), its completions, and
    facts about them: what `evaluate_policy` scores and `rec-rl recommend` returns."""
    if beam is not None:
        return _beam_rankings(name, model, tokenizer, rows, prompts, catalog, k, batch_size, beam)
    started = time.perf_counter()
    completions, tokens = generate(model, tokenizer, prompts, max_new_tokens, batch_size, desc=f"{name}: generate",
                                   constraint=constraint)
    generation_seconds = time.perf_counter() - started
    parsed = [extract_query(text, parse_mode) for text in completions]
    queries = [p.text for p in parsed]
    searched = ([expand_query(q, titles) for q, titles in zip(queries, rows["history_titles"])]
                if query_expansion else queries)
    exclude = [catalog.rows(ids) for ids in rows["exclude_item_ids"]]
    found = search_all(retriever, searched, k, exclude, f"{name}: search")
    info = {
        "seconds": time.perf_counter() - started,
        "generation_seconds": generation_seconds,
        "tokens_generated": tokens,
        "mean_query_words": float(np.mean([len(q.split()) for q in queries])) if queries else 0.0,
        "malformed_rate": float(np.mean([not p.well_formed for p in parsed])) if parsed else 0.0,
        "repeated_trigram_share": float(np.mean([repeated_trigram_share(q) for q in queries])) if queries else 0.0,
        "invalid_rate": float(np.mean([retriever.invalid_output(q) for q in searched])) if searched else 0.0,
        **coverage(found.rows),
    }
    return found, completions, info


def _beam_rankings(name: str, model, tokenizer, rows, prompts: Sequence[str], catalog: Catalog, k: int,
                   batch_size: int, beam: BeamRanking) -> tuple[SearchResult, list[str], dict]:
    """`policy_rankings` with the beams as the ranking: each beam's item in beam order, history items dropped."""
    from rec_rl.codes.beam import beam_search_codes

    started = time.perf_counter()
    ranked = beam_search_codes(model, tokenizer, prompts, beam.trie, beam.depth, beam.width, batch_size,
                               desc=f"{name}: beam search", tables=beam.tables)
    generation_seconds = time.perf_counter() - started
    found = np.full((len(prompts), k), -1, np.int64)
    scores = np.full((len(prompts), k), -np.inf, np.float32)
    for i, (beams, exclude) in enumerate(zip(ranked, rows["exclude_item_ids"])):
        dropped = set(catalog.rows(exclude))
        kept = [(beam.row_of_code[code], score) for code, score in beams if beam.row_of_code[code] not in dropped]
        if beam.penalty is not None:
            kept = sorted(((row, score - float(beam.penalty[row])) for row, score in kept), key=lambda pair: -pair[1])
        kept = kept[:k]
        if kept:
            found[i, :len(kept)] = [row for row, _ in kept]
            scores[i, :len(kept)] = [score for _, score in kept]
    completions = [tokenizer.decode(list(beams[0][0])) if beams else "" for beams in ranked]
    info = {"seconds": time.perf_counter() - started, "generation_seconds": generation_seconds,
            "tokens_generated": int(sum(len(b) for b in ranked) * beam.depth), "mean_query_words": 0.0,
            "malformed_rate": 0.0, "repeated_trigram_share": 0.0, "invalid_rate": 0.0, "decoding": f"beam {beam.width}", **coverage(found)}
    return SearchResult(found, scores), completions, info
