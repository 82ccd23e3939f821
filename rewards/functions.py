"""TRL reward functions: the policy's query is searched with the frozen retriever and the ranking scored.

Every reward function has TRL's signature, `f(prompts, completions, **kwargs) -> list[float]`: the
kwargs carry the dataset columns, repeated by TRL for each generation (`target_item_ids`, `gains`,
`exclude_item_ids`, `history_titles`), and TRL's own extras (`completion_ids`, `trainer_state`, `log_metric`, ...),
which are ignored except `log_metric`. Each has a `__name__`, which TRL logs it under
(`rewards/ndcg@1000/mean`).

The retrieval rewards share a `RetrievalScorer`, which searches a whole batch in one retriever call
and remembers the last batch, so NDCG and Recall of the same completions cost one search.

Example:
    >>> scorer = RetrievalScorer(retriever, catalog, parse_mode="query_line", k=1000)  # doctest: +SKIP
    >>> funcs, weights = build_reward_functions(scorer, RewardConfig())               # doctest: +SKIP
    >>> [f.__name__ for f in funcs], weights                                          # doctest: +SKIP
    (['ndcg@1000', 'recall@1000', 'mrr@1000', 'query_length'], [1.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rewards.config import SIMILARITY_MEASURES, RewardConfig
from rewards.metrics import ranking_metrics, target_rows
from rewards.parsing import PARSE_MODES, ParsedQuery, expand_query, extract_query

if TYPE_CHECKING:
    from rec_rl.data.catalog import Catalog
    from retrievers.base import Retriever

logger = logging.getLogger(__name__)

# The reward metrics. "mrr" is 1/rank of the first target within k: nearly as dense as NDCG@1000
# (any hit in the top k scores) but it weighs the top ranks like NDCG@10 does.
METRICS = ("ndcg", "recall", "mrr")


def searched_query(parsed: ParsedQuery, max_words: int) -> str | None:
    """The text a parsed completion is searched (and compared) as: its first `max_words` words; None if malformed.

    Example:
        >>> searched_query(extract_query("Query: a b c", "query_line"), max_words=2)
        'a b'
    """
    return " ".join(parsed.text.split()[:max_words]) if parsed.well_formed else None


@dataclass
class ScorerStats:
    """Counters of a `RetrievalScorer` since it was built."""

    batches: int = 0  # batches searched (memo misses)
    memo_hits: int = 0  # reward calls answered from the last batch without searching
    search_calls: int = 0  # retriever.search calls: one per batch, more when a batch falls back to one by one
    requested: int = 0  # well-formed queries in the searched batches
    searched: int = 0  # distinct (query, exclude) pairs among them, the ones actually searched
    failed: int = 0  # distinct queries the retriever raised on

    @property
    def hit_rate(self) -> float:
        """Share of requested queries answered by an identical query in the same batch."""
        return 1.0 - self.searched / self.requested if self.requested else 0.0


@dataclass
class ScoredBatch:
    """What the retriever returned for a batch of completions."""

    parsed: list[ParsedQuery]
    rows: np.ndarray  # (n, k) catalog rows, padded with -1; all -1 where `scored` is False
    scored: np.ndarray  # (n,) bool: well formed and searched without error


class RetrievalScorer:
    """Parses completions into queries and retrieves them, one batched search per batch of completions.

    `parse_mode` is an `extract_query` mode; `k` the search depth (the deepest reward k); queries are
    cut to `max_query_words` words; with `query_expansion`, each is searched after its row's `history_titles`
    (`rewards.parsing.expand_query`; an empty one searches the titles alone). A malformed completion, or one
    whose query the retriever raises on, is not scored: every retrieval reward gives it `format_penalty`. With `drop_excluded`, each
    completion's `exclude_item_ids` (the user's history) are dropped from its ranking.

    Identical (query, exclude) pairs in a batch are searched once: a GRPO group often repeats a query.
    If the retriever raises on the batch, queries are retried one at a time and only those that
    fail are unscored; if every query fails, the retriever is broken and the error is raised, since
    a constant reward would silently train nothing.
    """

    def __init__(self, retriever: Retriever, catalog: Catalog, parse_mode: str = "query_line", k: int = 1000,
                 format_penalty: float = 0.0, max_query_words: int = 32, drop_excluded: bool = True,
                 query_expansion: bool = False):
        if parse_mode not in PARSE_MODES:
            raise ValueError(f"unknown parse mode {parse_mode!r}; expected one of {list(PARSE_MODES)}")
        if k < 1 or max_query_words < 1:
            raise ValueError(f"k and max_query_words must be positive, got {k} and {max_query_words}")
        if not math.isfinite(format_penalty):
            raise ValueError(f"format_penalty must be finite, got {format_penalty}")
        self.retriever, self.catalog = retriever, catalog
        self.parse_mode, self.k = parse_mode, k
        self.format_penalty, self.max_query_words = float(format_penalty), max_query_words
        self.drop_excluded, self.query_expansion = drop_excluded, query_expansion
        self.stats = ScorerStats()
        self._last: tuple[tuple, np.ndarray, np.ndarray] | None = None  # (key, rows, scored) of the last batch

    @classmethod
    def from_config(cls, retriever: Retriever, catalog: Catalog, config: RewardConfig,
                    drop_excluded: bool = True) -> RetrievalScorer:
        """A scorer with the parse mode, depth, format penalty and query cut of `config`."""
        if config.parse is None:
            raise ValueError("reward.parse is null: resolve it from the prompt template first")
        return cls(retriever, catalog, config.parse, config.k, config.format_penalty, config.max_query_words,
                   drop_excluded, config.query_expansion)

    def retrieve(self, completions: Sequence, exclude_item_ids: Sequence[Sequence[str]] | None = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 history_titles: Sequence[Sequence[str]] | None = None) -> ScoredBatch:
        """Parse and search `completions` (after their `history_titles` with `query_expansion`); `log_metric`
        (TRL's kwarg) receives per-batch statistics."""
        parsed = [extract_query(completion, self.parse_mode) for completion in completions]
        if exclude_item_ids is not None and len(exclude_item_ids) != len(parsed):
            raise ValueError(f"{len(exclude_item_ids)} exclude lists for {len(parsed)} completions")
        queries = [searched_query(p, self.max_query_words) for p in parsed]
        if self.query_expansion:
            if history_titles is None or len(history_titles) != len(parsed):
                raise ValueError(f"reward.query_expansion searches each completion after its row's history titles: "
                                 f"got {'no' if history_titles is None else len(history_titles)} title lists for "
                                 f"{len(parsed)} completions (the dataset needs a history_titles column)")
            # An empty completion adds nothing, a choice like any other: it searches the titles alone (the
            # trivial query), as the evaluation does. A non-empty completion that breaks the format is still unscored.
            queries = [expand_query(q or "", titles) if q is not None or not p.text else None
                       for q, p, titles in zip(queries, parsed, history_titles)]
        if self.drop_excluded and exclude_item_ids is not None:
            row_of = self.catalog.row_of
            # Sorted so that the same set compares equal however the dataset listed it.
            excludes = [tuple(sorted({row_of[i] for i in ids if i in row_of})) for ids in exclude_item_ids]
        else:
            excludes = [()] * len(parsed)
        key = (tuple(queries), tuple(excludes))
        if self._last is not None and self._last[0] == key:
            self.stats.memo_hits += 1
            return ScoredBatch(parsed, *self._last[1:])

        pairs = list(dict.fromkeys((q, e) for q, e in zip(queries, excludes) if q is not None))
        found = self._search_pairs(pairs)
        rows = np.full((len(parsed), self.k), -1, np.int64)
        scored = np.zeros(len(parsed), bool)
        for i, pair in enumerate(zip(queries, excludes)):
            if pair in found:
                width = min(self.k, found[pair].shape[0])
                rows[i, :width] = found[pair][:width]
                scored[i] = True
        self._last = (key, rows, scored)
        requested = sum(q is not None for q in queries)
        self.stats.batches += 1
        self.stats.requested += requested
        self.stats.searched += len(pairs)
        if log_metric is not None and parsed:
            log_metric("retrieval/malformed_rate", 1.0 - requested / len(parsed))
            log_metric("retrieval/unscored_rate", 1.0 - scored.mean())
            log_metric("retrieval/distinct_query_share", len(pairs) / requested if requested else 0.0)
        return ScoredBatch(parsed, rows, scored)

    def _search(self, pairs: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
        self.stats.search_calls += 1
        exclude = [list(e) for _, e in pairs] if self.drop_excluded else None
        rows = np.asarray(self.retriever.search([q for q, _ in pairs], self.k, exclude).rows)
        if rows.ndim != 2 or rows.shape[0] != len(pairs):
            raise RuntimeError(f"retriever returned rows of shape {rows.shape} for {len(pairs)} queries")
        return rows

    def _search_pairs(self, pairs: list[tuple[str, tuple[int, ...]]]) -> dict[tuple, np.ndarray]:
        """Ranked rows per (query, exclude) pair; pairs the retriever raised on are left out."""
        if not pairs:
            return {}
        # Exception, not BaseException: an interrupt must still stop training.
        try:
            return dict(zip(pairs, self._search(pairs)))
        except Exception as batch_error:
            logger.warning("retriever failed on a batch of %d queries (%r); retrying them one by one",
                           len(pairs), batch_error)
        found, errors = {}, []
        for pair in pairs:
            try:
                found[pair] = self._search([pair])[0]
            except Exception as error:
                errors.append((pair[0], error))
        self.stats.failed += len(errors)
        if len(errors) == len(pairs):
            query, error = errors[0]
            raise RuntimeError(f"the retriever failed on all {len(pairs)} queries of the batch, e.g. "
                               f"{query[:100]!r}: {error!r}; it is broken, and the reward would be constant") from error
        for query, error in errors:
            logger.warning("retriever failed on query %r (%r); it gets the format penalty", query[:100], error)
        return found

    def rewards(self, metric: str, k: int, completions: Sequence, target_item_ids: Sequence[Sequence[str]],
                gains: Sequence[Sequence[float]] | None = None,
                exclude_item_ids: Sequence[Sequence[str]] | None = None,
                log_metric: Callable[[str, float], None] | None = None,
                history_titles: Sequence[Sequence[str]] | None = None) -> list[float]:
        """`metric`@k ("ndcg", "recall" or "mrr") of each completion's ranking; `format_penalty` where unscored."""
        if metric not in METRICS or not 1 <= k <= self.k:
            raise ValueError(f"cannot score {metric}@{k} with a scorer searching {self.k} deep")
        if len(target_item_ids) != len(completions) or (gains is not None and len(gains) != len(completions)):
            raise ValueError(f"{len(completions)} completions but {len(target_item_ids)} target lists"
                             + ("" if gains is None else f" and {len(gains)} gain lists"))
        batch = self.retrieve(completions, exclude_item_ids, log_metric, history_titles)
        targets = [target_rows(ids, self.catalog.row_of) for ids in target_item_ids]
        if metric == "mrr":
            values = ranking_metrics(batch.rows[:, :k], targets, gains, [k])["mrr"]
        else:
            values = ranking_metrics(batch.rows, targets, gains, [k])[f"{metric}@{k}"]
        return np.where(batch.scored, values, self.format_penalty).tolist()


class RetrievalReward:
    """NDCG@k, Recall@k or MRR@k of the ranking the completion's query retrieves (a TRL reward function).

    Example:
        >>> reward = RetrievalReward(scorer, "ndcg", k=1000)                        # doctest: +SKIP
        >>> reward(prompts, ["Query: halo 3", "junk"], target_item_ids=[["7"], ["7"]])  # doctest: +SKIP
        [0.6309297535714575, 0.0]
    """

    def __init__(self, scorer: RetrievalScorer, metric: str, k: int | None = None):
        k = scorer.k if k is None else k
        if metric not in METRICS or not 1 <= k <= scorer.k:
            raise ValueError(f"cannot reward {metric}@{k} with a scorer searching {scorer.k} deep")
        self.scorer, self.metric, self.k = scorer, metric, k
        self.__name__ = f"{metric}@{k}"

    def __call__(self, prompts, completions, target_item_ids, gains=None, exclude_item_ids=None,
                 **kwargs) -> list[float]:
        return self.scorer.rewards(self.metric, self.k, completions, target_item_ids, gains, exclude_item_ids,
                                   kwargs.get("log_metric"), kwargs.get("history_titles"))

    def __repr__(self) -> str:
        return f"RetrievalReward({self.__name__})"


def ndcg_reward(scorer: RetrievalScorer, k: int | None = None) -> RetrievalReward:
    """NDCG@k reward (k defaults to the scorer's depth)."""
    return RetrievalReward(scorer, "ndcg", k)


def recall_reward(scorer: RetrievalScorer, k: int | None = None) -> RetrievalReward:
    """Recall@k reward (k defaults to the scorer's depth)."""
    return RetrievalReward(scorer, "recall", k)


def mrr_reward(scorer: RetrievalScorer, k: int | None = None) -> RetrievalReward:
    """MRR@k reward, 1/rank of the first target in the top k (k defaults to the scorer's depth)."""
    return RetrievalReward(scorer, "mrr", k)


class QueryLength:
    """Words in each completion's parsed query (before the scorer's cut); logged with weight 0.

    Example:
        >>> QueryLength("query_line")(None, ["Query: zelda switch", "no format"])
        [2.0, 2.0]
    """

    __name__ = "query_length"

    def __init__(self, parse_mode: str):
        self.parse_mode = parse_mode

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return [float(len(extract_query(c, self.parse_mode).text.split())) for c in completions]


class LengthPenalty:
    """-per_word for each parsed-query word beyond `max_words`, malformed completions included.

    Example:
        >>> LengthPenalty("plain", max_words=2, per_word=0.5)(None, ["a b", "a b c d"])
        [0.0, -1.0]
    """

    __name__ = "length_penalty"

    def __init__(self, parse_mode: str, max_words: int, per_word: float):
        if max_words < 0 or not math.isfinite(per_word) or per_word < 0:
            raise ValueError(f"need max_words >= 0 and a finite per_word >= 0, got {max_words} and {per_word}")
        self.parse_mode, self.max_words, self.per_word = parse_mode, max_words, float(per_word)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        words = [len(extract_query(c, self.parse_mode).text.split()) for c in completions]
        return [self.per_word * min(0, self.max_words - n) for n in words]


class RepeatPenalty:
    """-weight x the share of the parsed query's word trigrams that already occurred earlier in it.

    A query writer that loops ("Xbox 360 - Xbox 360 - ...", or a cloned title list that repeats its titles until
    the completion cap) is pushed back to listing each thing once. Trigrams rather than words, because distinct
    titles of one franchise share words ("Guitar Hero 3", "Guitar Hero Aerosmith") without being a loop; words
    are lowercased and stripped of punctuation, as the retrievers' tokenizers do. Queries under three words
    are never penalised.

    Example:
        >>> RepeatPenalty("plain", 1.0)(None, ["zelda breath of the wild", "mario kart 8 mario kart 8"])
        [0.0, -0.25]
    """

    __name__ = "repeat_penalty"

    def __init__(self, parse_mode: str, weight: float):
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"need a finite repeat penalty weight >= 0, got {weight}")
        self.parse_mode, self.weight = parse_mode, float(weight)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        shares = [repeated_trigram_share(extract_query(c, self.parse_mode).text) for c in completions]
        return [-self.weight * share if share else 0.0 for share in shares]


class TargetSimilarity:
    """Cosine between the parsed query's text embedding and the target item's (a TRL reward function).

    A shaping reward for the query writer: BM25's NDCG@k is exactly 0 whenever the target is not retrieved
    (half the GRPO groups of a zero-shot run have no reward spread, so no gradient), while the cosine of
    the query to the next item's text is never exactly 0 and still grades "about the right game" above
    "about the wrong one". `encode(texts)` gives normalised query vectors (the dense retriever's
    sentence-transformers model); `item_embeddings` the catalog's, row by row. With several targets the
    most similar counts; a malformed or empty query scores 0, as do targets missing from the catalog.

    `measure="log_rank"` scores 1 - log(rank) / log(n) instead, where rank is the best target's place among
    the n catalog items outside the user's history (`exclude_item_ids`) ordered by cosine to the query:
    1 for the nearest item, 0 for the farthest. The cosine rewards a generic query ("Xbox 360 Xbox 360 ..."
    is close to every Xbox 360 game, and a policy trained on it at lr 1e-3 learned to loop platform names);
    the rank charges it for every item of the platform it does not tell apart from the target.

    Example:
        >>> encode = lambda texts: np.array([[1.0, 0.0] if "zelda" in t else [0.0, 1.0] for t in texts])
        >>> reward = TargetSimilarity(encode, np.array([[0.6, 0.8]]), {"7": 0}, "plain", max_query_words=32)
        >>> reward(None, ["zelda switch", "mario"], target_item_ids=[["7"], ["7"]])
        [0.6, 0.8]
    """

    __name__ = "target_similarity"

    MEASURES = SIMILARITY_MEASURES

    def __init__(self, encode: Callable[[list[str]], np.ndarray], item_embeddings: np.ndarray,
                 row_of: dict[str, int], parse_mode: str, max_query_words: int, measure: str = "cosine"):
        if measure not in self.MEASURES:
            raise ValueError(f"reward.similarity must be one of {self.MEASURES}, got {measure!r}")
        self.encode, self.item_embeddings, self.row_of = encode, item_embeddings, row_of
        self.parse_mode, self.max_query_words, self.measure = parse_mode, max_query_words, measure

    def __call__(self, prompts, completions, target_item_ids, exclude_item_ids=None, **kwargs) -> list[float]:
        if len(target_item_ids) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(target_item_ids)} target lists")
        excluded = exclude_item_ids if exclude_item_ids is not None else [()] * len(completions)
        parsed = [extract_query(c, self.parse_mode) for c in completions]
        queries = [searched_query(p, self.max_query_words) or "" for p in parsed]
        distinct = list(dict.fromkeys(q for q in queries if q.strip()))
        vectors = dict(zip(distinct, self.encode(distinct))) if distinct else {}
        rewards = []
        for query, ids, history in zip(queries, target_item_ids, excluded):
            rows = [self.row_of[i] for i in ids if i in self.row_of]
            if query not in vectors or not rows:
                rewards.append(0.0)
            elif self.measure == "cosine":
                rewards.append(float(np.max(self.item_embeddings[rows] @ vectors[query])))
            else:
                rewards.append(self._log_rank(vectors[query], rows, history))
        return rewards

    def _log_rank(self, vector: np.ndarray, target_rows: list[int], history: Sequence[str]) -> float:
        scores = self.item_embeddings @ vector
        dropped = [self.row_of[i] for i in history if i in self.row_of and self.row_of[i] not in target_rows]
        scores[dropped] = -np.inf
        candidates = len(scores) - len(set(dropped))
        rank = 1 + int(np.sum(scores > scores[target_rows].max()))
        return 1.0 - math.log(rank) / math.log(candidates) if candidates > 1 else 1.0


_PUNCTUATION = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())


def repeated_trigram_share(text: str) -> float:
    """Share of `text`'s word trigrams that occurred earlier in it (0 for fewer than three words).

    Example:
        >>> repeated_trigram_share("mario kart 8 mario kart 8")
        0.25
    """
    words = [w for w in (word.strip(_PUNCTUATION).lower() for word in text.split()) if w]
    trigrams = list(zip(words, words[1:], words[2:]))
    return 1.0 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


class BeamRankPenalty:
    """MiniOneRec's ranking reward over a group of beams (a TRL reward function; needs `beam_rank`).

    The explicit route's beam rollouts (`train.rollout=beam`) make each GRPO group its prompt's top codes,
    best first, and pass each completion's place as `beam_rank` (a group starts where it is 0). In a group
    that holds a hit (the target first in the completion's ranking: its exact code), each miss at rank r
    gets -(1/log2(r + 2)) / sum over the group's ranks of 1/log2(i + 2), and the hit 0; a group without a
    hit gets 0 throughout. Added to an exact-match or NDCG reward, it teaches the order of the head of the
    list, where NDCG@10 is earned, not only which code to write.

    Example:
        >>> penalty = BeamRankPenalty(scorer)                                                 # doctest: +SKIP
        >>> penalty(prompts, codes, target_item_ids=[["7"]] * 2, beam_rank=[0, 1])  # second beam is "7" # doctest: +SKIP
        [-0.613..., 0.0]
    """

    __name__ = "beam_rank"

    def __init__(self, scorer: RetrievalScorer):
        self.scorer = scorer

    def __call__(self, prompts, completions, target_item_ids, beam_rank=None, gains=None, exclude_item_ids=None,
                 **kwargs) -> list[float]:
        if beam_rank is None:
            raise ValueError("reward.rank_weight needs each completion's beam_rank: set train.rollout=beam "
                             "(explicit route)")
        hits = np.array(self.scorer.rewards("mrr", 1, completions, target_item_ids, gains, exclude_item_ids)) >= 1.0
        ranks = np.asarray(beam_rank, dtype=np.int64)
        starts = np.flatnonzero(ranks == 0).tolist() + [len(ranks)]
        if starts[0] != 0:
            raise ValueError("beam_rank must start every group at 0")
        rewards = np.zeros(len(ranks))
        for start, stop in zip(starts[:-1], starts[1:]):
            if hits[start:stop].any():
                weights = 1.0 / np.log2(np.arange(stop - start) + 2.0)
                rewards[start:stop] = np.where(hits[start:stop], 0.0, -weights[ranks[start:stop]] / weights.sum())
        return rewards.tolist()


def build_reward_functions(scorer: RetrievalScorer, spec: RewardConfig,
                           text_encoder: Callable[[list[str]], np.ndarray] | None = None,
                           item_embeddings: np.ndarray | None = None) -> tuple[list, list[float]]:
    """Reward functions and their weights (GRPOConfig.reward_weights) for `spec`.

    NDCG@k, Recall@k and MRR@k are always all returned (one search serves them all; weight 0 only
    logs); those with a nonzero weight come first, since callers treat the first as the main reward.
    `spec.similarity_weight` needs `text_encoder` and `item_embeddings` (see `TargetSimilarity`).
    """
    weighted = [(metric, getattr(spec, f"{metric}_weight")) for metric in METRICS]
    if all(weight == 0 for _, weight in weighted):
        raise ValueError("reward.ndcg_weight, reward.recall_weight and reward.mrr_weight are all 0: "
                         "nothing to learn from")
    weighted.sort(key=lambda pair: pair[1] == 0)  # stable: nonzero weights first, in METRICS order
    pairs = [(RetrievalReward(scorer, metric, spec.k), weight) for metric, weight in weighted]
    if spec.rank_weight:
        pairs.append((BeamRankPenalty(scorer), float(spec.rank_weight)))
    if spec.similarity_weight:
        if text_encoder is None or item_embeddings is None:
            raise ValueError("reward.similarity_weight needs a text encoder and the catalog's embeddings")
        pairs.append((TargetSimilarity(text_encoder, item_embeddings, scorer.catalog.row_of, scorer.parse_mode,
                                       scorer.max_query_words, spec.similarity), float(spec.similarity_weight)))
    if spec.repeat_penalty:
        pairs.append((RepeatPenalty(scorer.parse_mode, spec.repeat_penalty), 1.0))
    if spec.length_penalty:
        pairs.append((LengthPenalty(scorer.parse_mode, spec.max_query_words, spec.length_penalty), 1.0))
    if spec.log_query_length:
        pairs.append((QueryLength(scorer.parse_mode), 0.0))
    return [f for f, _ in pairs], [float(w) for _, w in pairs]
