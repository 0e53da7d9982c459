"""The write path of a collection: add/update/delete as one generation, rebuild, commit, lock.

A write runs under the collection's lock: roll back any uncommitted rows, chunk and embed the new
documents (nothing is written before embedding succeeds), write rows tagged with the new generation,
update the in-memory indexes, save new payload files, then rename the manifest into place (the
commit point), and finally remove the previous payload files and rows deleted for good.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.checks import sha256_file
from rag.errors import CollectionLockedError, ConfigError, DocumentNotFoundError
from rag.indexers.dense import DenseIndex, DenseParams
from rag.indexers.faults import fault
from rag.indexers.manifest import read_manifest, write_manifest
from rag.indexers.store import index_text
from rag.retrievers.bm25_index import BM25Index, BM25Params
from rag.text.tokenizer import Tokenizer
from rag.types import Doc, content_id
from rag.version import __version__

Prepared = Mapping[str, tuple[list[Doc], "np.ndarray | None"]]
"""Chunks and embeddings computed elsewhere, by document id (see :func:`chunk_and_embed`)."""

if TYPE_CHECKING:
    from rag.indexers.collection import Collection
    from rag.indexers.directory.collection import DirectoryCollection


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


def rebuild(kb: DirectoryCollection, *, progress: bool = False) -> IndexResult:
    """Rebuild the BM25 and dense indexes from the document store (repairs damaged payloads)."""
    check_writable(kb)
    with locked(kb):
        refresh(kb)
        gen = kb.generation
        kb.store.rollback(gen)
        bm = BM25Index(BM25Params(**kb.manifest["params"]["params"]), Tokenizer(**kb.manifest["params"]["tokenizer"]))
        dense = None
        if kb.has_dense:
            dense = DenseIndex(kb.manifest["encoder"]["dim"], DenseParams(**kb.manifest["params"]["dense"]))
        n = 0
        for ords, texts in kb.store.iter_chunks(gen):
            bm.add(ords, texts)
            if dense is not None:
                dense.add(ords, encode_texts(kb, texts, progress))
            n += len(ords)
        with kb.rw.write():
            kb._bm25, kb._dense = bm, dense
            commit(kb, gen + 1)  # rows stay visible
    return IndexResult(chunks_added=n)


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


def check_writable(kb: Collection) -> None:
    if kb.read_only:
        raise ConfigError(f"collection {kb.location} was opened read_only; open it with read_only=False to write")


@contextlib.contextmanager
def locked(kb: DirectoryCollection) -> Iterator[None]:
    fd = os.open(kb.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise CollectionLockedError(
                f"collection {kb.path} is locked by another writer; wait for it to finish and retry"
            ) from e
        yield
    finally:
        os.close(fd)


def refresh(kb: DirectoryCollection) -> None:
    """Pick up a generation committed by another process since this one was loaded."""
    current = read_manifest(kb.path)
    if current["generation"] != kb.generation:
        kb.manifest = current
        kb._bm25 = kb._dense = None


def encode_texts(kb: Collection, texts: Sequence[str], progress: bool) -> np.ndarray:
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
    kb: Collection, docs: Sequence[Doc], progress: bool, prepared: Prepared | None = None
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


def write(
    kb: DirectoryCollection,
    docs: list[Doc],
    *,
    must_exist: bool,
    progress: bool,
    delete: list[str] | None = None,
    prepared: Prepared | None = None,
) -> IndexResult:
    check_writable(kb)
    with locked(kb):
        refresh(kb)
        gen = kb.generation
        store = kb.store
        store.rollback(gen)
        ids = [d.id for d in docs]
        hashes = [content_id(d.text, d.meta) for d in docs]
        stored = store.doc_hashes(ids, gen)
        if must_exist and (missing := [i for i in ids if i not in stored]):
            raise DocumentNotFoundError(
                f"update() needs existing ids; not in {kb.path}: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''} (use add() for new documents)"
            )
        changed = [(d, h) for d, h in zip(docs, hashes, strict=True) if stored.get(d.id) != h]
        removed = [d.id for d, _ in changed if d.id in stored]
        if delete:
            removed += list(store.doc_hashes(delete, gen))
        unchanged = len(docs) - len(changed)
        if not changed and not removed:
            return IndexResult(unchanged=unchanged)
        parts, vecs = chunk_and_embed(kb, [d for d, _ in changed], progress, prepared)
        # above every row (deleted ones too) and every id BM25 holds: vacuumed rows may have held the largest ids
        next_ord = max(store.next_ord(), int(kb.bm25.slot_ord[-1]) + 1 if len(kb.bm25.slot_ord) else 0)
        chunk_rows: list[tuple[int, Doc]] = []
        doc_rows = []
        for d, h in changed:
            doc_rows.append((d.id, h, {k: v for k, v in d.meta.items() if k != "page_starts"}, len(parts[d.id])))
            for c in parts[d.id]:
                chunk_rows.append((next_ord, c))
                next_ord += 1
        texts = [index_text(c.text, c.meta) for _, c in chunk_rows]
        ords = np.asarray([o for o, _ in chunk_rows], dtype=np.int64)
        new_gen = gen + 1
        with kb.rw.write():
            try:
                removed_ords = store.write(new_gen, removed, doc_rows, chunk_rows)
                fault("after_store")
                bm = kb.bm25
                bm.delete(removed_ords)
                bm.add(ords, texts)
                if kb.has_dense:
                    dn = kb.dense
                    dn.remove(removed_ords)
                    if vecs is not None:
                        dn.add(ords, vecs)
                commit(kb, new_gen)
            except BaseException:
                if kb.generation == gen:  # not committed: undo; after the commit point there is nothing to undo
                    kb._bm25 = kb._dense = None  # in-memory indexes may hold the failed change
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


def commit(kb: DirectoryCollection, gen: int) -> None:
    old = {e["file"] for e in kb.manifest["payloads"].values()}
    payloads = {}
    bm_file = f"bm25-{gen:06d}.npz"
    kb.bm25.save(kb.path / bm_file)
    fault("after_bm25")
    payloads["bm25"] = {"file": bm_file, "sha256": sha256_file(kb.path / bm_file)}
    if kb.has_dense:
        d_file = f"dense-{gen:06d}.faiss"
        assert kb._dense is not None or kb.manifest["payloads"].get("dense")
        kb.dense.save(kb.path / d_file)
        payloads["dense"] = {"file": d_file, "sha256": sha256_file(kb.path / d_file)}
    fault("before_manifest")
    n_docs, n_chunks = kb.store.counts(gen)
    manifest = {
        **kb.manifest,
        "generation": gen,
        "pilotfish_version": __version__,
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "counts": {"documents": n_docs, "chunks": n_chunks},
        "payloads": payloads,
    }
    kb.manifest = write_manifest(kb.path, manifest)
    fault("after_manifest")
    keep = {e["file"] for e in payloads.values()}
    for f in old - keep:
        with contextlib.suppress(OSError):
            (kb.path / f).unlink()
    remove_orphans(kb, keep)
    kb.store.vacuum(gen)


def remove_orphans(kb: DirectoryCollection, keep: set[str]) -> None:
    for f in kb.path.iterdir():
        if f.name.startswith(("bm25-", "dense-")) and f.name not in keep:
            with contextlib.suppress(OSError):
                f.unlink()
