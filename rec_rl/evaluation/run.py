"""`rec-rl eval`: full-catalog ranking of the baselines on one split, with bootstrap intervals."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rec_rl.config import RunConfig
from rec_rl.data import Catalog, TaskData, load_task
from rec_rl.evaluation.baselines import (last_titles_query, popularity_counts, rank_popularity, rank_transitions,
                                         transition_counts)
from rec_rl.evaluation.report import SystemResult, write_report
from retrievers import Retriever, SearchResult, build_retriever
from rewards.metrics import ranking_metrics, target_rows

SEARCH_BATCH = 512  # queries per retriever call: large enough for throughput, small enough for a live progress bar


def metric_names(ks: Sequence[int]) -> list[str]:
    """Column order of every report: NDCG at each k, then Recall at each k."""
    return [f"ndcg@{k}" for k in ks] + [f"recall@{k}" for k in ks]


def score_rankings(found: SearchResult, rows, catalog: Catalog, ks: Sequence[int],
                   recall_min_gain: float = 0.0) -> dict[str, np.ndarray]:
    """Per-row NDCG@k and Recall@k of `found` against each row's targets and gains.

    Recall counts the targets whose gain is positive and at least `recall_min_gain` (`TaskData.recall_min_gain`:
    graded search data's `data.relevant_min_grade`); NDCG uses every target's gain.
    """
    # A target missing from the catalog can never be retrieved but still counts in the ideal DCG.
    targets = [target_rows(ids, catalog.row_of) for ids in rows["target_item_ids"]]
    metrics = ranking_metrics(found.rows, targets, rows["gains"], ks)
    if recall_min_gain > 0:
        kept = [[(t, g) for t, g in zip(row_targets, gains) if g >= recall_min_gain]
                for row_targets, gains in zip(targets, rows["gains"])]
        recall = ranking_metrics(found.rows, [[t for t, _ in k] for k in kept], [[g for _, g in k] for k in kept], ks)
        metrics.update({f"recall@{k}": recall[f"recall@{k}"] for k in ks})
    return {name: metrics[name] for name in metric_names(ks)}


def coverage(rows: np.ndarray, k: int = 10) -> dict[str, int]:
    """How many different items a ranking shows over all users: at rank 1, and anywhere in the top `k` (the
    whole list when it is shorter). A collapsed policy names 1 item at rank 1; popularity about `k` in its top `k`.

        >>> coverage(np.array([[3, 1, 2], [3, 2, -1]]), k=2)
        {'distinct_first_items': 1, 'distinct_items@2': 3}
    """
    def distinct(block: np.ndarray) -> int:
        return int(len(set(block.ravel().tolist()) - {-1}))

    return {"distinct_first_items": distinct(rows[:, :1]), f"distinct_items@{k}": distinct(rows[:, :k])}


def search_all(retriever: Retriever, queries: list[str], k: int, exclude: list[list[int]], label: str) -> SearchResult:
    """`retriever.search` over all queries in batches, with a progress bar."""
    parts = []
    for start in tqdm(range(0, len(queries), SEARCH_BATCH), desc=label, unit="batch", leave=False):
        parts.append(retriever.search(queries[start:start + SEARCH_BATCH], k, exclude[start:start + SEARCH_BATCH]))
    return SearchResult(np.concatenate([p.rows for p in parts]), np.concatenate([p.scores for p in parts]))


def baseline_rankers(config: RunConfig, task: TaskData, rows) -> dict[str, Callable[[int, list[list[int]]], SearchResult]]:
    """Name -> function(k, exclude) giving that baseline's rankings, for the baselines the config asks for."""
    catalog, split = task.catalog, config.eval.split
    known = task.known_sequences.get(split, [])
    rankers = {}
    wants = config.eval.baselines
    if ("popularity" in wants or "transitions" in wants) and not known:
        print(f"note: popularity and transitions need interaction sequences; a {task.kind} task has none")
    if known:
        popularity = popularity_counts(known, catalog)
        if "popularity" in wants:
            rankers["popularity"] = lambda k, exclude: rank_popularity(popularity, exclude, k)
        if "transitions" in wants:
            transitions = transition_counts(known, catalog, config.eval.symmetric_transitions)
            last = [catalog.row_of[h[-1]] if h else -1 for h in rows["history_item_ids"]]
            rankers["transitions"] = lambda k, exclude: rank_transitions(transitions, popularity, last, exclude, k)
    backends = [config.retriever.backend if name == "retriever" else name
                for name in wants if name in ("bm25", "dense", "retriever")]
    for backend in dict.fromkeys(backends):
        settings = dataclasses.replace(config.retriever, backend=backend)
        label = f"bm25[{settings.engine}]" if backend == "bm25" else f"dense[{settings.index}]"
        # Built on first use and shared by this backend's rankers, so an unused backend builds no index.
        retriever = functools.cache(functools.partial(build_retriever, settings, catalog))
        if task.kind == "sequential":
            for n in config.eval.query_titles:
                queries = [last_titles_query(titles, n) for titles in rows["history_titles"]]
                rankers[f"{label} last-{n} titles"] = _retrieval_ranker(retriever, queries)
        else:
            rankers[f"{label} query"] = _retrieval_ranker(retriever, list(rows["query"]))
    return rankers


def _retrieval_ranker(retriever: Callable[[], Retriever], queries: list[str]):
    def rank(k: int, exclude: list[list[int]]) -> SearchResult:
        return search_all(retriever(), queries, k, exclude, "search")
    return rank


def score_baselines(config: RunConfig, task: TaskData, rows) -> list[SystemResult]:
    """Every `eval.baselines` ranker (`baseline_rankers`) on `rows`, full catalog, each row's
    `exclude_item_ids` dropped: per-row metrics at `eval.ks`, with the seconds each took."""
    exclude = [task.catalog.rows(ids) for ids in rows["exclude_item_ids"]]
    results = []
    for name, rank in tqdm(baseline_rankers(config, task, rows).items(), desc="baselines", unit="system", leave=False):
        started = time.perf_counter()
        found = rank(max(config.eval.ks), exclude)
        results.append(SystemResult(name, score_rankings(found, rows, task.catalog, config.eval.ks, task.recall_min_gain),
                                    {"seconds": time.perf_counter() - started, **coverage(found.rows)}))
    return results


def run_eval(config: RunConfig) -> str:
    """Rank every configured baseline over the full catalog; write metrics.json + metrics.md; return the markdown."""
    task = load_task(config.data)
    rows = task.split(config.eval.split, config.eval.max_rows, config.data.split_seed)
    catalog, ks = task.catalog, config.eval.ks
    summaries = [r.summary(config.eval.bootstrap, config.seed) for r in score_baselines(config, task, rows)]
    header = {"dataset": config.data.path or "embedded amazon_games_seq", "split": config.eval.split,
              "rows": len(rows), "catalog_items": len(catalog), "ranking": "full catalog" +
              (", user history dropped" if config.data.drop_history and task.kind == "sequential" else "")}
    return write_report(Path(config.eval.output_dir), summaries, metric_names(ks), header)
