"""Dense retrieval: the collection's encoder embeds the query; the store finds the nearest chunks
(FAISS in a directory collection, pgvector in PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.checks import check_k, check_query
from rag.errors import ConfigError
from rag.retrievers.base import Searchable, merge_filters
from rag.types import Hit


class DenseRetriever:
    """Embedding (cosine) retrieval.

    Example:
        >>> DenseRetriever(Collection.open("kb"), k=5).retrieve("how do I rotate keys?")  # doctest: +SKIP
    """

    name = "dense"

    def __init__(self, collection: Searchable, k: int = 10, filters: Mapping[str, Any] | None = None) -> None:
        if not collection.has_dense or collection.encoder is None:
            raise ConfigError(
                f"collection {collection.location} has no dense index (created with encoder=None); use mode='bm25'"
            )
        self.collection = collection
        self.k = check_k(k)
        self.filters = filters

    def retrieve(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        check_query(query)
        k = check_k(self.k if k is None else k)
        assert self.collection.encoder is not None
        q = self.collection.encoder.encode([query])  # outside the lock: a write need not wait for it
        with self.collection.reading():
            return self.collection.dense_hits(q, k, merge_filters(self.filters, filters))
