"""BM25 retrieval over a collection (the engine lives in :mod:`rag.retrievers.bm25_index`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.checks import check_k, check_query
from rag.retrievers.base import Searchable, merge_filters
from rag.types import Hit


class BM25Retriever:
    """Sparse lexical retrieval.

    Example:
        >>> BM25Retriever(Collection.open("kb"), k=5).retrieve("rotate keys")  # doctest: +SKIP
    """

    name = "bm25"

    def __init__(self, collection: Searchable, k: int = 10, filters: Mapping[str, Any] | None = None) -> None:
        self.collection = collection
        self.k = check_k(k)
        self.filters = filters

    def retrieve(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        check_query(query)
        k = check_k(self.k if k is None else k)
        with self.collection.reading():  # one consistent view, even while this process writes
            return self.collection.bm25_hits(query, k, merge_filters(self.filters, filters))
