"""Frozen retrievers over a catalog: BM25 (pyserini or bm25s engine) and dense (sentence-transformers + faiss)."""

from retrievers.base import Retriever, SearchResult
from retrievers.factory import build_retriever

__all__ = ["Retriever", "SearchResult", "build_retriever"]
