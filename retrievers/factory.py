"""The one place that turns a `RetrieverConfig` into a retriever."""

from __future__ import annotations

from rec_rl.config import CodesConfig, RetrieverConfig
from rec_rl.data.catalog import Catalog
from retrievers.base import Retriever


def build_retriever(config: RetrieverConfig, catalog: Catalog, codes: CodesConfig | None = None) -> Retriever:
    """The retriever `config` describes over `catalog`, its index loaded from or built into the cache.

    The codes backend reads its settings from `codes` (the run config's `codes` section).

    Example:
        >>> retriever = build_retriever(RetrieverConfig(backend="bm25", engine="bm25s"), catalog)  # doctest: +SKIP
        >>> retriever.search(["halo"], k=10).item_ids(catalog)                                     # doctest: +SKIP
    """
    if config.backend == "bm25":
        from retrievers.bm25 import Bm25sBM25, PyseriniBM25

        engines = {"pyserini": PyseriniBM25, "bm25s": Bm25sBM25}
        if config.engine not in engines:
            raise ValueError(f"retriever.engine is {config.engine!r}; expected one of {sorted(engines)}")
        return engines[config.engine](catalog, config)
    if config.backend == "dense":
        from retrievers.dense import DenseRetriever

        return DenseRetriever(catalog, config)
    if config.backend == "codes":
        from retrievers.codes import CodeRetriever

        return CodeRetriever(catalog, codes or CodesConfig(), config)
    raise ValueError(f"retriever.backend is {config.backend!r}; expected 'bm25', 'dense' or 'codes'")
