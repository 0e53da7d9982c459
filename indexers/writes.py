"""What the write paths of every collection share: the result of a write, the in-process read-write lock, and
chunking and embedding documents before anything is written (the directory's write path:
:mod:`rag.indexers.directory.write`; PostgreSQL's: :mod:`rag.indexers.pg.write`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rag.errors import ConfigError
from rag.indexers.chunking import Chunker
from rag.indexers.store import index_text
from rag.protocols import Encoder
from rag.types import Doc

Prepared = Mapping[str, tuple[list[Doc], "np.ndarray | None"]]
"""Chunks and embeddings computed elsewhere, by document id (see :func:`chunk_and_embed`)."""


class Target(Protocol):
    """What the shared write helpers need of a collection (every :class:`~rag.indexers.collection.Collection`
    has it)."""

    location: str
    read_only: bool
    encoder: Encoder | None
    chunker: Chunker
    manifest: dict[str, Any]

    @property
    def has_dense(self) -> bool: ...


@dataclass(frozen=True)
class IndexResult:
    """What a write did: documents added, updated (content changed), unchanged, deleted; chunks."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0


def as_docs(docs: Iterable[Doc | str]) -> list[Doc]:
    out = []
    seen: set[str] = set()
    for d in docs:
        doc = Doc(text=d) if isinstance(d, str) else d
        if not isinstance(doc, Doc):
            raise ConfigError(f"expected Doc or str, got {type(d).__name__}")
        if not doc.text.strip():
            raise ConfigError(f"document {doc.id!r} has no text; drop it or give it text")
        if doc.id in seen:
            raise ConfigError(f"document id {doc.id!r} appears twice in one call; ids must be unique")
        seen.add(doc.id)
        out.append(doc)
    return out


class ReadWriteLock:
    """Many readers or one writer, within a process: searches hold it shared, the apply-and-commit step of a
    write holds it exclusively, so a search sees the collection either before or after a write, never half of
    it. Chunking and embedding happen outside it, so searches go on while a write embeds.

    A waiting writer goes first: new readers wait for it, so a steady stream of searches cannot starve a write.
    A thread that already reads may read again (a hybrid search reads once per run) without waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0  # writers waiting
        self._depth = threading.local()  # this thread's nested reads

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        with self._cond:
            while self._writer or (self._waiting and not depth):
                self._cond.wait()
            self._readers += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def check_writable(kb: Target) -> None:
    if kb.read_only:
        raise ConfigError(f"collection {kb.location} was opened read_only; open it with read_only=False to write")


def encode_texts(kb: Target, texts: Sequence[str], progress: bool) -> np.ndarray:
    assert kb.encoder is not None
    if not progress or len(texts) <= 256:
        return kb.encoder.encode(texts)
    from tqdm import tqdm

    out = []
    with tqdm(total=len(texts), desc="embedding", unit="chunk", disable=None) as bar:
        for i in range(0, len(texts), 256):
            out.append(kb.encoder.encode(texts[i : i + 256]))
            bar.update(len(out[-1]))
    return np.vstack(out)


def chunk_and_embed(
    kb: Target, docs: Sequence[Doc], progress: bool, prepared: Prepared | None = None
) -> tuple[dict[str, list[Doc]], np.ndarray | None]:
    """Each document's chunks, and the embeddings of all those chunks in order (None without a dense index).

    ``prepared`` maps a document id to chunks and embeddings computed elsewhere (Ray workers, by the same
    chunker and encoder); those documents are neither chunked nor embedded again."""
    if prepared is None:
        parts = {d.id: kb.chunker.split(d) for d in docs}
        texts = [index_text(c.text, c.meta) for d in docs for c in parts[d.id]]
        return parts, (encode_texts(kb, texts, progress) if kb.has_dense and texts else None)
    parts = {d.id: prepared[d.id][0] for d in docs}
    if not kb.has_dense or not any(parts.values()):
        return parts, None
    dim = int(kb.manifest["encoder"]["dim"])
    vecs = [np.asarray(prepared[d.id][1], dtype=np.float32).reshape(-1, dim) for d in docs]
    if any(len(v) != len(parts[d.id]) for v, d in zip(vecs, docs, strict=True)):
        raise ConfigError("prepared chunks and embeddings differ in number; give one embedding per chunk")
    return parts, np.vstack(vecs)
