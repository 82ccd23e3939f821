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

The closeness is 1 / (1 + distance / s), s the catalog's mean squared norm: it needs no pass over the
catalog, so the search (`retrievers.code_index.CodeIndex`) computes distances only where the top k can
come from. Distances are |r|^2 - 2 r.v + |v|^2 in float32 products, like the embeddings (items closer than
~1e-6 in closeness may swap places against an exact computation).

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
from retrievers.code_index import CLOSENESS_SPAN, CodeIndex, best_first

# A score is prefix length + CLOSENESS_SPAN x a closeness in (0, 1], and + hybrid evidence in [0, hybrid_weight):
# prefix length dominates as long as the hybrid weight is below 1.
# Codes merged per output: a degenerate output can repeat thousands; the first distinct ones are what
# beams or a short list hold.
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
        self.index = CodeIndex(self.codes)
        self._words = None
        if config.hybrid_weight > 0:
            from retrievers.bm25 import Bm25sBM25

            self._words = Bm25sBM25(catalog, retriever_config or RetrieverConfig(engine="bm25s"))

    def invalid_output(self, query: str) -> bool:
        """True unless `query` holds at least one complete code of a catalog item."""
        return not any(code in self._item_codes for code in parse_codes(query))

    def code_scores(self, codes: list[tuple[int, ...]]) -> np.ndarray:
        """Every item's score for each generated code, shape (len(codes), items): shared prefix length +
        closeness (module docstring), computed over the whole catalog. The hybrid search adds word evidence
        to these; the plain search gets the same top k from `CodeIndex` without the full pass."""
        scores = np.zeros((len(codes), len(self.catalog)), np.float64)
        for j, code in enumerate(codes):
            depth = min(len(code), self.codes.levels)
            matches = self.codes.codes[:, :depth] == np.asarray(code[:depth], dtype=np.int64)
            scores[j] = np.cumprod(matches, axis=1).sum(axis=1)
            vector, mask = self.codes.decode(code)
            if mask.any():
                data = self.index.mask_data(mask)
                distance = self.index.catalog_distances(vector[mask], data)
                scores[j] += CLOSENESS_SPAN * self.index.closeness(distance, data)
        return scores

    def _search(self, queries: list[str], k: int) -> SearchResult:
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        word_scores = self._hybrid_scores(queries) if self._words is not None else None
        for i, query in enumerate(queries):
            generated = list(dict.fromkeys(parse_codes(query)))[:MAX_CODES_PER_OUTPUT]
            if not generated:
                continue
            if word_scores is not None:
                item_scores = self.code_scores(generated).max(axis=0) + self.config.hybrid_weight * word_scores[i]
                top, top_scores = best_first(np.arange(len(item_scores)), item_scores, k)
            else:
                # Several codes merge: each item keeps its best score. The union of each code's top k holds
                # the merged top k (an item outside a code's top k scores below k items there).
                found = [self.index.top_k(code, k) for code in generated]
                top, top_scores = merge_best(np.concatenate([r for r, _ in found]),
                                             np.concatenate([s for _, s in found]), k)
            rows[i, :len(top)] = top
            scores[i, :len(top)] = top_scores
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


def merge_best(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` rows by their best score where rows repeat, best first, ties by row."""
    order = np.lexsort((-scores, rows))  # by row, best score first within a row
    rows, scores = rows[order], scores[order]
    first = np.r_[True, rows[1:] != rows[:-1]]
    return best_first(rows[first], scores[first], k)


def build(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    """The code retriever over `codes` (the registry's entry point, `rec_rl.config.RETRIEVER_BACKENDS`)."""
    return CodeRetriever(catalog, codes, config)
