"""BM25 over the catalog texts, with two engines that score identically.

- `PyseriniBM25` (engine `pyserini`): a Lucene index built and searched by Anserini, the Java
  library under pyserini. Reference scores; Anserini rounds them to 4 decimals and lowers tied
  scores by 1e-6 per tie so that the scores sort like the ranking.
- `Bm25sBM25` (engine `bm25s`): the same BM25 in numpy via the `bm25s` package, fed with the terms
  of `retrievers.analysis` (a copy of Lucene's English analyzer) and Lucene's document-length
  encoding, so it ranks like Lucene without a JVM.

Both engines share the query handling: control characters and lone surrogates become spaces,
queries are cut after `max_query_terms` words, a query without any index term gets an all-padding
row, and equal scores are ordered by catalog row.

Example (the embedded Amazon Games catalog):
    >>> retriever = Bm25sBM25(catalog, RetrieverConfig(engine="bm25s"))         # doctest: +SKIP
    >>> result = retriever.search(["mario kart"], k=3)                           # doctest: +SKIP
    >>> [catalog.titles[row] for row in result.rows[0]], result.scores[0]       # doctest: +SKIP
    (['Mario Kart 7', 'Mario Kart DS', 'Mario Kart 64'], array([6.133207, 6.133207, 6.133207], dtype=float32))
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bm25s
import numpy as np
from bm25s.scoring import _compute_relevance_from_scores_jit_ready
from numba import njit
from tqdm.auto import tqdm

from rec_rl.config import CodesConfig, RetrieverConfig
from rec_rl.data.catalog import Catalog
from retrievers import analysis
from retrievers.base import Retriever, SearchResult, rows_result
from rec_rl.index_cache import cached_index

INDEX_FORMAT = 1  # bump when what an index holds changes, so old cache entries are not reused

# bm25s's own scoring loop (per term in query order, per posting, float32 adds: its numpy path's sums
# exactly), compiled without the GIL so that `retriever.threads` queries score at once. bm25s's numba
# retrieval would also select the top k, but breaks ties by heap order; rec-rl orders them by row.
_score_postings = njit(nogil=True)(_compute_relevance_from_scores_jit_ready)


def _padding(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)


class PyseriniBM25(Retriever):
    """BM25 with Anserini's Lucene index (`retriever.engine=pyserini`).

    The index is cached by catalog and Anserini version only: k1 and b are search-time settings.
    Documents are `{"id": zero-padded row, "contents": text}`; zero padding makes Anserini's
    tie-break (ids in string order) the row order.
    """

    def __init__(self, catalog: Catalog, config: RetrieverConfig):
        from retrievers.java import start_jvm

        self.catalog = catalog
        self.max_query_terms = analysis.check_query_terms(config.max_query_terms)
        self.threads = max(1, config.threads)
        jar = start_jvm()
        self.index_dir = cached_index(
            "bm25-pyserini", catalog, {"format": INDEX_FORMAT, "anserini": jar.name},
            lambda folder: self._build(folder, config.threads), config.cache_dir)
        from jnius import autoclass

        self._searcher = autoclass("io.anserini.search.SimpleSearcher")(str(self.index_dir))
        self._searcher.set_bm25(float(config.k1), float(config.b))
        self._array_list = autoclass("java.util.ArrayList")

    def _build(self, folder: Path, threads: int) -> None:
        """Index every catalog text with Anserini's SimpleIndexer (DefaultEnglishAnalyzer)."""
        from jnius import autoclass

        indexer = autoclass("io.anserini.index.SimpleIndexer")(str(folder), False, max(1, threads))
        width = len(str(len(self.catalog) - 1))
        batch = 5000
        with tqdm(total=len(self.catalog), desc="bm25 index (pyserini)", unit="item") as progress:
            for start in range(0, len(self.catalog), batch):
                texts = self.catalog.texts[start:start + batch]
                indexer.addRawDocuments([
                    json.dumps({"id": str(row).zfill(width), "contents": analysis.clean_text(text)})
                    for row, text in enumerate(texts, start)])
                progress.update(len(texts))
        indexer.close()

    def _search(self, queries: list[str], k: int) -> SearchResult:
        rows, scores = _padding(len(queries), k)
        texts, qids = self._array_list(), self._array_list()
        for i, query in enumerate(queries):
            texts.add(analysis.prepare_query(query, self.max_query_terms))
            qids.add(str(i))
        found = self._searcher.batch_search(texts, qids, int(k), self.threads)
        for entry in found.entrySet().toArray():
            i = int(entry.getKey())
            for rank, hit in enumerate(entry.getValue()):
                rows[i, rank] = int(hit.docid)
                scores[i, rank] = hit.score
        return rows_result(rows, scores)


# Lucene stores each document's length in one byte (SmallFloat.intToByte4): exact below 40 terms,
# then 4 significant bits. BM25 sees the decoded length, so the bm25s engine encodes lengths the same way.
def _int4_to_long(value: np.ndarray) -> np.ndarray:
    bits, shift = value & 0x07, (value >> 3) - 1
    return np.where(shift == -1, bits, (bits | 0x08) << np.maximum(shift, 0))


def _long_to_int4(value: np.ndarray) -> np.ndarray:
    value = value.astype(np.int64)
    num_bits = np.frexp(value.astype(np.float64))[1]  # the bit length, exact below 2**53
    shift = np.maximum(num_bits - 4, 0)
    encoded = ((value >> shift) & 0x07) | ((shift + 1) << 3)
    return np.where(num_bits < 4, value, encoded)


_NUM_FREE_VALUES = 255 - 231  # 231 = longToInt4(Integer.MAX_VALUE)


def lucene_length(length: np.ndarray) -> np.ndarray:
    """Document lengths as Lucene's BM25 sees them after its one-byte norm encoding.

    Example:
        >>> lucene_length(np.array([3, 39, 40, 41, 100])).tolist()
        [3, 39, 40, 40, 96]
    """
    length = np.asarray(length, np.int64)
    free = length < _NUM_FREE_VALUES
    rest = np.maximum(length - _NUM_FREE_VALUES, 0)
    return np.where(free, length, _NUM_FREE_VALUES + _int4_to_long(_long_to_int4(rest)))


class LuceneScoredBM25(bm25s.BM25):
    """`bm25s.BM25` (method "lucene") whose index scores terms exactly as Lucene's BM25Similarity.

    bm25s counts every document in N and the average length and uses exact lengths; Lucene counts
    only documents with at least one term and uses its one-byte length encoding.
    """

    def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True,
                             leave_progress=False) -> dict:
        n_docs, n_vocab = len(corpus_token_ids), len(unique_token_ids)
        self.nonoccurrence_array = None  # only BM25L and BM25+ use one
        lengths = np.fromiter((len(ids) for ids in corpus_token_ids), np.int64, n_docs)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        term_of = np.fromiter((t for ids in corpus_token_ids for t in ids), np.int64, int(lengths.sum()))
        # One entry per (term, document) pair, sorted by term then document: the CSC layout of bm25s.
        pairs, tf = np.unique(term_of * n_docs + doc_of, return_counts=True)
        term, doc = pairs // n_docs, pairs % n_docs
        df = np.bincount(term, minlength=n_vocab)
        doc_count = int((lengths > 0).sum())
        avg_length = np.float32(lengths.sum() / doc_count) if doc_count else np.float32(1)
        idf = np.log(1 + (doc_count - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = (self.k1 * ((1 - self.b) + self.b * lucene_length(lengths) / avg_length)).astype(np.float32)
        tf = tf.astype(np.float32)
        data = (idf[term] * tf / (tf + norm[doc])).astype(self.dtype)
        indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        return {"data": data, "indices": doc.astype(self.int_dtype), "indptr": indptr, "num_docs": n_docs}


def top_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best rows with a positive score, best first, equal scores in row order.

    Example:
        >>> top_rows(np.array([0.5, 0.0, 2.0, 0.5], np.float32), 3)
        (array([2, 0, 3]), array([2. , 0.5, 0.5], dtype=float32))
    """
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        cut = len(candidates) - k
        kth_best = np.partition(scores[candidates], cut)[cut]
        candidates = candidates[scores[candidates] >= kth_best]  # keeps every row tied with the k-th
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return candidates[order], scores[candidates[order]]


class Bm25sBM25(Retriever):
    """BM25 in numpy with `bm25s` (`retriever.engine=bm25s`), ranking like the pyserini engine."""

    def __init__(self, catalog: Catalog, config: RetrieverConfig):
        self.catalog = catalog
        self.max_query_terms = analysis.check_query_terms(config.max_query_terms)
        self.k1, self.b = float(config.k1), float(config.b)
        settings = {"format": INDEX_FORMAT, "analyzer": analysis.ANALYZER_VERSION, "k1": self.k1, "b": self.b}
        folder = cached_index("bm25-bm25s", catalog, settings, self._build, config.cache_dir)
        self.bm25 = LuceneScoredBM25.load(folder)
        self.threads = max(1, config.threads)

    def _build(self, folder: Path) -> None:
        vocab: dict[str, int] = {}
        corpus_ids = [[vocab.setdefault(term, len(vocab)) for term in analysis.analyze(analysis.clean_text(text))]
                      for text in tqdm(self.catalog.texts, desc="bm25 index (bm25s)", unit="item")]
        model = LuceneScoredBM25(k1=self.k1, b=self.b, method="lucene")
        model.index((corpus_ids, vocab), create_empty_token=False, show_progress=False)
        model.save(folder, show_progress=False)

    def query_term_ids(self, query: str) -> list[int]:
        """Vocabulary ids of the query's terms, repeats kept (Lucene weights a term by its count)."""
        vocab = self.bm25.vocab_dict
        terms = analysis.analyze(analysis.clean_text(query), self.max_query_terms)
        return [vocab[term] for term in terms if term in vocab]

    def scores(self, ids: list[int]) -> np.ndarray:
        """Every document's BM25 score for the query terms `ids`: bm25s's `get_scores_from_ids`, compiled.

        At 1M items a 3-title query's terms hold ~0.8M postings (measured on the benchmark's synthetic
        catalog), all of which any exact term-at-a-time scoring adds; compiled, the loop adds them about
        twice as fast as `np.add.at` does, with the same float32 sums, and without holding the GIL.
        """
        index = self.bm25.scores
        return _score_postings(index["data"], index["indptr"], index["indices"], index["num_docs"],
                               np.asarray(ids, index["indices"].dtype), np.dtype(self.bm25.dtype))

    def _search(self, queries: list[str], k: int) -> SearchResult:
        rows, scores = _padding(len(queries), k)
        term_ids = [self.query_term_ids(query) for query in queries]

        def one(i: int) -> None:
            if term_ids[i]:
                found, found_scores = top_rows(self.scores(term_ids[i]), k)
                rows[i, :len(found)], scores[i, :len(found)] = found, found_scores

        if self.threads == 1 or len(queries) == 1:
            for i in range(len(queries)):
                one(i)
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(one, range(len(queries))))
        return rows_result(rows, scores)


def build(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    """The BM25 retriever of `retriever.engine` (the registry's entry point, `rec_rl.config.RETRIEVER_BACKENDS`)."""
    engines = {"pyserini": PyseriniBM25, "bm25s": Bm25sBM25}
    if config.engine not in engines:
        raise ValueError(f"retriever.engine is {config.engine!r}; expected one of {sorted(engines)}")
    return engines[config.engine](catalog, config)
