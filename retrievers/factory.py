"""The one place that turns a `RetrieverConfig` into a retriever: the registry of backends.

Adding a backend is one entry in `BACKENDS` and its own module: a builder `(catalog, config, codes) -> Retriever`
and what its queries are (`reads`: "text" for a search query, "codes" for semantic item codes), which picks the
route that trains a policy for it (`rec_rl.training.routes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rec_rl.config import CodesConfig, RetrieverConfig
from rec_rl.data.catalog import Catalog
from retrievers.base import Retriever


@dataclass(frozen=True)
class Backend:
    build: Callable[[Catalog, RetrieverConfig, CodesConfig], Retriever]
    reads: str  # "text" (a search query) or "codes" (semantic item codes)


def _bm25(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    from retrievers.bm25 import Bm25sBM25, PyseriniBM25

    engines = {"pyserini": PyseriniBM25, "bm25s": Bm25sBM25}
    if config.engine not in engines:
        raise ValueError(f"retriever.engine is {config.engine!r}; expected one of {sorted(engines)}")
    return engines[config.engine](catalog, config)


def _dense(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    from retrievers.dense import DenseRetriever

    return DenseRetriever(catalog, config)


def _codes(catalog: Catalog, config: RetrieverConfig, codes: CodesConfig) -> Retriever:
    from retrievers.codes import CodeRetriever

    return CodeRetriever(catalog, codes, config)


BACKENDS: dict[str, Backend] = {
    "bm25": Backend(_bm25, reads="text"),
    "dense": Backend(_dense, reads="text"),
    "codes": Backend(_codes, reads="codes"),
}


def backend(name: str) -> Backend:
    """The registered backend `name`, or an error naming `retriever.backend` and the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"retriever.backend is {name!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def build_retriever(config: RetrieverConfig, catalog: Catalog, codes: CodesConfig | None = None) -> Retriever:
    """The retriever `config` describes over `catalog`, its index loaded from or built into the cache.

    The codes backend reads its settings from `codes` (the run config's `codes` section).

    Example:
        >>> retriever = build_retriever(RetrieverConfig(backend="bm25", engine="bm25s"), catalog)  # doctest: +SKIP
        >>> retriever.search(["halo"], k=10).item_ids(catalog)                                     # doctest: +SKIP
    """
    return backend(config.backend).build(catalog, config, codes or CodesConfig())
