"""A directory collection (the embedded default): a document store and its BM25 and dense indexes in one folder.

Layout: ``manifest.json`` (written last), ``store.duckdb`` (documents, chunks, metadata),
``bm25-<generation>.npz`` and ``dense-<generation>.faiss``. Every write (add, update, delete, rebuild)
produces a new generation: new rows tagged with it, new payload files, then the manifest. A crash
before the manifest is renamed into place leaves the previous generation in force; the next writer
rolls back the rows the crash left behind. One writer at a time (a lock file); a second one gets
:class:`~rag.errors.CollectionLockedError` at once.

Example:
    >>> kb = Collection.create("kb", encoder=None)                 # doctest: +SKIP  (a DirectoryCollection)
    >>> kb.add([Doc("Rotate the keys every 90 days.", id="keys")])  # doctest: +SKIP
    >>> kb.search("how often are keys rotated?", mode="bm25", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import CollectionLockedError, ConfigError, IndexFormatError
from rag.indexers import writes
from rag.indexers.chunking import Chunker
from rag.indexers.collection import Collection
from rag.indexers.dense import DenseIndex, DenseParams
from rag.indexers.directory import write
from rag.indexers.encoders import collection_encoder, encoder_dim, encoder_name, make_encoder
from rag.indexers.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    TYPE,
    read_manifest,
    verify_payload,
)
from rag.indexers.store import DocStore, damaged_store
from rag.indexers.writes import IndexResult
from rag.protocols import Encoder
from rag.retrievers.bm25_index import BM25Index, BM25Params
from rag.text.tokenizer import Tokenizer
from rag.types import Doc, Hit
from rag.version import __version__


class DirectoryCollection(Collection):
    """Documents plus their BM25 and dense indexes, persisted in one directory.

    Use :meth:`create` and :meth:`open` (or :meth:`Collection.open` with a directory); see the module docstring.
    """

    schemes = ("",)

    def __init__(self, path: Path, manifest: dict[str, Any], encoder: Encoder | None, read_only: bool) -> None:
        self.path = path
        self.location = str(path)
        self.name = path.resolve().name
        self.model_root = path
        self.manifest = manifest
        self.encoder = encoder
        self.read_only = read_only
        p = manifest["params"]
        self.chunker = Chunker(**p["chunk"])
        self._store: DocStore | None = None
        self._bm25: BM25Index | None = None
        self._dense: DenseIndex | None = None
        self.rw = writes.ReadWriteLock()

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        encoder: str | Encoder | None = "default",
        chunk_size: int = 200,
        chunk_overlap: int = 40,
        bm25: BM25Params | None = None,
        tokenizer: Tokenizer | None = None,
        dense: DenseParams | str = "flat",
        exist_ok: bool = False,
    ) -> DirectoryCollection:
        """Create an empty collection at ``path`` (a new or empty directory).

        Args:
            encoder: ``"default"`` (all-MiniLM-L6-v2, offline), a HF id or local path, an Encoder
                object, or None for a BM25-only collection.
            chunk_size: words per chunk (0: keep documents whole); ``chunk_overlap`` words shared.
            bm25: BM25 parameters; ``tokenizer`` its tokeniser.
            dense: ``"flat"``, ``"hnsw"``, ``"ivf"`` or :class:`DenseParams`.
            exist_ok: open the collection if one already exists at ``path``.
        """
        path = Path(path)
        if (path / MANIFEST).exists():
            if exist_ok:
                return cls.open(path, encoder=None if encoder == "default" else encoder)
            raise ConfigError(f"a collection already exists at {path}; open it with Collection.open()")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"{path} exists and is not an empty directory; choose a new path for the collection")
        enc = make_encoder(encoder)
        dense_p = DenseParams(kind=dense) if isinstance(dense, str) else dense
        chunker = Chunker(chunk_size, chunk_overlap if chunk_size else 0)
        bm = BM25Index(bm25, tokenizer)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        manifest: dict[str, Any] = {
            "type": TYPE,
            "format_version": FORMAT_VERSION,
            "pilotfish_version": __version__,
            "generation": 0,
            "created": now,
            "updated": now,
            "params": {"chunk": asdict(chunker), **bm.config(), "dense": asdict(dense_p)},
            "encoder": None if enc is None else {"name": encoder_name(enc), "dim": encoder_dim(enc)},
            "counts": {"documents": 0, "chunks": 0},
            "payloads": {},
            "store": "store.duckdb",
        }
        path.mkdir(parents=True, exist_ok=True)
        self = cls(path, manifest, enc, read_only=False)
        self._bm25 = bm
        if enc is not None:
            self._dense = DenseIndex(manifest["encoder"]["dim"], dense_p)
        with write.locked(self):
            self._store_()
            write.commit(self, 0)
        return self

    @classmethod
    def open(
        cls, path: str | Path, *, encoder: str | Encoder | None = None, read_only: bool = False
    ) -> DirectoryCollection:
        """Open an existing collection.

        Args:
            encoder: leave None to load the encoder the collection was built with; an encoder given
                here must have the same name and dimension (else :class:`IndexFormatError`).
            read_only: open the document store read-only (searching only); several read-only
                processes can share a collection.
        """
        path = Path(path)
        manifest = read_manifest(path)
        enc = collection_encoder(manifest.get("encoder"), encoder, str(path))
        return cls(path, manifest, enc, read_only)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _store_(self) -> DocStore:
        if self._store is None:
            try:
                self._store = DocStore(self.path / self.manifest["store"], read_only=self.read_only)
            except IndexFormatError as e:
                if "could not set lock" in str(e).lower():
                    raise CollectionLockedError(
                        f"collection {self.path} is in use by another process that opened it for writing; "
                        "close it there (or open both read_only=True to share it), then retry"
                    ) from e
                raise
        return self._store

    @property
    def store(self) -> DocStore:
        return self._store_()

    @property
    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            self._bm25 = BM25Index.load(verify_payload(self.path, self.manifest["payloads"]["bm25"]))
        return self._bm25

    @property
    def dense(self) -> DenseIndex:
        if not self.has_dense:
            raise ConfigError(f"collection {self.path} has no dense index (created with encoder=None); use mode='bm25'")
        if self._dense is None:
            f = verify_payload(self.path, self.manifest["payloads"]["dense"])
            self._dense = DenseIndex.load(
                f, self.manifest["encoder"]["dim"], DenseParams(**self.manifest["params"]["dense"])
            )
        return self._dense

    def load(self) -> DirectoryCollection:
        """Load the indexes and the encoder now (they load lazily otherwise) and warm them up, so
        the first search is as fast as the next. Returns the collection."""
        self.bm25.search(["warm up"], k=1)
        self.hits(self.bm25.ords[:1], np.zeros(1), "warm-up")  # the store's first query is slow
        if self.has_dense:
            _ = self.dense
            if self.encoder is not None:
                self.encoder.encode(["warm up"])
        return self

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Doc]:
        """Chunks of the given document ids, in document then position order."""
        return self.store.chunks_of(ids, self.generation)

    def ids(self) -> list[str]:
        """All document ids, sorted."""
        return self.store.doc_ids(self.generation)

    def chunk_vectors(self) -> tuple[list[Doc], np.ndarray | None]:
        """Every chunk in ordinal order, with the dense index's vectors (reconstructed, not re-encoded)."""
        with self.reading():
            ords = [o for batch, _ in self.store.iter_chunks(self.generation) for o in batch.tolist()]
            docs = self.store.chunks(ords)
            vecs = self.dense.reconstruct(np.asarray(ords, dtype=np.int64)) if self.has_dense else None
        return [docs[o] for o in ords], vecs

    def hashes(self) -> dict[str, str]:
        return self.store.doc_hashes(self.ids(), self.generation)

    def fields(self) -> set[str]:
        """Metadata fields that filters can use."""
        return self.store.fields(self.generation)

    def allowed(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        """Ordinals of the chunks matching ``filters`` (None for no filter)."""
        return None if not filters else self.store.filter_ords(filters, self.generation)

    def dense_hits(self, query_vec: np.ndarray, k: int, filters: Mapping[str, Any] | None) -> list[Hit]:
        ords, scores = self.dense.search(query_vec, k, self.allowed(filters))
        return self.hits(ords[0], scores[0], "dense")

    def hits(self, ords: np.ndarray, scores: np.ndarray, source: str) -> list[Hit]:
        """Hits for result ordinals (``-1`` entries are padding and dropped)."""
        keep = [(int(o), float(s)) for o, s in zip(ords, scores, strict=True) if o >= 0]
        docs = self.store.chunks([o for o, _ in keep])
        return [Hit(doc=docs[o], score=s, source=source) for o, s in keep if o in docs]

    # ------------------------------------------------------------------ writes
    def add(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        """Add documents. A document whose id is already stored is replaced when its text or
        metadata changed and left alone when not, so re-indexing the same files updates in place."""
        return write.write(self, writes.as_docs(docs), must_exist=False, progress=progress)

    def add_chunked(self, items: Sequence[tuple[Doc, list[Doc], np.ndarray | None]]) -> IndexResult:
        prepared = {d.id: (chunks, vecs) for d, chunks, vecs in items}
        return write.write(
            self, writes.as_docs([d for d, _, _ in items]), must_exist=False, progress=False, prepared=prepared
        )

    def update(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        """Replace stored documents; every id must exist (else :class:`DocumentNotFoundError`)."""
        return write.write(self, writes.as_docs(docs), must_exist=True, progress=progress)

    def delete(self, ids: Iterable[str]) -> IndexResult:
        """Delete documents (and their chunks) by id; ids not stored are ignored."""
        return write.write(self, [], must_exist=False, progress=False, delete=list(ids))

    def rebuild(self, *, progress: bool = False) -> IndexResult:
        """Rebuild the BM25 and dense indexes from the document store (repairs damaged payloads)."""
        return write.rebuild(self, progress=progress)

    def check(self) -> list[str]:
        """Check the whole collection now (see :meth:`Collection.check`): the manifest and each index payload
        against their checksums, every block of the document store (DuckDB checksums each block), the indexes'
        sizes against the store, and the manifests of the models trained into it."""
        import duckdb

        from rag.models.registry import TASKS, read_model_manifest

        try:
            read_manifest(self.path)
        except IndexFormatError as e:
            return [str(e)]
        problems = []
        for entry in self.manifest["payloads"].values():
            try:
                verify_payload(self.path, entry)
            except IndexFormatError as e:
                problems.append(str(e))
        try:
            self.store.scan()
            counts = self.store.counts(self.generation)
        except duckdb.Error as e:
            problems.append(str(damaged_store(self.path / self.manifest["store"], e)))
        except IndexFormatError as e:
            problems.append(str(e))
        else:
            expected = (self.manifest["counts"]["documents"], self.manifest["counts"]["chunks"])
            sizes = {"bm25": len(self.bm25)} if not problems else {}
            if self.has_dense and not problems:
                sizes["dense"] = len(self.dense)
            wrong = [f"{k} holds {n}" for k, n in sizes.items() if n != counts[1]]
            if counts != expected or wrong:
                problems.append(
                    f"collection {self.path}: the store holds {counts[0]} documents and {counts[1]} chunks, the "
                    f"manifest says {expected[0]} and {expected[1]}{'; ' if wrong else ''}{', '.join(wrong)}. "
                    f"Rebuild the indexes with `rag reindex --collection {self.path}`"
                )
        for task in TASKS:
            for model in sorted((self.path / "models" / task).glob("[!.]*")):
                try:
                    read_model_manifest(model, task)
                except IndexFormatError as e:
                    problems.append(str(e))
        return problems

    @staticmethod
    def exists(path: str | Path) -> bool:  # type: ignore[override]
        """Whether ``path`` holds a collection (a manifest)."""
        return (Path(path) / MANIFEST).exists()

    @staticmethod
    def short_name(path: str | Path) -> str:  # type: ignore[override]
        """The directory's name."""
        return Path(path).resolve().name

    @staticmethod
    def destroy(path: str | Path) -> None:  # type: ignore[override]
        """Delete a collection directory (checks that it is one first)."""
        read_manifest(Path(path))
        shutil.rmtree(path)
