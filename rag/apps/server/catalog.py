"""What ``rag serve`` serves: its collections by name, each with its pipeline (built on first use) and write lock,
and the one LLM they share."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException


class Served:
    """One served collection: the open collection, its pipeline (built on first use) and its write lock."""

    def __init__(self, name: str, kb: Any, make_rag: Any, mode: str | None = None) -> None:
        self.name, self.kb, self._make_rag = name, kb, make_rag
        self.mode = mode or ("hybrid" if kb.has_dense else "bm25")  # a BM25-only collection has no hybrid
        self._rag: Any = None
        self._build = threading.Lock()
        self.writing = threading.Lock()  # one write at a time in this process; the next one waits

    def rag(self) -> Any:
        with self._build:
            if self._rag is None:
                self._rag = self._make_rag(self.kb, self.mode)
            return self._rag

    def warm(self) -> None:
        """Load the indexes, the encoder, the pipeline and a local LLM now, so the first request is not slow."""
        self.kb.load()
        load = getattr(self.rag().generator, "load", None)
        if callable(load):
            load()

    def info(self) -> dict[str, Any]:
        kb = self.kb
        return {"documents": len(kb), "chunks": kb.num_chunks, "generation": kb.generation, "read_only": kb.read_only}


class Catalog:
    """The served collections by name; a request names one, or gets the first (the default)."""

    def __init__(self, served: Mapping[str, Served]) -> None:
        self.served = dict(served)
        self.default = next(iter(self.served))

    def pick(self, name: str | None) -> Served:
        """The collection a request names (404 for an unknown name)."""
        s = self.served.get(name or self.default)
        if s is None:
            raise HTTPException(404, f"unknown collection {name!r}; served: {sorted(self.served)}")
        return s


class SharedLLM:
    """One LLM in memory for every served collection, made from its spec on the first question."""

    def __init__(self, llm: str | Any, max_new_tokens: int) -> None:
        self.llm, self.max_new_tokens = llm, max_new_tokens
        self._made: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._made is None:
                if isinstance(self.llm, str):
                    from rag.models.generate import make_generator  # torch & transformers, loaded when first asked

                    self._made = make_generator(self.llm, max_new_tokens=self.max_new_tokens)
                else:
                    self._made = self.llm
            return self._made


def open_collections(collections: Any, read_only: bool) -> dict[str, Any]:
    """``{name: Collection}`` from a path, a list of paths (named by folder) or a mapping of names to paths."""
    from rag.errors import ConfigError
    from rag.indexers.collection import Collection, collection_name

    if isinstance(collections, str | Path | Collection):
        collections = [collections]
    items = (
        list(collections.items())
        if isinstance(collections, Mapping)
        else [(c.name if isinstance(c, Collection) else collection_name(c), c) for c in collections]
    )
    if not items:
        raise ConfigError("no collection to serve; pass --collection DIR (repeat it to serve several)")
    out: dict[str, Any] = {}
    for name, c in items:
        if name in out:
            raise ConfigError(f"two collections are named {name!r}; serve them as NAME=DIR with distinct names")
        out[name] = c if isinstance(c, Collection) else Collection.open(c, read_only=read_only)
    return out
