"""The write path of the PostgreSQL store: chunk and embed outside the database, then one transaction.

The transaction takes the collection's advisory lock (writers of one collection, in any process, go one at a
time; their generations follow their commit order, which is what lets BM25 follow the change log), re-reads the
stored content hashes (another writer may have stored the same documents meanwhile: those are skipped), bumps
the generation, deletes replaced and deleted documents (their chunks go with them), COPYs the new rows in and
logs every removed and added chunk ordinal under the new generation.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import numpy as np

from rag.errors import DocumentNotFoundError, StoreUnavailableError
from rag.indexers import writes
from rag.indexers.faults import fault
from rag.indexers.pg import bm25 as pg_bm25
from rag.indexers.writes import IndexResult
from rag.types import Doc, content_id


class Writable(writes.Target, pg_bm25.Synced, Protocol):
    """What the write path needs of a :class:`~rag.indexers.pg.collection.PgCollection`: its schema ``name`` and
    what the shared write helpers and the BM25 catch-up need."""

    name: str


def stored_hashes(con: Any, schema: str, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(con.execute(f"SELECT id, hash FROM {schema}.documents WHERE id = ANY(%s)", [ids]).fetchall())


def write(
    kb: Writable,
    docs: list[Doc],
    *,
    must_exist: bool,
    progress: bool,
    delete: list[str] | None = None,
    prepared: writes.Prepared | None = None,
) -> IndexResult:
    import psycopg

    writes.check_writable(kb)
    s = kb.name
    try:
        con = kb.con()
        hashes = {d.id: content_id(d.text, d.meta) for d in docs}
        stored = stored_hashes(con, s, list(hashes))
        if must_exist and (missing := [i for i in hashes if i not in stored]):
            raise DocumentNotFoundError(
                f"update() needs existing ids; not in {kb.location}: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''} (use add() for new documents)"
            )
        changed = [d for d in docs if stored.get(d.id) != hashes[d.id]]
        if not changed and not stored_hashes(con, s, list(delete or [])):
            return IndexResult(unchanged=len(docs))
        parts, vecs = writes.chunk_and_embed(kb, changed, progress, prepared)
        chunks = [c for d in changed for c in parts[d.id]]
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(hashtext('pilotfish.write.' || %s))", [s])
            now = stored_hashes(con, s, [*hashes, *(delete or [])])
            todo = [d for d in changed if now.get(d.id) != hashes[d.id]]  # still to write, under the lock
            removed = [d.id for d in todo if d.id in now] + [i for i in delete or [] if i in now]
            if not todo and not removed:
                return IndexResult(unchanged=len(docs))
            gen = con.execute(f"UPDATE {s}.state SET generation = generation + 1 RETURNING generation").fetchone()[0]
            gone = _delete(con, s, removed)
            rows = _rows(todo, parts, chunks, vecs)
            new = con.execute(f"SELECT nextval('{s}.chunk_ord') FROM generate_series(1, %s)", [len(rows)])
            ords = [r[0] for r in new.fetchall()]
            _copy(con, s, gen, todo, hashes, parts, rows, ords, kb.has_dense)
            fault("pg_before_commit")
            _log(con, s, gen, gone, ords, rows)
    except psycopg.OperationalError as e:
        raise StoreUnavailableError(
            f"lost the connection to {kb.location} while writing ({str(e).strip()}); nothing of this write was "
            "stored. Re-run it when the database is back: documents already stored are skipped"
        ) from e
    pg_bm25.catch_up(kb)  # follow the log now, so this process's next search sees the write
    n_upd = len({d.id for d in todo} & set(removed))
    return IndexResult(
        added=len(todo) - n_upd,
        updated=n_upd,
        unchanged=len(docs) - len(todo),
        deleted=len(removed) - n_upd,
        chunks_added=len(ords),
        chunks_removed=len(gone),
    )


def _delete(con: Any, s: str, removed: list[str]) -> list[int]:
    """Delete documents and their chunks (inside the writer's transaction); the chunk ordinals removed."""
    rows = con.execute(f"DELETE FROM {s}.chunks WHERE parent = ANY(%s) RETURNING ord", [removed]).fetchall()
    con.execute(f"DELETE FROM {s}.documents WHERE id = ANY(%s)", [removed])
    return [r[0] for r in rows]


def _log(con: Any, s: str, gen: int, gone: list[int], ords: list[int], rows: list[tuple[Any, ...]]) -> None:
    """Log generation ``gen``'s removed (``d``) and added (``a``) ordinals for BM25 to follow, prune the old log,
    and record the metadata fields the new chunks bring."""
    con.execute(
        f"INSERT INTO {s}.changes SELECT %s, o, op FROM unnest(%s::bigint[], %s::char[]) AS t(o, op)",
        [gen, [*gone, *ords], ["d"] * len(gone) + ["a"] * len(ords)],
    )
    pg_bm25.prune(con, s, gen)
    keys = sorted({key for r in rows for key in r[3]})
    con.execute(f"INSERT INTO {s}.fields SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", [keys])


def _rows(
    todo: list[Doc], parts: dict[str, list[Doc]], chunks: list[Doc], vecs: np.ndarray | None
) -> list[tuple[str, str, str, dict[str, Any], Any]]:
    """Chunk rows (id, parent, text, meta, vector) of the documents still to write; ``chunks`` and ``vecs`` hold
    every changed document's chunks in order (a document another writer stored meanwhile is left out here)."""
    pos = {id(c): i for i, c in enumerate(chunks)}
    return [
        (c.id, str(c.meta.get("parent", d.id)), c.text, c.meta, None if vecs is None else vecs[pos[id(c)]])
        for d in todo
        for c in parts[d.id]
    ]


def _copy(
    con: Any,
    s: str,
    gen: int,
    todo: list[Doc],
    hashes: dict[str, str],
    parts: dict[str, list[Doc]],
    rows: list[tuple[str, str, str, dict[str, Any], Any]],
    ords: list[int],
    dense: bool,
) -> None:
    from psycopg.types.json import Jsonb

    def jsonb(meta: dict[str, Any]) -> Any:
        return Jsonb(meta, dumps=lambda m: json.dumps(m, ensure_ascii=False, default=str))

    with con.cursor() as cur:
        with cur.copy(f"COPY {s}.documents (id, hash, meta, n_chunks, generation) FROM STDIN") as cp:
            for d in todo:
                meta = {k: v for k, v in d.meta.items() if k != "page_starts"}
                cp.write_row((d.id, hashes[d.id], jsonb(meta), len(parts[d.id]), gen))
        cols = "ord, id, parent, text, meta, generation" + (", embedding" if dense else "")
        with cur.copy(f"COPY {s}.chunks ({cols}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "text", "text", "jsonb", "int8"] + (["vector"] if dense else []))
            for o, (cid, parent, text, meta, vec) in zip(ords, rows, strict=True):
                cp.write_row((o, cid, parent, text, jsonb(meta), gen, *([vec] if dense else [])))
