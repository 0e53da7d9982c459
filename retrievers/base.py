"""What the collection-backed retrievers share: the collection interface they search, and standing filters."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from rag.errors import ConfigError
from rag.protocols import Encoder, Retriever
from rag.types import Hit


class Searchable(Protocol):
    """What :class:`~rag.retrievers.bm25.BM25Retriever` and :class:`~rag.retrievers.dense.DenseRetriever` need of
    a collection: its ranked runs, a consistent view to read them in, and its encoder. Every
    :class:`~rag.indexers.collection.Collection` is one."""

    location: str
    encoder: Encoder | None

    @property
    def has_dense(self) -> bool: ...

    def reading(self) -> contextlib.AbstractContextManager[None]: ...

    def fields(self) -> set[str]: ...

    def bm25_hits(self, query: str, k: int, filters: Mapping[str, Any] | None) -> list[Hit]: ...

    def dense_hits(self, query_vec: np.ndarray, k: int, filters: Mapping[str, Any] | None) -> list[Hit]: ...

    def retriever(
        self, mode: str = "hybrid", k: int = 10, filters: Mapping[str, Any] | None = None, **options: Any
    ) -> Retriever: ...


def merge_filters(base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Combine a retriever's standing filters with a call's (both must hold)."""
    if not base and not extra:
        return None
    out = dict(base or {})
    for key, cond in (extra or {}).items():
        if key in out and out[key] != cond:
            raise ConfigError(
                f"filter field {key!r} is set both by the retriever ({out[key]!r}) and the call ({cond!r}); "
                "set it in one place"
            )
        out[key] = cond
    return out
