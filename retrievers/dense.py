"""Dense retrieval: a sentence-transformers model on CPU and a faiss inner-product index.

Catalog embeddings are normalised (inner product = cosine) and cached per catalog and model
(`model_identity`); a flat faiss index is made from them in memory (instant), an HNSW graph is
cached too (building one takes seconds).
The model itself is loaded only when a query needs encoding: a query that is exactly a catalog
text (evaluation's "last history title" queries) reuses that item's cached embedding.

Example:
    >>> retriever = DenseRetriever(catalog, RetrieverConfig(backend="dense"))     # doctest: +SKIP
    >>> retriever.search(["open world racing game"], k=5).item_ids(catalog)       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from rec_rl.config import CodesConfig, RetrieverConfig
from rec_rl.data.catalog import Catalog
from rec_rl.embeddings import catalog_embeddings, embedding_settings, encode_texts, load_model, resolve_model
from rec_rl.index_cache import cached_index
from retrievers import analysis
from retrievers.base import Retriever, SearchResult, rows_result

HNSW_FILE = "hnsw.faiss"


class DenseRetriever(Retriever):
    """Cosine similarity between sentence-transformers embeddings (`retriever.backend=dense`)."""

    def __init__(self, catalog: Catalog, config: RetrieverConfig):
        self.catalog = catalog
        self.config = config
        self.max_query_terms = analysis.check_query_terms(config.max_query_terms)
        self.model_path = resolve_model(config.model)
        self._model = None
        self.embeddings = catalog_embeddings(catalog, config.model, config.batch_size, config.cache_dir)
        self.index = self._load_index(embedding_settings(self.model_path))
        self._row_of_text: dict[str, int] = {}  # the first row of each catalog text
        for row, text in enumerate(catalog.texts):
            if text.strip():  # empty queries get no hits, even if some item's text is empty
                self._row_of_text.setdefault(text, row)

    @property
    def model(self):
        """The encoder, loaded on first use."""
        if self._model is None:
            self._model = load_model(self.model_path)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 embeddings of `texts`, one row each."""
        return encode_texts(self.model, texts, self.config.batch_size)

    def _load_index(self, embedding_settings: dict) -> faiss.Index:
        """The faiss index over the embeddings: flat is built in memory, HNSW cached on disk."""
        dim = self.embeddings.shape[1]
        if self.config.index == "flat":
            index = faiss.IndexFlatIP(dim)
            index.add(self.embeddings)
            return index
        if self.config.index != "hnsw":
            raise ValueError(f"retriever.index is {self.config.index!r}; expected 'flat' or 'hnsw'")
        settings = {**embedding_settings, "hnsw_m": self.config.hnsw_m,
                    "hnsw_ef_construction": self.config.hnsw_ef_construction}
        folder = cached_index("dense-hnsw", self.catalog, settings, self._build_hnsw, self.config.cache_dir)
        return faiss.read_index(str(folder / HNSW_FILE))

    def _build_hnsw(self, folder: Path) -> None:
        index = faiss.IndexHNSWFlat(self.embeddings.shape[1], self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config.hnsw_ef_construction
        batch = 2048
        for start in tqdm(range(0, len(self.embeddings), batch), desc="hnsw index", unit="batch"):
            index.add(self.embeddings[start:start + batch])
        faiss.write_index(index, str(folder / HNSW_FILE))

    def query_vectors(self, queries: list[str]) -> np.ndarray:
        """Query embeddings: cached catalog embeddings for exact catalog texts, the model for the rest."""
        vectors = np.zeros((len(queries), self.embeddings.shape[1]), np.float32)
        to_encode: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            row = self._row_of_text.get(query)
            if row is not None:
                vectors[i] = self.embeddings[row]
            else:
                text = analysis.prepare_query(query, self.max_query_terms)
                if text.strip():  # a query without any text gets no hits (its vector stays zero)
                    to_encode.setdefault(text, []).append(i)
        if to_encode:
            for text, vector in zip(to_encode, self.encode(list(to_encode))):
                vectors[to_encode[text]] = vector
        return vectors

    def _search(self, queries: list[str], k: int) -> SearchResult:
        vectors = self.query_vectors(queries)
        faiss.omp_set_num_threads(max(1, self.config.threads))  # process-wide in faiss
        if self.config.index == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.hnsw_ef_search, k))
            scores, rows = self.index.search(vectors, k, params=params)
        else:
            scores, rows = self.index.search(vectors, k)
        empty = ~vectors.any(axis=1)
        rows[empty] = -1
        scores[rows < 0] = -np.inf
        return rows_result(rows, scores)


def build(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    """The dense retriever (the registry's entry point, `rec_rl.config.RETRIEVER_BACKENDS`)."""
    return DenseRetriever(catalog, config)
