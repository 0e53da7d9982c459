"""Checks every layer shares: the arguments of a search (a query, ``k``) and the integrity of files (sha256).

Part of the kernel: imports nothing of the project but :mod:`rag.errors`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, QueryError


def check_query(query: Any) -> str:
    """``query`` when it is a non-empty string; :class:`QueryError` otherwise."""
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise QueryError("query is empty or whitespace; pass the question or keywords to search for")
    return query


def check_k(k: Any) -> int:
    """``k`` when it is a positive integer; :class:`ConfigError` otherwise."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return k


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def json_digest(data: dict[str, Any]) -> str:
    """sha256 of ``data``'s canonical JSON without its ``checksum`` field (how manifests seal themselves)."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()
