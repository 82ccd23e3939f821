"""The code-indexed retriever (`retriever.backend=codes`): generated semantic tokens -> a ranked item list.

Ranking rules, for one generated code:
1. the item whose code matches exactly;
2. then items by the length of the code prefix they share with it, longest first;
3. within the same shared prefix length, by the distance between the item's embedding and the vector
   the generated code decodes to (`ItemCodes.decode`), nearest first, so a near miss still ranks
   the right neighbourhood high and earns graded NDCG credit.
An invalid code (out-of-range numbers, a wrong level order) is read as far as it is valid. Several codes
in one output (beams, samples, or a list) merge into one ranking: each item takes its best score over
them (the first `MAX_CODES_PER_OUTPUT` distinct codes). Output with no code in it ranks nothing (reward 0), never an error.

Hybrid identifiers (`codes.hybrid_weight > 0`, TransRec style): words written beside the codes are
searched with BM25 (bm25s), and `hybrid_weight` x the BM25 score, scaled to [0, 1) per query, is added.

Example:
    >>> retriever = CodeRetriever(catalog, CodesConfig())                # doctest: +SKIP
    >>> retriever.search(["<a_12><b_201><c_7><d_0>"], k=5).item_ids(catalog)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from rec_rl.codes.build import ItemCodes, item_codes
from rec_rl.codes.tokens import parse_codes, strip_codes
from rec_rl.config import CodesConfig, RetrieverConfig
from rec_rl.data.catalog import Catalog
from retrievers.base import Retriever, SearchResult, rows_result

# A score is prefix length + a closeness in [0, 1), and + hybrid evidence in [0, hybrid_weight):
# prefix length dominates as long as the hybrid weight is below 1.
_CLOSENESS_SPAN = 0.999
# Codes merged per output: each costs a pass over the catalog, and a degenerate output can repeat
# thousands; the first distinct ones are what beams or a short list hold.
MAX_CODES_PER_OUTPUT = 16


class CodeRetriever(Retriever):
    """Ranks the catalog by code prefix, then decoded-vector distance (module docstring)."""

    def __init__(self, catalog: Catalog, config: CodesConfig, retriever_config: RetrieverConfig | None = None,
                 codes: ItemCodes | None = None):
        self.catalog = catalog
        self.config = config
        cache_dir = retriever_config.cache_dir if retriever_config else None
        self.codes = codes if codes is not None else item_codes(catalog, config, cache_dir)
        if not 0 <= config.hybrid_weight < 1:
            raise ValueError(f"codes.hybrid_weight is {config.hybrid_weight}; expected 0 <= weight < 1 "
                             "(code evidence must keep the lead)")
        self._item_codes = set(map(tuple, self.codes.codes.tolist()))
        self._words = None
        if config.hybrid_weight > 0:
            from retrievers.bm25 import Bm25sBM25

            self._words = Bm25sBM25(catalog, retriever_config or RetrieverConfig(engine="bm25s"))

    def invalid_output(self, query: str) -> bool:
        """True unless `query` holds at least one complete code of a catalog item."""
        return not any(code in self._item_codes for code in parse_codes(query))

    def item_scores(self, code: tuple[int, ...]) -> np.ndarray:
        """Every item's score for one generated code: shared prefix length + closeness (module docstring)."""
        depth = min(len(code), self.codes.levels)
        matches = self.codes.codes[:, :depth] == np.asarray(code[:depth], dtype=np.int64)
        prefix = np.cumprod(matches, axis=1).sum(axis=1).astype(np.float64)
        vector, mask = self.codes.decode(code)
        if mask.any():
            # Residual codes describe every dimension: skip the masked copy of the whole catalog there.
            reference = self.codes.reference
            if not mask.all():
                reference, vector = reference[:, mask], vector[mask]
            distance = ((reference - vector) ** 2).sum(axis=1)
            closeness = 1.0 - distance / (distance.max() + 1e-12)
        else:
            closeness = np.zeros(len(prefix))
        return prefix + _CLOSENESS_SPAN * closeness

    def _search(self, queries: list[str], k: int) -> SearchResult:
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        word_scores = self._hybrid_scores(queries) if self._words is not None else None
        for i, query in enumerate(queries):
            generated = list(dict.fromkeys(parse_codes(query)))[:MAX_CODES_PER_OUTPUT]
            if not generated:
                continue
            best = np.max([self.item_scores(code) for code in generated], axis=0)
            if word_scores is not None:
                best = best + self.config.hybrid_weight * word_scores[i]
            top = np.argpartition(-best, k - 1)[:k] if k < len(best) else np.arange(len(best))
            top = top[np.lexsort((top, -best[top]))]  # best first; ties by catalog row, deterministically
            rows[i, :len(top)] = top
            scores[i, :len(top)] = best[top]
        return rows_result(rows, scores)

    def _hybrid_scores(self, queries: list[str]) -> np.ndarray:
        """BM25 scores of the words beside the codes, per item, scaled to [0, 1) per query."""
        texts = [strip_codes(q) for q in queries]
        found = self._words.search(texts, len(self.catalog))
        dense = np.zeros((len(queries), len(self.catalog)))
        for i, (ranked, ranked_scores) in enumerate(zip(found.rows, found.scores)):
            keep = ranked >= 0
            if keep.any():
                values = ranked_scores[keep].astype(np.float64)
                dense[i, ranked[keep]] = values / (values.max() * (1 + 1e-9)) if values.max() > 0 else 0
        return dense
