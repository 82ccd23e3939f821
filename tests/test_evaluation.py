"""Evaluation: baselines on hand-checkable data, bootstrap intervals, and the report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rec_rl.config import load_config
from rec_rl.data import Catalog
from rec_rl.evaluation.baselines import (last_titles_query, popularity_counts, rank_popularity, rank_transitions,
                                         transition_counts)
from rec_rl.evaluation.bootstrap import bootstrap_interval, paired_difference
from rec_rl.evaluation.run import coverage, run_eval

CATALOG = Catalog.from_items([(str(i), f"item {i}") for i in range(6)])


def test_popularity_ranks_by_count_and_drops_history():
    popularity = popularity_counts([["2", "2", "5"], ["5", "2", "1"]], CATALOG)
    assert popularity.tolist() == [0, 1, 3, 0, 0, 2]
    found = rank_popularity(popularity, exclude=[[], [2]], k=3)
    assert found.rows.tolist() == [[2, 5, 1], [5, 1, 0]]  # ties (rows 0, 3, 4) broken by row order


def test_transitions_follow_last_item_then_popularity():
    sequences = [["0", "1"], ["0", "1"], ["0", "3"], ["4", "4"], ["2", "5"]]
    popularity = popularity_counts(sequences, CATALOG)
    transitions = transition_counts(sequences, CATALOG, symmetric=False)
    found = rank_transitions(transitions, popularity, last_rows=[0, 5, -1], exclude=[[], [], [0]], k=4)
    assert found.rows[0].tolist() == [1, 3, 0, 4]  # followers of 0 by count, then popularity
    assert found.rows[1].tolist() == [0, 1, 4, 2]  # nothing follows 5: pure popularity, ties by row
    assert found.rows[2].tolist() == [1, 4, 2, 3]  # no history: popularity without the excluded row


def test_symmetric_transitions_count_both_directions():
    counts = transition_counts([["0", "1", "2"], ["1", "0"]], CATALOG, symmetric=True).toarray()
    assert counts[0, 1] == counts[1, 0] == 2 and counts[1, 2] == counts[2, 1] == 1 and counts[0, 2] == 0


def test_last_titles_query():
    assert last_titles_query(["a", "b", "c"], 2) == "b c"
    assert last_titles_query(["a"], 5) == "a"
    assert last_titles_query([], 1) == ""


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_rows():
    rng = np.random.default_rng(0)
    small = rng.binomial(1, 0.1, 200).astype(float)
    large = rng.binomial(1, 0.1, 20000).astype(float)
    mean, low, high = bootstrap_interval(small, resamples=500)
    assert low < mean < high
    _, low_large, high_large = bootstrap_interval(large, resamples=500)
    assert high_large - low_large < (high - low) / 5  # width falls like 1/sqrt(rows): 10x here
    # The interval agrees with the normal approximation for a proportion.
    half_width = 1.96 * math.sqrt(large.mean() * (1 - large.mean()) / len(large))
    assert (high_large - low_large) / 2 == pytest.approx(half_width, rel=0.15)


def test_paired_difference_detects_a_real_gap_only():
    rng = np.random.default_rng(1)
    base = rng.binomial(1, 0.2, 3000).astype(float)
    better = np.maximum(base, rng.binomial(1, 0.05, 3000))
    assert paired_difference(better, base)["significant"]
    assert not paired_difference(base, rng.permutation(base))["significant"]


def test_eval_end_to_end_on_tiny_data(tiny_sequential: Path, tmp_path: Path):
    config = load_config(None, [f"data.path={tiny_sequential}", f"eval.output_dir={tmp_path / 'out'}",
                                "eval.baselines=[popularity, transitions, bm25]", "retriever.engine=bm25s",
                                "eval.ks=[1, 5]", "eval.bootstrap=100", "data.user_split=shared"])
    markdown = run_eval(config)  # every user in the test split (shared), so the hand computations below see all 5
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    systems = {s["name"]: s for s in report["systems"]}
    assert set(systems) == {"popularity", "transitions", "bm25[bm25s] last-1 titles"}
    assert report["rows"] == 5 and "bm25[bm25s] last-1 titles" in markdown
    # Test targets: u1 -> 9, u2 -> 6, u3 -> 1, u4 -> 4, u5 -> 2.
    popularity = systems["popularity"]["metrics"]
    # Known interactions: u1 0 1 2, u2 3 4 5, u3 6 7 8 0, u4 0 2 1 9, u5 7 8 6 0 -> item 0 leads (4), then 1, 2, 6, 7, 8.
    # After dropping each user's history, top-1: u1 -> 6, u2 -> 0, u3 -> 1 (hit), u4 -> 6, u5 -> 1.
    assert popularity["ndcg@1"]["mean"] == pytest.approx(1 / 5)
    assert popularity["recall@1"]["mean"] == pytest.approx(1 / 5)
    # Coverage, from the same top-1 lists: popularity names items 6, 0 and 1 first.
    assert systems["popularity"]["distinct_first_items"] == 3 and "distinct_first_items" in markdown
    assert systems["popularity"]["distinct_items@10"] >= 3, "its top 5 (the lists' length here) holds them and more"
    for system in systems.values():
        for value in system["metrics"].values():
            assert 0.0 <= value["low"] <= value["mean"] <= value["high"] <= 1.0


def test_coverage_counts_distinct_items_first_and_in_the_top_k():
    rankings = np.array([[3, 1, 2], [3, 2, -1], [3, 5, 1]])
    assert coverage(rankings, k=1) == {"distinct_first_items": 1, "distinct_items@1": 1}, "one item for everyone"
    assert coverage(rankings, k=3) == {"distinct_first_items": 1, "distinct_items@3": 4}, "-1 (no item) is not an item"


def test_generation_computes_the_shared_prompt_prefix_once_and_writes_what_plain_generation_writes(monkeypatch):
    from rec_rl.config import PolicyConfig
    from rec_rl.evaluation import policy as evaluation
    from rec_rl.policy import load_policy

    model, tokenizer = load_policy(PolicyConfig(model="tiny"))
    system = "You write search queries for a video game store. Games are listed newest first, one per line."
    prompts = [tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": text}],
                                             tokenize=False, add_generation_prompt=True)
               for text in ("- Forza Horizon 4\n- Gran Turismo Sport - PlayStation 4", "- Zelda", "- Halo 3\n- Halo 2",
                            "- Mario Kart 8 Deluxe - Nintendo Switch")]
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    shared = evaluation.SharedPrefix.of(model, encoded)
    assert len(shared.ids) >= evaluation.SharedPrefix.MIN_TOKENS and shared.ids == encoded[0][:len(shared.ids)]
    assert all(ids[:len(shared.ids)] == shared.ids and len(ids) > len(shared.ids) for ids in encoded)
    batch = shared.inputs(encoded[:2], tokenizer.pad_token_id, model.device)
    width = len(shared.ids)
    assert batch["attention_mask"][:, :width].eq(1).all() and batch["cache"].get_seq_length() == width
    assert batch["cache"].layers[0].keys.shape[0] == 2, "the prefix's cache is copied to every row"

    with_prefix, tokens = evaluation.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3)
    monkeypatch.setattr(evaluation.SharedPrefix, "MIN_TOKENS", 10 ** 6)  # no sharing: plain left-padded batches
    assert evaluation.SharedPrefix.of(model, encoded).ids == []
    plain, plain_tokens = evaluation.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3)
    assert with_prefix == plain and tokens == plain_tokens and any(with_prefix)
