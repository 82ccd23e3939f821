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

Distances are |r|^2 - 2 r.v + |v|^2 with one matrix product per block of codes (float32, like the
embeddings; items closer than ~1e-6 in closeness may swap places against an exact computation).

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
# Queries per block, and distinct codes per matrix product (a 1M-item catalog: 32 x 1M scores, 256 MB).
_BLOCK = 32


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
        self._norms: dict[bytes, np.ndarray] = {}
        self._words = None
        if config.hybrid_weight > 0:
            from retrievers.bm25 import Bm25sBM25

            self._words = Bm25sBM25(catalog, retriever_config or RetrieverConfig(engine="bm25s"))

    def invalid_output(self, query: str) -> bool:
        """True unless `query` holds at least one complete code of a catalog item."""
        return not any(code in self._item_codes for code in parse_codes(query))

    def code_scores(self, codes: list[tuple[int, ...]]) -> np.ndarray:
        """Every item's score for each generated code, shape (len(codes), items): shared prefix length +
        closeness (module docstring). The distances of all codes come from one matrix product."""
        scores = np.zeros((len(codes), len(self.catalog)), np.float64)
        by_mask: dict[bytes, tuple[np.ndarray, list[tuple[int, np.ndarray]]]] = {}
        for j, code in enumerate(codes):
            depth = min(len(code), self.codes.levels)
            matches = self.codes.codes[:, :depth] == np.asarray(code[:depth], dtype=np.int64)
            scores[j] = np.cumprod(matches, axis=1).sum(axis=1)
            vector, mask = self.codes.decode(code)
            if mask.any():
                by_mask.setdefault(mask.tobytes(), (mask, []))[1].append((j, vector[mask]))
        for key, (mask, decoded) in by_mask.items():
            rows, vectors = zip(*decoded)
            vectors = np.stack(vectors).astype(np.float32)
            # |r - v|^2 = |r|^2 - 2 r.v + |v|^2: one product over the catalog for all codes, not a pass per code
            product = self._reference(mask) @ vectors.T
            distance = np.maximum(self._squared_norms(key, mask)[:, None] - 2 * product + (vectors ** 2).sum(1), 0)
            scores[list(rows)] += _CLOSENESS_SPAN * (1.0 - distance / (distance.max(axis=0) + 1e-12)).T
        return scores

    def _reference(self, mask: np.ndarray) -> np.ndarray:
        """The catalog's reference vectors over the dimensions `mask` keeps: a view when they are one run
        (all of them for rq, the first sub-vectors for opq_pq), else a copy (a code with a skipped level)."""
        columns = np.flatnonzero(mask)
        if columns[-1] - columns[0] + 1 == len(columns):
            return self.codes.reference[:, columns[0]:columns[-1] + 1]
        return self.codes.reference[:, columns]

    def _squared_norms(self, key: bytes, mask: np.ndarray) -> np.ndarray:
        """|reference|^2 over the masked dimensions, per item (cached: a handful of masks ever occur)."""
        if key not in self._norms:
            self._norms[key] = (self._reference(mask).astype(np.float64) ** 2).sum(1)
        return self._norms[key]

    def _search(self, queries: list[str], k: int) -> SearchResult:
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        word_scores = self._hybrid_scores(queries) if self._words is not None else None
        generated = [list(dict.fromkeys(parse_codes(query)))[:MAX_CODES_PER_OUTPUT] for query in queries]
        # Queries go in blocks and their distinct codes in chunks, which bounds memory at 1M items.
        for first in range(0, len(queries), _BLOCK):
            block = range(first, min(first + _BLOCK, len(queries)))
            distinct = list(dict.fromkeys(code for i in block for code in generated[i]))
            best: dict[int, np.ndarray] = {}
            for start in range(0, len(distinct), _BLOCK):
                chunk = {code: j for j, code in enumerate(distinct[start:start + _BLOCK])}
                chunk_scores = self.code_scores(list(chunk))
                for i in block:
                    mine = [chunk[code] for code in generated[i] if code in chunk]
                    if mine:
                        top = chunk_scores[mine].max(axis=0)
                        best[i] = np.maximum(best[i], top) if i in best else top
            for i, item_scores in best.items():
                if word_scores is not None:
                    item_scores = item_scores + self.config.hybrid_weight * word_scores[i]
                top = np.argpartition(-item_scores, k - 1)[:k] if k < len(item_scores) else np.arange(len(item_scores))
                top = top[np.lexsort((top, -item_scores[top]))]  # best first; ties by catalog row, deterministically
                rows[i, :len(top)] = top
                scores[i, :len(top)] = item_scores[top]
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


def build(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    """The code retriever over `codes` (the registry's entry point, `rec_rl.config.RETRIEVER_BACKENDS`)."""
    return CodeRetriever(catalog, codes, config)
