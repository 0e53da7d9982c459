"""The write path of a directory collection: every add, update, delete and rebuild is one new generation.

A write runs under the collection's lock file: roll back any uncommitted rows, chunk and embed the new
documents (nothing is written before embedding succeeds), write rows tagged with the new generation,
update the in-memory indexes, save new payload files, then rename the manifest into place (the
commit point), and finally remove the previous payload files and rows deleted for good.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.checks import sha256_file
from rag.errors import CollectionLockedError, DocumentNotFoundError
from rag.indexers.dense import DenseIndex, DenseParams
from rag.indexers.faults import fault
from rag.indexers.manifest import read_manifest, write_manifest
from rag.indexers.store import DocStore, index_text
from rag.indexers.writes import (
    IndexResult,
    Prepared,
    ReadWriteLock,
    Target,
    check_writable,
    chunk_and_embed,
    encode_texts,
)
from rag.retrievers.bm25_index import BM25Index, BM25Params
from rag.text.tokenizer import Tokenizer
from rag.types import Doc, content_id
from rag.version import __version__


class Directory(Target, Protocol):
    """What the write path needs of a :class:`~rag.indexers.directory.collection.Directory`: its
    folder, its generation, its store and its in-memory indexes (set to None to be loaded again)."""

    path: Path
    rw: ReadWriteLock
    _bm25: BM25Index | None
    _dense: DenseIndex | None

    @property
    def generation(self) -> int: ...

    @property
    def store(self) -> DocStore: ...

    @property
    def bm25(self) -> BM25Index: ...

    @property
    def dense(self) -> DenseIndex: ...


def rebuild(kb: Directory, *, progress: bool = False) -> IndexResult:
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


@contextlib.contextmanager
def locked(kb: Directory) -> Iterator[None]:
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


def refresh(kb: Directory) -> None:
    """Pick up a generation committed by another process since this one was loaded."""
    current = read_manifest(kb.path)
    if current["generation"] != kb.generation:
        kb.manifest = current
        kb._bm25 = kb._dense = None


def write(
    kb: Directory,
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
        doc_rows, chunk_rows = _rows(kb, changed, parts)
        texts = [index_text(c.text, c.meta) for _, c in chunk_rows]
        ords = np.asarray([o for o, _ in chunk_rows], dtype=np.int64)
        removed_ords = _apply(kb, gen, removed, doc_rows, chunk_rows, ords, texts, vecs)
        n_upd = len(set(removed) & {d.id for d, _ in changed})
        return IndexResult(
            added=len(changed) - n_upd,
            updated=n_upd,
            unchanged=unchanged,
            deleted=len(removed) - n_upd,
            chunks_added=len(chunk_rows),
            chunks_removed=len(removed_ords),
        )


def _rows(
    kb: Directory, changed: list[tuple[Doc, str]], parts: dict[str, list[Doc]]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, Doc]]]:
    """The document rows (id, hash, metadata, chunk count) and the chunk rows (ordinal, chunk) of a write. New
    ordinals start above every row (deleted ones too) and every id BM25 holds: vacuumed rows may have held the
    largest ids."""
    next_ord = max(kb.store.next_ord(), int(kb.bm25.slot_ord[-1]) + 1 if len(kb.bm25.slot_ord) else 0)
    chunk_rows: list[tuple[int, Doc]] = []
    doc_rows: list[tuple[Any, ...]] = []
    for d, h in changed:
        doc_rows.append((d.id, h, {k: v for k, v in d.meta.items() if k != "page_starts"}, len(parts[d.id])))
        for c in parts[d.id]:
            chunk_rows.append((next_ord, c))
            next_ord += 1
    return doc_rows, chunk_rows


def _apply(
    kb: Directory,
    gen: int,
    removed: list[str],
    doc_rows: list[tuple[Any, ...]],
    chunk_rows: list[tuple[int, Doc]],
    ords: np.ndarray,
    texts: list[str],
    vecs: np.ndarray | None,
) -> list[int]:
    """Write generation ``gen + 1``: the store's rows, then the in-memory indexes, then commit, under the write
    lock (searches see all of it or none). Before the commit point a failure is undone; returns the ordinals
    removed."""
    with kb.rw.write():
        try:
            removed_ords: list[int] = kb.store.write(gen + 1, removed, doc_rows, chunk_rows)
            fault("after_store")
            bm = kb.bm25
            bm.delete(removed_ords)
            bm.add(ords, texts)
            if kb.has_dense:
                dn = kb.dense
                dn.remove(removed_ords)
                if vecs is not None:
                    dn.add(ords, vecs)
            commit(kb, gen + 1)
        except BaseException:
            if kb.generation == gen:  # not committed: undo; after the commit point there is nothing to undo
                kb._bm25 = kb._dense = None  # in-memory indexes may hold the failed change
                with contextlib.suppress(Exception):
                    kb.store.rollback(gen)
            raise
    return removed_ords


def commit(kb: Directory, gen: int) -> None:
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


def remove_orphans(kb: Directory, keep: set[str]) -> None:
    for f in kb.path.iterdir():
        if f.name.startswith(("bm25-", "dense-")) and f.name not in keep:
            with contextlib.suppress(OSError):
                f.unlink()
