"""A collection: a directory holding a document store and its BM25 and dense indexes.

Layout: ``manifest.json`` (written last), ``store.duckdb`` (documents, chunks, metadata),
``bm25-<generation>.npz`` and ``dense-<generation>.faiss``. Every write (add, update, delete, rebuild)
produces a new generation: new rows tagged with it, new payload files, then the manifest. A crash
before the manifest is renamed into place leaves the previous generation in force; the next writer
rolls back the rows the crash left behind. One writer at a time (a lock file); a second one gets
:class:`~rag.errors.CollectionLockedError` at once.

Example:
    >>> kb = Collection.create("kb", encoder=None)                 # doctest: +SKIP
    >>> kb.add([Doc("Rotate the keys every 90 days.", id="keys")])  # doctest: +SKIP
    >>> kb.search("how often are keys rotated?", mode="bm25", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rag.indexers.bm25_index import BM25Index, BM25Params
from rag.indexers.chunking import Chunker
from rag.indexers.dense_index import DenseIndex, DenseParams
from rag.indexers.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    TYPE,
    read_manifest,
    sha256_file,
    verify_payload,
    write_json_atomic,
)
from rag.indexers.store import DocStore, index_text
from rag.indexers.tokenize import Tokenizer

from rag.errors import CollectionLockedError, ConfigError, DocumentNotFoundError, IndexFormatError
from rag.protocols import Encoder, Retriever
from rag.types import Doc, Hit, content_id

MODES = ("bm25", "dense", "hybrid")


def _fault(point: str) -> None:
    """Crash-test hook: ``PILOTFISH_FAULT=<point>`` kills the process there (as kill -9 would)."""
    if os.environ.get("PILOTFISH_FAULT") == point:
        os.kill(os.getpid(), 9)


@dataclass(frozen=True)
class IndexResult:
    """What a write did: documents added, updated (content changed), unchanged, deleted; chunks."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pilotfish")
    except Exception:
        return "0+unknown"


def _encoder_name(enc: Any) -> str:
    return str(getattr(enc, "name", type(enc).__name__))


def _encoder_dim(enc: Any) -> int:
    dim = getattr(enc, "dim", None)
    return int(dim) if dim else int(enc.encode(["dimension probe"]).shape[1])


def make_encoder(encoder: str | Encoder | None) -> Encoder | None:
    """An encoder from a name/path (sentence-transformers), an object, or None (no dense index)."""
    if encoder is None or not isinstance(encoder, str):
        return encoder
    from rag.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder(encoder)


class Collection:
    """Documents plus their BM25 and dense indexes, persisted in one directory.

    Use :meth:`create` and :meth:`open`; see the module docstring for an example.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], encoder: Encoder | None, read_only: bool) -> None:
        self.path = path
        self.manifest = manifest
        self.encoder = encoder
        self.read_only = read_only
        p = manifest["params"]
        self.chunker = Chunker(**p["chunk"])
        self._store: DocStore | None = None
        self._bm25: BM25Index | None = None
        self._dense: DenseIndex | None = None

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
    ) -> Collection:
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
                return cls.open(path, encoder=encoder if not isinstance(encoder, str) or encoder != "default" else None)
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
            "pilotfish_version": _version(),
            "generation": 0,
            "created": now,
            "updated": now,
            "params": {"chunk": asdict(chunker), **bm.config(), "dense": asdict(dense_p)},
            "encoder": None if enc is None else {"name": _encoder_name(enc), "dim": _encoder_dim(enc)},
            "counts": {"documents": 0, "chunks": 0},
            "payloads": {},
            "store": "store.duckdb",
        }
        path.mkdir(parents=True, exist_ok=True)
        self = cls(path, manifest, enc, read_only=False)
        self._bm25 = bm
        if enc is not None:
            self._dense = DenseIndex(manifest["encoder"]["dim"], dense_p)
        with self._locked():
            self._store_()
            self._save_payloads_and_manifest(0)
        return self

    @classmethod
    def open(cls, path: str | Path, *, encoder: str | Encoder | None = None, read_only: bool = False) -> Collection:
        """Open an existing collection.

        Args:
            encoder: leave None to load the encoder the collection was built with; an encoder given
                here must have the same name and dimension (else :class:`IndexFormatError`).
            read_only: open the document store read-only (searching only).
        """
        path = Path(path)
        manifest = read_manifest(path)
        info = manifest.get("encoder")
        enc = make_encoder(encoder) if encoder is not None else None
        if enc is not None:
            if info is None:
                raise IndexFormatError(f"collection {path} has no dense index; open it without encoder=")
            name, dim = _encoder_name(enc), _encoder_dim(enc)
            if name != info["name"] or dim != info["dim"]:
                raise IndexFormatError(
                    f"collection {path} was built with encoder {info['name']!r} (dim {info['dim']}); "
                    f"got {name!r} (dim {dim}). Open it without encoder=, or re-index into a new "
                    "collection with the new encoder."
                )
        elif info is not None:
            enc = make_encoder(info["name"])
        return cls(path, manifest, enc, read_only)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        enc = (self.manifest["encoder"] or {}).get("name")
        return f"Collection({str(self.path)!r}, documents={c['documents']}, chunks={c['chunks']}, encoder={enc!r})"

    # ------------------------------------------------------------------ properties
    @property
    def generation(self) -> int:
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

    def _store_(self) -> DocStore:
        if self._store is None:
            try:
                self._store = DocStore(self.path / self.manifest["store"], read_only=self.read_only)
            except IndexFormatError as e:
                if "lock" in str(e).lower():
                    raise CollectionLockedError(
                        f"collection {self.path} is open for writing in another process; close it "
                        "there, or wait and retry"
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

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Doc]:
        """Chunks of the given document ids, in document then position order."""
        ords = self.store.con.execute(
            "SELECT ord FROM chunks WHERE parent IN (SELECT unnest(?)) AND added_gen <= ? "
            "AND (deleted_gen IS NULL OR deleted_gen > ?) ORDER BY parent, ord",
            [list(ids), self.generation, self.generation],
        ).fetchall()
        found = self.store.chunks([o for (o,) in ords])
        return [found[o] for (o,) in ords]

    def ids(self) -> list[str]:
        """All document ids, sorted."""
        return self.store.doc_ids(self.generation)

    def fields(self) -> set[str]:
        """Metadata fields that filters can use."""
        return self.store.fields(self.generation)

    def allowed(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        """Ordinals of the chunks matching ``filters`` (None for no filter)."""
        return None if not filters else self.store.filter_ords(filters, self.generation)

    def hits(self, ords: np.ndarray, scores: np.ndarray, source: str) -> list[Hit]:
        """Hits for result ordinals (``-1`` entries are padding and dropped)."""
        keep = [(int(o), float(s)) for o, s in zip(ords, scores, strict=True) if o >= 0]
        docs = self.store.chunks([o for o, _ in keep])
        return [Hit(doc=docs[o], score=s, source=source) for o, s in keep if o in docs]

    def retriever(
        self, mode: str = "hybrid", k: int = 10, filters: Mapping[str, Any] | None = None, **options: Any
    ) -> Retriever:
        """A Retriever over this collection: ``bm25``, ``dense`` or ``hybrid`` (RRF of both by default).

        ``k`` and ``filters`` are defaults for each call; ``options`` go to the retriever class
        (for hybrid: ``method``, ``weights``, ``rrf_k``, ``candidates``).
        """
        from rag.retrievers.bm25 import BM25Retriever
        from rag.retrievers.dense import DenseRetriever
        from rag.retrievers.hybrid import Hybrid

        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode {mode!r}; use one of {MODES}")
        if mode == "bm25":
            return BM25Retriever(self, k=k, filters=filters, **options)
        if mode == "dense":
            return DenseRetriever(self, k=k, filters=filters, **options)
        if not self.has_dense:
            raise ConfigError(f"collection {self.path} has no dense index, so no hybrid search; use mode='bm25'")
        return Hybrid(BM25Retriever(self, filters=filters), DenseRetriever(self, filters=filters), k=k, **options)

    def search(
        self, query: str, mode: str = "hybrid", k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Shorthand for ``retriever(mode).retrieve(query, k, filters)``."""
        return self.retriever(mode).retrieve(query, k=k, filters=filters)

    # ------------------------------------------------------------------ writes
    def add(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        """Add documents. A document whose id is already stored is replaced when its text or
        metadata changed and left alone when not, so re-indexing the same files updates in place."""
        return self._write(_as_docs(docs), must_exist=False, progress=progress)

    def update(self, docs: Iterable[Doc | str], *, progress: bool = False) -> IndexResult:
        """Replace stored documents; every id must exist (else :class:`DocumentNotFoundError`)."""
        return self._write(_as_docs(docs), must_exist=True, progress=progress)

    def delete(self, ids: Iterable[str]) -> IndexResult:
        """Delete documents (and their chunks) by id; ids not stored are ignored."""
        return self._write([], must_exist=False, progress=False, delete=list(ids))

    def rebuild(self, *, progress: bool = False) -> IndexResult:
        """Rebuild the BM25 and dense indexes from the document store (repairs damaged payloads)."""
        self._check_writable()
        with self._locked():
            self._refresh()
            gen = self.generation
            self.store.rollback(gen)
            bm = BM25Index(
                BM25Params(**self.manifest["params"]["params"]), Tokenizer(**self.manifest["params"]["tokenizer"])
            )
            dense = None
            if self.has_dense:
                dense = DenseIndex(self.manifest["encoder"]["dim"], DenseParams(**self.manifest["params"]["dense"]))
            n = 0
            for ords, texts in self.store.iter_chunks(gen):
                bm.add(ords, texts)
                if dense is not None:
                    dense.add(ords, self._encode(texts, progress))
                n += len(ords)
            self._bm25, self._dense = bm, dense
            self._save_payloads_and_manifest(gen + 1)  # rows stay visible
        return IndexResult(chunks_added=n)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ConfigError(f"collection {self.path} was opened read_only; open it with read_only=False to write")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise CollectionLockedError(
                    f"collection {self.path} is locked by another writer; wait for it to finish and retry"
                ) from e
            yield
        finally:
            os.close(fd)

    def _refresh(self) -> None:
        """Pick up a generation committed by another process since this one was loaded."""
        current = read_manifest(self.path)
        if current["generation"] != self.generation:
            self.manifest = current
            self._bm25 = self._dense = None

    def _encode(self, texts: Sequence[str], progress: bool) -> np.ndarray:
        assert self.encoder is not None
        if not progress or len(texts) <= 256:
            return self.encoder.encode(texts)
        from tqdm import tqdm

        out = []
        with tqdm(total=len(texts), desc="embedding", unit="chunk", disable=None) as bar:
            for i in range(0, len(texts), 256):
                out.append(self.encoder.encode(texts[i : i + 256]))
                bar.update(len(out[-1]))
        return np.vstack(out)

    def _write(
        self, docs: list[Doc], *, must_exist: bool, progress: bool, delete: list[str] | None = None
    ) -> IndexResult:
        self._check_writable()
        with self._locked():
            self._refresh()
            gen = self.generation
            store = self.store
            store.rollback(gen)
            ids = [d.id for d in docs]
            hashes = [content_id(d.text, d.meta) for d in docs]
            stored = store.doc_hashes(ids, gen)
            if must_exist and (missing := [i for i in ids if i not in stored]):
                raise DocumentNotFoundError(
                    f"update() needs existing ids; not in {self.path}: {missing[:5]}"
                    f"{' ...' if len(missing) > 5 else ''} (use add() for new documents)"
                )
            changed = [(d, h) for d, h in zip(docs, hashes, strict=True) if stored.get(d.id) != h]
            removed = [d.id for d, _ in changed if d.id in stored]
            if delete:
                removed += list(store.doc_hashes(delete, gen))
            unchanged = len(docs) - len(changed)
            if not changed and not removed:
                return IndexResult(unchanged=unchanged)
            next_ord = store.next_ord()
            chunk_rows: list[tuple[int, Doc]] = []
            doc_rows = []
            for d, h in changed:
                parts = self.chunker.split(d)
                doc_rows.append((d.id, h, {k: v for k, v in d.meta.items() if k != "page_starts"}, len(parts)))
                for c in parts:
                    chunk_rows.append((next_ord, c))
                    next_ord += 1
            texts = [index_text(c.text, c.meta) for _, c in chunk_rows]
            ords = np.asarray([o for o, _ in chunk_rows], dtype=np.int64)
            vecs = self._encode(texts, progress) if self.has_dense and texts else None
            new_gen = gen + 1
            try:
                removed_ords = store.write(new_gen, removed, doc_rows, chunk_rows)
                _fault("after_store")
                bm = self.bm25
                bm.delete(removed_ords)
                bm.add(ords, texts)
                if self.has_dense:
                    dn = self.dense
                    dn.remove(removed_ords)
                    if vecs is not None:
                        dn.add(ords, vecs)
                self._save_payloads_and_manifest(new_gen)
            except BaseException:
                self._bm25 = self._dense = None  # in-memory indexes may hold the failed change
                with contextlib.suppress(Exception):
                    store.rollback(gen)
                raise
            n_upd = len(set(removed) & {d.id for d, _ in changed})
            return IndexResult(
                added=len(changed) - n_upd,
                updated=n_upd,
                unchanged=unchanged,
                deleted=len(removed) - n_upd,
                chunks_added=len(chunk_rows),
                chunks_removed=len(removed_ords),
            )

    def _save_payloads_and_manifest(self, gen: int) -> None:
        old = {e["file"] for e in self.manifest["payloads"].values()}
        payloads = {}
        bm_file = f"bm25-{gen:06d}.npz"
        self.bm25.save(self.path / bm_file)
        _fault("after_bm25")
        payloads["bm25"] = {"file": bm_file, "sha256": sha256_file(self.path / bm_file)}
        if self.has_dense:
            d_file = f"dense-{gen:06d}.faiss"
            assert self._dense is not None or self.manifest["payloads"].get("dense")
            self.dense.save(self.path / d_file)
            payloads["dense"] = {"file": d_file, "sha256": sha256_file(self.path / d_file)}
        _fault("before_manifest")
        n_docs, n_chunks = self.store.counts(gen)
        manifest = {
            **self.manifest,
            "generation": gen,
            "pilotfish_version": _version(),
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "counts": {"documents": n_docs, "chunks": n_chunks},
            "payloads": payloads,
        }
        write_json_atomic(self.path / MANIFEST, manifest)
        self.manifest = manifest
        _fault("after_manifest")
        keep = {e["file"] for e in payloads.values()}
        for f in old - keep:
            with contextlib.suppress(OSError):
                (self.path / f).unlink()
        self._remove_orphans(keep)
        self.store.vacuum(gen)

    def _remove_orphans(self, keep: set[str]) -> None:
        for f in self.path.iterdir():
            if f.name.startswith(("bm25-", "dense-")) and f.name not in keep:
                with contextlib.suppress(OSError):
                    f.unlink()

    @staticmethod
    def destroy(path: str | Path) -> None:
        """Delete a collection directory (checks that it is one first)."""
        read_manifest(Path(path))
        shutil.rmtree(path)


def _as_docs(docs: Iterable[Doc | str]) -> list[Doc]:
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
