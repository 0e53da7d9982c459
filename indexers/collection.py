"""A collection: documents, chunks and their BM25 and dense indexes, behind one interface and two stores.

* a directory (the embedded default, :class:`~rag.indexers.directory.collection.DirectoryCollection`): DuckDB + FAISS +
  the BM25 payload in one folder, for one machine;
* a PostgreSQL database with pgvector (:class:`~rag.indexers.pg.collection.PgCollection`, extra ``pg``): the
  shared store when several processes or machines index and search; BM25 stays in the application.

:meth:`Collection.open` and :meth:`Collection.create` take either a directory or a ``postgresql://`` URL and
return the matching kind, so pipeline code does not change with the store. What both offer is defined here:
reads (:meth:`get`, :meth:`ids`, :meth:`fields`, :meth:`search`, :meth:`retriever`), writes (:meth:`add`,
:meth:`update`, :meth:`delete`, :meth:`rebuild`) and the ranked runs the retrievers use
(:meth:`bm25_hits`, :meth:`dense_hits`).

Example:
    >>> kb = Collection.create("kb", encoder=None)                 # doctest: +SKIP
    >>> kb = Collection.open("postgresql://app@db/rag?collection=kb")  # doctest: +SKIP
    >>> kb.add([Doc("Rotate the keys every 90 days.", id="keys")])  # doctest: +SKIP
    >>> kb.search("how often are keys rotated?", mode="bm25", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.indexers import writes
from rag.indexers.chunking import Chunker
from rag.indexers.writes import IndexResult
from rag.protocols import Encoder, Retriever
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.dense import DenseRetriever
from rag.retrievers.hybrid import Hybrid
from rag.types import Doc, Hit

if TYPE_CHECKING:
    from rag.retrievers.bm25_index import BM25Index  # numba: loaded with the first collection

MODES = ("bm25", "dense", "hybrid")

__all__ = ["MODES", "Collection", "IndexResult", "is_store_url"]


def is_store_url(where: str | Path) -> bool:
    """Whether ``where`` names a database store (``postgresql://...``) rather than a directory."""
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


def collection_exists(where: str | Path) -> bool:
    """Whether a collection exists at ``where`` (a directory with a manifest, or a schema in the database)."""
    return Collection.kind_for(where).exists(where)


def collection_name(where: str | Path) -> str:
    """A collection's short name: its directory's name, or the URL's ``collection`` parameter."""
    return Collection.kind_for(where).short_name(where)


class Collection(abc.ABC):
    """Documents plus their BM25 and dense indexes; open one with :meth:`open` or make one with :meth:`create`.

    Attributes every kind has: ``location`` (the directory or the URL without its password, for messages),
    ``name``, ``encoder``, ``read_only``, ``manifest`` (settings and counts), ``rw`` (the in-process
    read-write lock) and ``model_root`` (where models trained for this collection are kept, or None).
    """

    location: str
    name: str
    encoder: Encoder | None
    read_only: bool
    manifest: dict[str, Any]
    rw: writes.ReadWriteLock
    chunker: Chunker
    model_root: Path | None = None
    supports_tables = True
    schemes: ClassVar[tuple[str, ...]] = ()
    """Where a kind of collection lives: URL schemes (``postgresql``), or ``""`` for a directory."""
    _kinds: ClassVar[dict[str, type[Collection]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A kind of collection registers the places it names in its own ``schemes``, so that :meth:`open` and
        :meth:`create` find it; :mod:`rag.indexers` imports the two built-in kinds."""
        super().__init_subclass__(**kwargs)
        for scheme in cls.__dict__.get("schemes", ()):
            Collection._kinds[scheme] = cls

    @staticmethod
    def kind_for(where: str | Path) -> type[Collection]:
        """The kind of collection that lives at ``where``: a ``postgresql://`` URL or a directory."""
        scheme = str(where).split("://", 1)[0].lower() if is_store_url(where) else ""
        kind = Collection._kinds.get(scheme)
        if kind is None:
            known = ", ".join(f"{k}://" if k else "a directory" for k in Collection._kinds)
            raise ConfigError(f"no kind of collection lives at {str(where)!r}; use {known}")
        return kind

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, where: str | Path, **options: Any) -> Collection:
        """Create an empty collection in a new or empty directory, or in a PostgreSQL database
        (``postgresql://user@host/db?collection=NAME``). Options: see :meth:`DirectoryCollection.create
        <rag.indexers.directory.collection.DirectoryCollection.create>` (the same for both).
        """
        return Collection._dispatch(cls, where).create(where, **options)

    @classmethod
    def open(cls, where: str | Path, *, encoder: str | Encoder | None = None, read_only: bool = False) -> Collection:
        """Open an existing collection: a directory or a ``postgresql://`` URL.

        Args:
            encoder: leave None to load the encoder the collection was built with; an encoder given here must have
                the same name and dimension (else :class:`~rag.errors.IndexFormatError`).
            read_only: searching only; several read-only processes can share a directory collection, and a
                read-only PostgreSQL collection can be opened on a read replica.
        """
        return Collection._dispatch(cls, where).open(where, encoder=encoder, read_only=read_only)

    @classmethod
    def destroy(cls, where: str | Path) -> None:
        """Delete a collection: its directory (checked to be one first) or its PostgreSQL schema."""
        Collection._dispatch(cls, where).destroy(where)

    @classmethod
    def exists(cls, where: str | Path) -> bool:
        """Whether a collection exists at ``where``."""
        return Collection._dispatch(cls, where).exists(where)

    @classmethod
    def short_name(cls, where: str | Path) -> str:
        """A collection's short name from where it lives (see :func:`collection_name`)."""
        return Collection._dispatch(cls, where).short_name(where)

    @staticmethod
    def _dispatch(cls: type[Collection], where: str | Path) -> type[Collection]:
        """The kind a factory call on ``cls`` goes to; a kind that does not implement the call itself fails."""
        kind = Collection.kind_for(where)
        if cls is not Collection:
            raise NotImplementedError(f"{cls.__name__} does not implement this; see Collection")
        return kind

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's connections (the collection can not be used afterwards)."""

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        enc = (self.manifest.get("encoder") or {}).get("name")
        return (
            f"{type(self).__name__}({self.location!r}, documents={len(self)}, chunks={self.num_chunks}, "
            f"encoder={enc!r})"
        )

    # ------------------------------------------------------------------ properties
    @property
    def generation(self) -> int:
        """Counts committed writes; a search sees one generation."""
        return int(self.manifest["generation"])

    def __len__(self) -> int:
        """Number of documents (not chunks)."""
        return int(self.manifest["counts"]["documents"])

    @property
    def num_chunks(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    @property
    def has_dense(self) -> bool:
        return self.manifest.get("encoder") is not None

    @abc.abstractmethod
    def load(self) -> Collection:
        """Load the indexes and the encoder now (they load lazily otherwise) and warm them up, so the first
        search is as fast as the next. Returns the collection."""

    # ------------------------------------------------------------------ reads
    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold a consistent view while several reads go together (a write in this process waits until the
        block ends). Each search holds it on its own; use this around a group of them."""
        return self.rw.read()

    @abc.abstractmethod
    def get(self, ids: Sequence[str]) -> list[Doc]:
        """Chunks of the given document ids, in document then position order."""

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """All document ids, sorted."""

    def chunk_vectors(self) -> tuple[list[Doc], np.ndarray | None]:
        """Every chunk, with its stored embeddings as rows in the same order, or None where this kind of collection
        cannot hand them out cheaply (the caller encodes the chunks). ``rag adapt`` builds its first stage on them."""
        return self.get(self.ids()), None

    @abc.abstractmethod
    def hashes(self) -> dict[str, str]:
        """The content hash of every stored document, by id (what a re-run of an ingest compares against)."""

    @abc.abstractmethod
    def fields(self) -> set[str]:
        """Metadata fields that filters can use."""

    @property
    @abc.abstractmethod
    def bm25(self) -> BM25Index:
        """The BM25 index (in memory, for both stores)."""

    @abc.abstractmethod
    def allowed(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        """Ordinals of the chunks matching ``filters`` (None for no filter)."""

    @abc.abstractmethod
    def hits(self, ords: np.ndarray, scores: np.ndarray, source: str) -> list[Hit]:
        """Hits for result ordinals (``-1`` entries are padding and dropped)."""

    def bm25_hits(self, query: str, k: int, filters: Mapping[str, Any] | None) -> list[Hit]:
        """The BM25 run: the top ``k`` chunks for ``query`` among those matching ``filters``."""
        ords, scores = self.bm25.search([query], k=k, allowed=self.allowed(filters))
        return self.hits(ords[0], scores[0], "bm25")

    @abc.abstractmethod
    def dense_hits(self, query_vec: np.ndarray, k: int, filters: Mapping[str, Any] | None) -> list[Hit]:
        """The dense run: the ``k`` chunks nearest (cosine) to the embedded query ``query_vec`` (shape (1, dim))
        among those matching ``filters``."""

    def retriever(
        self, mode: str = "hybrid", k: int = 10, filters: Mapping[str, Any] | None = None, **options: Any
    ) -> Retriever:
        """A Retriever over this collection: ``bm25``, ``dense`` or ``hybrid`` (RRF of both by default).

        ``k`` and ``filters`` are defaults for each call; ``options`` go to the retriever class
        (for hybrid: ``method``, ``weights``, ``rrf_k``, ``candidates``).
        """
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode {mode!r}; use one of {MODES}")
        if mode == "bm25":
            return BM25Retriever(self, k=k, filters=filters, **options)
        if mode == "dense":
            return DenseRetriever(self, k=k, filters=filters, **options)
        if not self.has_dense:
            raise ConfigError(f"collection {self.location} has no dense index, so no hybrid search; use mode='bm25'")
        return Hybrid(BM25Retriever(self, filters=filters), DenseRetriever(self, filters=filters), k=k, **options)

    def search(
        self, query: str, mode: str = "hybrid", k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Shorthand for ``retriever(mode).retrieve(query, k, filters)``."""
        return self.retriever(mode).retrieve(query, k=k, filters=filters)

    # ------------------------------------------------------------------ writes
    @abc.abstractmethod
    def add(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        """Add documents. A document whose id is already stored is replaced when its text or
        metadata changed and left alone when not, so re-indexing the same files updates in place."""

    @abc.abstractmethod
    def add_chunked(self, items: Sequence[tuple[Doc, list[Doc], np.ndarray | None]]) -> IndexResult:
        """Add documents chunked and embedded elsewhere (by this collection's chunker and encoder, e.g. on Ray
        workers: :mod:`rag.indexers.ray`), as (document, its chunks, their embeddings or None). As with :meth:`add`,
        a document whose stored content is the same is skipped."""

    def bulk_load(self, incoming: int) -> contextlib.AbstractContextManager[None]:
        """Wrap an ingest of ``incoming`` documents: a store whose ANN index is faster to build once than to
        update row by row (PostgreSQL's HNSW/IVFFlat) may drop it first and build it at the end of the block.
        Searches stay correct meanwhile. A directory collection needs nothing."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def update(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        """Replace stored documents; every id must exist (else :class:`DocumentNotFoundError`)."""

    @abc.abstractmethod
    def delete(self, ids: Iterable[str]) -> IndexResult:
        """Delete documents (and their chunks) by id; ids not stored are ignored."""

    @abc.abstractmethod
    def check(self) -> list[str]:
        """Check the collection's integrity now, reading everything it stores; returns the problems found, each
        saying what to do (an empty list: healthy). ``rag check`` runs it. Opening a collection checks only what
        is cheap; a damaged index file is otherwise caught when it is first loaded, before any result."""

    @abc.abstractmethod
    def rebuild(self, *, progress: bool = False) -> IndexResult:
        """Rebuild the indexes from the stored documents (repairs damaged payloads or a damaged ANN index)."""
