"""The one place that turns a `RetrieverConfig` into a retriever.

Backends are registered in `rec_rl.config.RETRIEVER_BACKENDS` (name -> module, and what its queries are); each
module has a `build(catalog, retriever_config, codes_config)`. Adding a backend is one registry entry and its
own module: nothing here changes.
"""

from __future__ import annotations

import importlib

from rec_rl.config import RETRIEVER_BACKENDS, CodesConfig, RetrieverConfig
from rec_rl.data.catalog import Catalog
from retrievers.base import Retriever


def build_retriever(config: RetrieverConfig, catalog: Catalog, codes: CodesConfig | None = None) -> Retriever:
    """The retriever `config` describes over `catalog`, its index loaded from or built into the cache.

    The codes backend reads its settings from `codes` (the run config's `codes` section).

    Example:
        >>> retriever = build_retriever(RetrieverConfig(backend="bm25", engine="bm25s"), catalog)  # doctest: +SKIP
        >>> retriever.search(["halo"], k=10).item_ids(catalog)                                     # doctest: +SKIP
    """
    if config.backend not in RETRIEVER_BACKENDS:
        raise ValueError(f"retriever.backend is {config.backend!r}; expected one of {sorted(RETRIEVER_BACKENDS)}")
    module = importlib.import_module(RETRIEVER_BACKENDS[config.backend].module)
    return module.build(catalog, config, codes or CodesConfig())
