"""`rec-rl recommend RUN`: a trained policy's top-k items for new users or queries, as JSONL in and out.

Input, one JSON object a line (a file, or standard input): `{"user_id": ..., "history": [item ids, oldest
first]}` for sequential recommendation, or `{"query_id": ..., "query": "..."}` for search. Output, a line
each: `{"id", "items": [{"item_id", "title", "score"}, ...], "query" or "code": what the policy wrote}`. A
malformed line (bad JSON, a missing key, an item the catalog lacks) is reported on standard error with its
line number and skipped; the other lines are still answered.

The Python API is the same thing without files:

    >>> recommender = load_recommender("runs/train")                        # doctest: +SKIP
    >>> recommender.recommend([["17", "204", "9"]], k=5)[0]["items"][0]     # doctest: +SKIP
    {'item_id': '311', 'title': 'Halo 3 - Xbox 360', 'score': 12.7}
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from rec_rl.config import ConfigError, load_config
from rec_rl.data.tasks import make_split
from rec_rl.evaluation.policy import policy_rankings
from rec_rl.experiments.policy_eval import load_run_policy
from rec_rl.training.rows import parse_mode, prompt_rows
from rewards.parsing import expand_query, extract_query

BATCH = 64  # users per generate call and search


class Recommender:
    """A trained run's policy and retriever, ready to recommend."""

    def __init__(self, run_dir: str | Path, overrides: Sequence[str] = ()):
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").exists():
            raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
        self.config = load_config(run_dir / "config.yaml", list(overrides))
        (self.task, self.retriever, self.route, self.policy, self.prepared,
         self.max_new_tokens) = load_run_policy(run_dir, self.config)
        self.parse = parse_mode(self.config)

    def rows(self, histories: Sequence[Sequence[str]] = (), queries: Sequence[str] = ()):
        """Task rows (the columns prompts and rankings read) for new users' histories, or for search queries."""
        catalog, n = self.task.catalog, self.config.data.history_len
        if histories:
            unknown = [item for history in histories for item in history if item not in catalog.row_of]
            if unknown:
                raise KeyError(f"item {unknown[0]!r} is not in the catalog")
            records = [{"row_id": str(i), "query": "", "history_item_ids": list(h),
                        "history_titles": [catalog.titles[catalog.row_of[item]] for item in h[-n:]],
                        "target_item_ids": [], "gains": [],
                        "exclude_item_ids": list(h) if self.config.data.drop_history else []}
                       for i, h in enumerate(histories)]
        else:
            records = [{"row_id": str(i), "query": q, "history_item_ids": [], "history_titles": [], "target_item_ids": [],
                        "gains": [], "exclude_item_ids": []} for i, q in enumerate(queries)]
        return self.route.rows(make_split(records), self.task, self.retriever, self.config)

    def recommend(self, histories: Sequence[Sequence[str]] = (), k: int = 10, queries: Sequence[str] = ()) -> list[dict]:
        """Per user (or query): the top `k` items with titles and scores, and what the policy wrote."""
        rows = self.rows(histories, queries)
        prompts = prompt_rows(rows, self.config, self.prepared.tokenizer)["prompt"]
        found, written, _ = policy_rankings(
            self.policy, self.prepared.tokenizer, rows, prompts, self.retriever, self.task.catalog, self.parse, k,
            self.max_new_tokens, self.config.train.eval_batch_size, self.prepared.constraint,
            self.route.beam_ranking(self.config, self.prepared.tokenizer, self.retriever, self.prepared.constraint,
                                    self.task), query_expansion=self.config.reward.query_expansion)
        key = "code" if self.route.codes(self.retriever) is not None else "query"
        if key == "query":  # what the retriever searched: the completion read as the reward reads it
            written = [extract_query(text, self.parse).text for text in written]
            if self.config.reward.query_expansion:
                written = [expand_query(text, titles) for text, titles in zip(written, rows["history_titles"])]
        catalog = self.task.catalog
        return [{"items": [{"item_id": catalog.ids[r], "title": catalog.titles[r], "score": float(s)}
                           for r, s in zip(ranked, scores) if r >= 0], key: text}
                for ranked, scores, text in zip(found.rows.tolist(), found.scores.tolist(), written)]


def load_recommender(run_dir: str | Path, overrides: Sequence[str] = ()) -> Recommender:
    """The trained policy of `run_dir` (a finished `rec-rl train` run) as a `Recommender`."""
    return Recommender(run_dir, overrides)


def read_requests(lines: Iterable[str], source: str) -> Iterable[tuple[int, str, list[str] | str]]:
    """`(line number, id, history or query)` per good line; bad lines go to standard error and are skipped."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            if "history" in record:
                if not isinstance(record["history"], list) or not record["history"]:
                    raise ValueError("'history' must be a non-empty list of item ids")
                yield number, str(record["user_id"]), [str(item) for item in record["history"]]
            elif "query" in record:
                yield number, str(record["query_id"]), str(record["query"])
            else:
                raise ValueError("expected 'history' (with 'user_id') or 'query' (with 'query_id')")
        except (ValueError, KeyError) as error:
            print(f"{source}:{number}: skipped: {error}", file=sys.stderr)


def recommend_lines(recommender: Recommender, lines: Iterable[str], k: int, out, source: str = "<stdin>") -> int:
    """Answer every good request line in `lines` as JSONL on `out`, in batches; return how many were answered."""
    from tqdm.auto import tqdm

    requests = list(read_requests(lines, source))
    answered = 0
    for start in tqdm(range(0, len(requests), BATCH), desc="recommend", unit="batch", leave=False):
        batch = requests[start:start + BATCH]
        good = []
        for number, request_id, value in batch:  # an unknown item fails its own line, not the batch
            row_of = recommender.task.catalog.row_of
            missing = next((item for item in value if item not in row_of), None) if isinstance(value, list) else None
            if missing is not None:
                print(f"{source}:{number}: skipped: item {missing!r} is not in the catalog", file=sys.stderr)
            else:
                good.append((request_id, value))
        histories = [v for _, v in good if isinstance(v, list)]
        queries = [v for _, v in good if isinstance(v, str)]
        results = (recommender.recommend(histories, k) if histories else []) + \
                  (recommender.recommend(k=k, queries=queries) if queries else [])
        ids = [i for i, v in good if isinstance(v, list)] + [i for i, v in good if isinstance(v, str)]
        for request_id, result in zip(ids, results):
            out.write(json.dumps({"id": request_id, **result}) + "\n")
            answered += 1
    return answered
