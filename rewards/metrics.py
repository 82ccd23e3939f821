"""Ranking metrics: NDCG@k, Recall@k and MRR of one ranking, and the same over a batch of rankings.

Shared rules (the scalar functions and `ranking_metrics` agree exactly, a test checks it):
- `targets[i]` has graded gain `gains[i]` (1.0 when `gains` is None); only gains > 0 are relevant.
  A target listed twice counts once, with its largest gain.
- NDCG uses linear gains (gain, not 2^gain - 1) and the log2(rank + 1) discount; the ideal DCG is
  over the de-duplicated relevant targets, so a target the ranking cannot hold (an item missing
  from the catalog) still lowers NDCG and Recall.
- In `ranked`, None and negative integers are padding (retrievers pad with row -1) and match
  nothing; they still take their rank. An item ranked twice earns its gain at its first rank only.
- A ranking with no relevant target scores 0.0 on every metric.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=16)
def _discounts(n: int) -> np.ndarray:
    """log2(rank + 1) for ranks 1..n.

    math.log2 per element, never numpy's vectorised log2: its SIMD and scalar paths may round
    differently, and the scalar and batch metrics must divide by bit-identical discounts.
    """
    table = np.array([math.log2(rank + 1) for rank in range(1, n + 1)], dtype=np.float64)
    table.flags.writeable = False  # shared through the cache
    return table


def _check_k(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")


def relevance(targets: Iterable[Hashable], gains: Iterable[float] | None = None) -> dict[Hashable, float]:
    """Relevant targets and their gains: positive gains only, the largest for a repeated target.

    Example:
        >>> relevance(["a", "b", "a", "c"], [0.1, 0.0, 1.0, 0.5])
        {'a': 1.0, 'c': 0.5}
    """
    targets = list(targets)
    gains = [1.0] * len(targets) if gains is None else [float(gain) for gain in gains]
    if len(gains) != len(targets):
        raise ValueError(f"{len(targets)} targets but {len(gains)} gains")
    relevant: dict[Hashable, float] = {}
    for target, gain in zip(targets, gains):
        if not math.isfinite(gain):
            raise ValueError(f"gain of target {target!r} is {gain}")
        if gain > relevant.get(target, 0.0):
            relevant[target] = gain
    return relevant


def _is_padding(item) -> bool:
    return item is None or (isinstance(item, (int, np.integer)) and item < 0)


def _hits(ranked: Iterable[Hashable], relevant: Mapping[Hashable, float], k: int | None) -> list[tuple[int, float]]:
    """(0-based rank, gain) of each relevant item at its first rank within the top k."""
    seen, hits = set(), []
    for rank, item in enumerate(itertools.islice(ranked, k)):
        if _is_padding(item) or item in seen or item not in relevant:
            continue
        seen.add(item)
        hits.append((rank, relevant[item]))
    return hits


def ndcg_at_k(ranked: Iterable[Hashable], targets: Iterable[Hashable], gains: Iterable[float] | None = None,
              k: int = 10) -> float:
    """NDCG@k with linear gains: DCG of the top k over the DCG of the ideal ranking of the targets.

    Example:
        >>> round(ndcg_at_k([5, 3, -1], targets=[3], k=10), 4)   # hit at rank 2: 1 / log2(3)
        0.6309
        >>> ndcg_at_k(["b", "a"], targets=["a", "b"], gains=[1.0, 1.0], k=2)
        1.0
    """
    _check_k(k)
    relevant = relevance(targets, gains)
    if not relevant:
        return 0.0
    discounts = _discounts(k)
    dcg = 0.0
    for rank, gain in _hits(ranked, relevant, k):
        dcg += gain / discounts[rank]
    ideal = 0.0
    for rank, gain in enumerate(sorted(relevant.values(), reverse=True)[:k]):
        ideal += gain / discounts[rank]
    return float(dcg / ideal)


def recall_at_k(ranked: Iterable[Hashable], targets: Iterable[Hashable], gains: Iterable[float] | None = None,
                k: int = 10) -> float:
    """Share of the relevant targets (gain > 0, each counted once) found in the top k.

    Example:
        >>> recall_at_k([1, 2, 2, 9], targets=[2, 9, 7], k=3)
        0.3333333333333333
    """
    _check_k(k)
    relevant = relevance(targets, gains)
    if not relevant:
        return 0.0
    return len(_hits(ranked, relevant, k)) / len(relevant)


def mrr(ranked: Iterable[Hashable], targets: Iterable[Hashable], gains: Iterable[float] | None = None,
        k: int | None = None) -> float:
    """Reciprocal rank of the first relevant item (within the top k when k is given), else 0.0.

    Example:
        >>> mrr(["x", "y", "z"], targets=["z", "y"])
        0.5
        >>> mrr(["x", "y", "z"], targets=["z"], k=2)
        0.0
    """
    _check_k(k)
    hits = _hits(ranked, relevance(targets, gains), k)
    return 1.0 / (hits[0][0] + 1) if hits else 0.0


def ranking_metrics(rows: np.ndarray, targets: Sequence[Sequence[int]],
                    gains: Sequence[Sequence[float]] | None = None, ks: Iterable[int] = (10,)) -> dict[str, np.ndarray]:
    """Per-row "ndcg@k" and "recall@k" for each k in `ks`, and "mrr" over all columns, as float64 arrays.

    `rows` is an (n, depth) integer array of ranked catalog rows padded with -1 (`SearchResult.rows`);
    `targets[i]` are row i's target catalog rows and `gains[i]` their gains. A k beyond `depth`
    scores the ranking as it is against the ideal DCG at k, like `ndcg_at_k` on a short list.
    Negative targets never match: give each unknown item its own negative number (`target_rows`).

    Example:
        >>> rows = np.array([[4, 2, -1], [0, 1, 2]])
        >>> metrics = ranking_metrics(rows, targets=[[2], [7]], gains=[[1.0], [1.0]], ks=[1, 3])
        >>> metrics["recall@3"].tolist(), metrics["mrr"].tolist()
        ([1.0, 0.0], [0.5, 0.0])
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or not (np.issubdtype(rows.dtype, np.integer) or rows.size == 0):
        raise ValueError(f"rows must be a 2-d integer array, got shape {rows.shape} and dtype {rows.dtype}")
    rows = rows.astype(np.int64, copy=False)
    n, depth = rows.shape
    ks = list(ks)
    for k in ks:
        _check_k(k)
    if len(targets) != n or (gains is not None and len(gains) != n):
        raise ValueError(f"{n} rankings but {len(targets)} target lists and "
                         f"{'no' if gains is None else len(gains)} gain lists")
    relevants = [relevance(t, None if gains is None else gains[i]) for i, t in enumerate(targets)]

    # Gain of each ranked entry, at the first rank of a relevant item only. Matching is one sorted
    # lookup of (row index, catalog row) keys instead of a Python loop over n x depth entries.
    keyed = [(i, int(target), gain) for i, relevant in enumerate(relevants)
             for target, gain in relevant.items() if target >= 0]
    gain_matrix = np.zeros((n, depth), np.float64)
    if keyed and depth:
        owner, target, target_gain = (np.array(column) for column in zip(*keyed))
        stride = int(max(rows.max(), target.max())) + 1
        target_keys = owner.astype(np.int64) * stride + target
        order = np.argsort(target_keys)
        target_keys, target_gain = target_keys[order], target_gain[order]
        flat = rows.ravel()
        keys = np.repeat(np.arange(n, dtype=np.int64), depth) * stride + flat
        slot = np.minimum(np.searchsorted(target_keys, keys), len(target_keys) - 1)
        matched = np.flatnonzero((flat >= 0) & (target_keys[slot] == keys))
        # Row-major order puts a duplicate's first rank first, which np.unique's index returns.
        _, first = np.unique(keys[matched], return_index=True)
        first = matched[first]
        gain_matrix.ravel()[first] = target_gain[slot[first]]

    discounts = _discounts(max([depth, *ks]))
    # cumsum adds in rank order, as the scalar loop does, so both round identically.
    dcg = np.cumsum(gain_matrix / discounts[:depth], axis=1)
    hits = np.cumsum(gain_matrix > 0, axis=1)
    # The ideal ranking: each row's gains, best first, as deep as the largest k needs.
    ideal_depth = min(max((len(r) for r in relevants), default=0), max(ks, default=0))
    ideal_gains = np.zeros((n, ideal_depth), np.float64)
    for i, relevant in enumerate(relevants):
        best = sorted(relevant.values(), reverse=True)[:ideal_depth]
        ideal_gains[i, :len(best)] = best
    ideal = np.cumsum(ideal_gains / discounts[:ideal_gains.shape[1]], axis=1)
    n_relevant = np.array([len(r) for r in relevants], np.int64)

    def at(cumulative: np.ndarray, k: int) -> np.ndarray:
        if cumulative.shape[1] == 0:
            return np.zeros(n, cumulative.dtype)
        return cumulative[:, min(k, cumulative.shape[1]) - 1]

    metrics = {}
    for k in ks:
        ideal_k = at(ideal, k)
        metrics[f"ndcg@{k}"] = np.divide(at(dcg, k), ideal_k, out=np.zeros(n), where=ideal_k > 0)
        metrics[f"recall@{k}"] = np.divide(at(hits, k), n_relevant, out=np.zeros(n), where=n_relevant > 0)
    found = gain_matrix > 0
    first_rank = np.argmax(found, axis=1) + 1 if depth else np.ones(n, np.int64)
    metrics["mrr"] = np.where(found.any(axis=1), 1.0 / first_rank, 0.0)
    return metrics


def target_rows(item_ids: Iterable[str], row_of: Mapping[str, int]) -> list[int]:
    """Catalog rows of target `item_ids`, for `ranking_metrics`.

    An id missing from the catalog can never be retrieved but still counts in the ideal DCG and the
    recall denominator: each distinct unknown id gets its own negative number (from -2 down), so
    two unknown targets count twice, not once as a shared placeholder would.

    Example:
        >>> target_rows(["b", "zz", "a", "yy", "zz"], {"a": 0, "b": 1})
        [1, -2, 0, -3, -2]
    """
    unknown: dict[str, int] = {}
    rows = []
    for item_id in item_ids:
        row = row_of.get(item_id)
        if row is None:
            row = unknown.setdefault(item_id, -2 - len(unknown))
        rows.append(row)
    return rows
