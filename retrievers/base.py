"""The one retriever interface: a frozen index over a catalog, searched a batch at a time."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rec_rl.data.catalog import Catalog


@dataclass
class SearchResult:
    """Ranked catalog rows for a batch of queries.

    `rows[i, j]` is the catalog row at rank j for query i and `scores[i, j]` its score, best first.
    Queries with fewer than k hits are padded with row -1 and score -inf.
    """

    rows: np.ndarray  # int64, shape (n_queries, k)
    scores: np.ndarray  # float32, shape (n_queries, k)

    def item_ids(self, catalog: Catalog) -> list[list[str]]:
        """Ranked item ids per query, padding dropped."""
        return [[catalog.ids[row] for row in ranked if row >= 0] for ranked in self.rows]


class Retriever(ABC):
    """Frozen retriever over `catalog`: `search(queries, k)` in the style of pyserini's searcher.

    Backends implement `_search`; `search` adds what every backend shares: dropping rows the caller
    excludes (a user's own history) without returning fewer than k hits.
    """

    catalog: Catalog

    @abstractmethod
    def _search(self, queries: list[str], k: int) -> SearchResult:
        """Top-k rows per query, best first, padded as `SearchResult` describes."""

    def invalid_output(self, query: str) -> bool:
        """True when `query` cannot be read as what this retriever searches (text retrievers: it is empty)."""
        return not query.strip()

    def search(self, queries: Sequence[str], k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> SearchResult:
        """Top-k catalog rows for each query, skipping the rows in `exclude[i]` for query i.

        Example:
            >>> result = retriever.search(["zelda breath of the wild", "fifa"], k=10)
            >>> result.item_ids(retriever.catalog)[0][:3]   # doctest: +SKIP
        """
        queries = list(queries)
        if not queries:
            return SearchResult(np.empty((0, k), np.int64), np.empty((0, k), np.float32))
        k = min(k, len(self.catalog))
        if exclude is None:
            return self._search(queries, k)
        if len(exclude) != len(queries):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
        depth = min(k + max((len(rows) for rows in exclude), default=0), len(self.catalog))
        found = self._search(queries, depth)
        return drop_rows(found, exclude, k)


def drop_rows(found: SearchResult, exclude: Sequence[Sequence[int]], k: int) -> SearchResult:
    """Remove the excluded rows of each query from `found`, keeping the first k of the rest."""
    rows = np.full((len(found.rows), k), -1, np.int64)
    scores = np.full((len(found.rows), k), -np.inf, np.float32)
    for i, (ranked, ranked_scores, excluded) in enumerate(zip(found.rows, found.scores, exclude)):
        keep = ranked >= 0
        if len(excluded):
            keep &= ~np.isin(ranked, np.asarray(excluded, dtype=np.int64))
        kept = np.flatnonzero(keep)[:k]
        rows[i, :len(kept)] = ranked[kept]
        scores[i, :len(kept)] = ranked_scores[kept]
    return rows_result(rows, scores)


def rows_result(rows: np.ndarray, scores: np.ndarray) -> SearchResult:
    """A SearchResult with the canonical dtypes."""
    return SearchResult(np.asarray(rows, np.int64), np.asarray(scores, np.float32))
