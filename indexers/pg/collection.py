"""A collection in PostgreSQL with pgvector: the shared store for several processes and machines.

Documents, chunks, metadata (JSONB) and embeddings (``vector(dim)``) live in the database; see
:mod:`rag.indexers.pg.schema` for the tables and migrations. Searching:

* dense: SQL over pgvector (cosine distance ``<=>``), with metadata filters in the same ``WHERE``. The index is
  chosen at creation like a directory collection's: ``flat`` (no ANN index: exact), ``hnsw`` or ``ivf``
  (IVFFlat). ANN scans run with pgvector's iterative index scans (``hnsw.iterative_scan``,
  ``ivfflat.iterative_scan``), so a filter that rejects most rows still returns ``k`` of them.
* BM25 stays in the application: each process builds it from the store on first use and then follows the
  change log (``changes``: the ordinals each generation added and removed), so a search sees every committed
  write, whichever process made it. Filters for BM25 run as SQL and restrict the BM25 search to their rows.

Writing: the chunking and embedding happen outside any transaction; then one transaction, under an advisory
lock that serialises writers of the collection, re-checks which documents changed, bumps the generation,
deletes the replaced chunks, COPYs the new documents and chunks in (binary COPY) and logs the change. A
process killed mid-write leaves nothing behind (the transaction rolls back), and re-running the same ingest
skips the documents already stored (their content hash matches). Several application processes can share the
collection; a read-only process can search a read replica (it only reads, and it follows the replica's log).

Not offered here: tables (``add_tables``) need a directory collection.

Example:
    >>> kb = Collection.create("postgresql://app@127.0.0.1/rag?collection=handbook", dense="hnsw")  # doctest: +SKIP
    >>> kb.add([Doc("Rotate the keys every 90 days.", id="keys")])                            # doctest: +SKIP
    >>> kb.search("key rotation", k=3, filters={"source": "handbook.pdf"})                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from rag.errors import ConfigError, IndexFormatError
from rag.indexers import writes
from rag.indexers.chunking import Chunker
from rag.indexers.collection import Collection
from rag.indexers.dense import DenseParams
from rag.indexers.encoders import collection_encoder, encoder_dim, encoder_name, make_encoder
from rag.indexers.pg import bm25 as pg_bm25
from rag.indexers.pg import index as pg_index
from rag.indexers.pg import schema as pg_schema
from rag.indexers.pg.bm25 import StoreBM25
from rag.indexers.pg.search import PgSearch
from rag.indexers.pg.write import write
from rag.indexers.writes import IndexResult
from rag.protocols import Encoder
from rag.retrievers.bm25_index import BM25Index, BM25Params
from rag.text.tokenizer import Tokenizer
from rag.types import Doc
from rag.version import __version__


class PgCollection(PgSearch, Collection):
    """A collection stored in PostgreSQL (see the module docstring). Open or create it with
    :meth:`Collection.open` / :meth:`Collection.create` and a ``postgresql://`` URL."""

    schemes = ("postgresql", "postgres")
    supports_tables = False

    def __init__(self, url: str, settings: dict[str, Any], encoder: Encoder | None, read_only: bool) -> None:
        self.dsn, self.name = pg_schema.parse_url(url)
        self.location = pg_schema.redact(url)
        self.settings = settings
        self.encoder = encoder
        self.read_only = read_only
        self.chunker = Chunker(**settings["chunk"])
        self.dense_params = DenseParams(**settings["dense"])
        self.exact = False  # True: dense search without the ANN index (tests, recall checks)
        self.rw = writes.ReadWriteLock()
        self._local = threading.local()
        self._cons: list[Any] = []
        self._cons_lock = threading.Lock()
        self._bm25 = StoreBM25(self.name, settings)
        self._fields: tuple[int, set[str]] | None = None

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(  # type: ignore[override]
        cls,
        url: str,
        *,
        encoder: str | Encoder | None = "default",
        chunk_size: int = 200,
        chunk_overlap: int = 40,
        bm25: BM25Params | None = None,
        tokenizer: Tokenizer | None = None,
        dense: DenseParams | str = "hnsw",
        exist_ok: bool = False,
    ) -> PgCollection:
        """Create an empty collection in the database (its schema must not exist yet, unless ``exist_ok``).
        Arguments as for a directory collection; ``dense`` defaults to ``hnsw`` here, and a kind given by name
        gets pgvector's HNSW defaults (m 16, ef_construction 64: building the graph inside PostgreSQL is the
        slow part of an ingest); pass :class:`DenseParams` to choose."""
        dsn, name = pg_schema.parse_url(url)
        con = pg_schema.connect(dsn)
        try:
            if pg_schema.schema_version(con, name) is not None:
                if exist_ok:
                    return cls.open(url, encoder=None if encoder == "default" else encoder)
                raise ConfigError(
                    f"a collection named {name!r} already exists in {pg_schema.redact(dsn)}; open it with "
                    "Collection.open(), or pick another name with ?collection=NAME"
                )
            enc = make_encoder(encoder)
            dense_p = DenseParams(kind=dense, m=16, ef_construction=64) if isinstance(dense, str) else dense
            chunker = Chunker(chunk_size, chunk_overlap if chunk_size else 0)
            settings = {
                "chunk": asdict(chunker),
                **BM25Index(bm25, tokenizer).config(),
                "dense": asdict(dense_p),
                "encoder": None if enc is None else {"name": encoder_name(enc), "dim": encoder_dim(enc)},
                "pilotfish_version": __version__,
            }
            dim = settings["encoder"]["dim"] if enc is not None else None
            pg_schema.migrate(con, name, dim, create=True)
            with con.transaction():
                for key, value in settings.items():
                    con.execute(f"INSERT INTO {name}.settings VALUES (%s, %s::jsonb)", [key, json.dumps(value)])
        finally:
            con.close()
        kb = cls(url, settings, enc, read_only=False)
        kb.ensure_index()
        return kb

    @classmethod
    def open(cls, url: str, *, encoder: str | Encoder | None = None, read_only: bool = False) -> PgCollection:  # type: ignore[override]
        """Open a collection; see :meth:`Collection.open`."""
        dsn, name = pg_schema.parse_url(url)
        con = pg_schema.connect(dsn)
        try:
            version = pg_schema.schema_version(con, name)
            if version is None:
                raise IndexFormatError(
                    f"no collection named {name!r} in {pg_schema.redact(dsn)}; create it with "
                    f"`rag index DOCS --store {pg_schema.redact(url)}` or Collection.create()"
                )
            if read_only:
                pg_schema.check_version(version, name)
                if version < pg_schema.MIGRATIONS[-1][0]:
                    raise IndexFormatError(
                        f"collection {name!r} has schema version {version}; open it once for writing (on the "
                        "primary) to migrate it, then retry"
                    )
            else:
                pg_schema.migrate(con, name, None, create=False)
            settings = dict(con.execute(f"SELECT key, value FROM {name}.settings").fetchall())
        finally:
            con.close()
        enc = collection_encoder(settings.get("encoder"), encoder, repr(name))
        kb = cls(url, settings, enc, read_only)
        if not read_only:
            kb.ensure_index()  # repairs a bulk load that a crash interrupted
        return kb

    @staticmethod
    def short_name(url: str) -> str:  # type: ignore[override]
        """The URL's ``collection`` parameter."""
        return pg_schema.parse_url(str(url))[1]

    @staticmethod
    def exists(url: str) -> bool:  # type: ignore[override]
        """Whether the URL's collection exists in the database."""
        dsn, name = pg_schema.parse_url(url)
        con = pg_schema.connect(dsn)
        try:
            return pg_schema.schema_version(con, name) is not None
        finally:
            con.close()

    @staticmethod
    def destroy(url: str) -> None:  # type: ignore[override]
        """Drop the collection's schema (checked to be a pilotfish collection first) and everything in it."""
        dsn, name = pg_schema.parse_url(url)
        con = pg_schema.connect(dsn)
        try:
            if pg_schema.schema_version(con, name) is None:
                raise IndexFormatError(f"no collection named {name!r} in {pg_schema.redact(dsn)}")
            con.execute(f"DROP SCHEMA {name} CASCADE")
        finally:
            con.close()

    def con(self) -> Any:
        """This thread's connection (each thread gets its own, so searches in worker threads run in parallel)."""
        c = getattr(self._local, "con", None)
        if c is None or c.closed or c.broken:  # a connection lost (server restarted) is replaced
            c = self._local.con = pg_schema.connect(self.dsn)
            with self._cons_lock:
                self._cons = [x for x in self._cons if not x.closed] + [c]
        return c

    def close(self) -> None:
        with self._cons_lock:
            for c in self._cons:
                c.close()
            self._cons.clear()

    # ------------------------------------------------------------------ properties
    @property
    def manifest(self) -> dict[str, Any]:  # type: ignore[override]
        """Settings, generation and counts, shaped like a directory collection's manifest."""
        return pg_schema.manifest(self.con(), self.name, self.location, self.settings)

    @property
    def has_dense(self) -> bool:
        return self.settings.get("encoder") is not None

    @property
    def generation(self) -> int:
        return self.db_generation()

    @pg_schema.store_errors
    def __len__(self) -> int:
        return int(self.con().execute(f"SELECT count(*) FROM {self.name}.documents").fetchone()[0])

    @property
    @pg_schema.store_errors
    def num_chunks(self) -> int:
        return int(self.con().execute(f"SELECT count(*) FROM {self.name}.chunks").fetchone()[0])

    def load(self) -> PgCollection:
        self.bm25.search(["warm up"], k=1)
        if self.encoder is not None:
            self.encoder.encode(["warm up"])
        return self

    # ------------------------------------------------------------------ BM25, kept in step with the store
    @pg_schema.store_errors
    def db_generation(self) -> int:
        row = self.con().execute(f"SELECT generation FROM {self.name}.state").fetchone()
        return int(row[0])

    @property
    def bm25(self) -> BM25Index:
        """The in-process BM25 index: inside a read (:meth:`reading`) at that read's snapshot, else brought up to
        the store's current generation first (see :mod:`rag.indexers.pg.bm25`)."""
        if getattr(self._local, "snapshot", 0):
            assert self._bm25.index is not None
            return self._bm25.index
        return pg_bm25.catch_up(self)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """One consistent snapshot of the store for a group of reads (each search holds one)."""
        return pg_bm25.snapshot(self)

    # ------------------------------------------------------------------ writes
    def add(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        return write(self, writes.as_docs(docs), must_exist=False, progress=progress)

    def add_chunked(self, items: Sequence[tuple[Doc, list[Doc], np.ndarray | None]]) -> IndexResult:
        prepared = {d.id: (chunks, vecs) for d, chunks, vecs in items}
        return write(
            self, writes.as_docs([d for d, _, _ in items]), must_exist=False, progress=False, prepared=prepared
        )

    def update(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        return write(self, writes.as_docs(docs), must_exist=True, progress=progress)

    def delete(self, ids: Iterable[str]) -> IndexResult:
        return write(self, [], must_exist=False, progress=False, delete=list(ids))

    def rebuild(self, *, progress: bool = False) -> IndexResult:
        """Rebuild the ANN index in the database (an IVFFlat index relearns its lists from the rows now stored)
        and this process's BM25 from the stored chunks; the embeddings are kept (they live in the store)."""
        writes.check_writable(self)
        pg_index.drop(self.con(), self.name)
        self.ensure_index()
        return IndexResult(chunks_added=len(self._bm25.rebuild(self.con())))

    @pg_schema.store_errors
    def check(self) -> list[str]:
        """Check the rows and the ANN index in the database, and this process's BM25 against the stored chunks
        (page checksums are PostgreSQL's own: ``initdb --data-checksums``)."""
        problems = pg_index.health(self.con(), self.name, self.dense_params if self.has_dense else None)
        if len(self.bm25) != self.num_chunks:
            problems.append(f"BM25 holds {len(self.bm25)} chunks, the store {self.num_chunks}; run `rag reindex`")
        return problems

    def bulk_load(self, incoming: int) -> contextlib.AbstractContextManager[None]:
        """For an ingest of ``incoming`` documents at least as large as the collection (and 1,000 or more): the
        ANN index is dropped first and built once at the end, several times faster than row by row. Searches
        meanwhile run exact (correct, slower). A crash in between leaves no index; the next open for writing
        builds it."""
        if self.read_only or not self.has_dense or self.dense_params.kind == "flat":
            return contextlib.nullcontext()
        if incoming < max(pg_index.BULK_MIN, len(self)):
            return contextlib.nullcontext()
        return self._bulk()

    @contextlib.contextmanager
    def _bulk(self) -> Iterator[None]:
        pg_index.drop(self.con(), self.name)
        try:
            yield
        finally:
            self.ensure_index()

    @pg_schema.store_errors
    def ensure_index(self) -> None:
        """Build the ANN index the settings ask for when it is missing (see :mod:`rag.indexers.pg.index`)."""
        if not self.read_only and self.has_dense:
            pg_index.ensure(self.con(), self.name, self.dense_params)
