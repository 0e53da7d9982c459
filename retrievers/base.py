"""Shared argument checks and defaults of the collection-backed retrievers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.errors import ConfigError, QueryError


def check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise QueryError("query is empty or whitespace; pass the question or keywords to search for")
    return query


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return k


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
