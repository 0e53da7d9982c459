"""The document store: documents, chunks and metadata in one DuckDB file.

Rows carry the generation that added them (``added_gen``) and, once replaced or deleted, the
generation that removed them (``deleted_gen``). Readers see the rows of the collection's committed
generation (from the manifest); a writer first rolls back rows of any generation that was never
committed (a crash mid-write), so the collection always opens at its last committed state.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexFormatError, MissingDependencyError
from rag.indexers.filters import to_sql
from rag.types import Doc

_VISIBLE = "added_gen <= {g} AND (deleted_gen IS NULL OR deleted_gen > {g})"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id VARCHAR, hash VARCHAR, meta JSON, n_chunks INTEGER, added_gen BIGINT, deleted_gen BIGINT);
CREATE TABLE IF NOT EXISTS chunks (
    ord BIGINT, id VARCHAR, parent VARCHAR, text VARCHAR, meta JSON, added_gen BIGINT, deleted_gen BIGINT);
"""


def damaged_store(path: Path, e: Exception) -> IndexFormatError:
    return IndexFormatError(
        f"the document store {path} is damaged or unreadable ({e}); restore it from a backup, or re-index the "
        "source documents into a new collection (`rag index DOCS --collection NEW`)"
    )


def _guard(method: Any) -> Any:
    """Turn DuckDB's "Corrupt database file" (a block failing its checksum) into :func:`damaged_store`."""

    @functools.wraps(method)
    def guarded(self: DocStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            if "Corrupt database file" in str(e) and "duckdb" in type(e).__module__:
                raise damaged_store(self.path, e) from e
            raise

    return guarded


def _guard_reads(cls: type) -> type:
    for name, member in list(vars(cls).items()):
        if inspect.isfunction(member) and not name.startswith("_") and name != "close":
            setattr(cls, name, _guard(member))
    return cls


@_guard_reads
class DocStore:
    """DuckDB-backed storage of documents and chunks (``store.duckdb`` in a collection)."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        try:
            import duckdb
        except ImportError as e:  # pragma: no cover
            raise MissingDependencyError("duckdb", purpose="the document store") from e
        self.path = Path(path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            if "could not set lock" in str(e).lower():
                raise IndexFormatError(f"cannot open the document store {self.path}: {e}") from e
            raise damaged_store(self.path, e) from e
        if not read_only:
            self.con.execute(_SCHEMA)
        self._fields: tuple[int, set[str]] | None = None
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._cursors: list[Any] = []
        self._cursor_lock = threading.Lock()

    def _read(self) -> Any:
        """The connection for reads: the store's own in the thread that opened it (so a writer sees its open
        transaction), a per-thread cursor elsewhere (a DuckDB connection refuses concurrent calls)."""
        if threading.get_ident() == self._owner:
            return self.con
        cur = getattr(self._local, "cur", None)
        if cur is None:
            with self._cursor_lock:
                cur = self._local.cur = self.con.cursor()
                self._cursors.append(cur)
        return cur

    def close(self) -> None:
        with self._cursor_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        self.con.close()

    # ------------------------------------------------------------------ generations
    def rollback(self, gen: int) -> None:
        """Drop every change made by generations above ``gen`` (never committed)."""
        self.con.execute("BEGIN")
        for table in ("documents", "chunks"):
            self.con.execute(f"DELETE FROM {table} WHERE added_gen > ?", [gen])
            self.con.execute(f"UPDATE {table} SET deleted_gen = NULL WHERE deleted_gen > ?", [gen])
        self.con.execute("COMMIT")

    def vacuum(self, gen: int) -> None:
        """Physically remove rows deleted at or before the committed generation ``gen``."""
        for table in ("documents", "chunks"):
            self.con.execute(f"DELETE FROM {table} WHERE deleted_gen <= ?", [gen])

    # ------------------------------------------------------------------ writes
    def next_ord(self) -> int:
        row = self.con.execute("SELECT max(ord) FROM chunks").fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def write(
        self,
        gen: int,
        removed_docs: Sequence[str],
        docs: Sequence[tuple[str, str, dict[str, Any], int]],
        chunks: Sequence[tuple[int, Doc]],
    ) -> np.ndarray:
        """In one transaction: mark ``removed_docs`` (and their chunks) deleted at ``gen`` and insert
        new ``docs`` (id, hash, meta, n_chunks) and ``chunks`` (ord, chunk). Returns removed ords."""
        con = self.con
        con.execute("BEGIN")
        try:
            removed = np.zeros(0, dtype=np.int64)
            if removed_docs:
                ids = list(removed_docs)
                vis = _VISIBLE.format(g="?")
                removed = (
                    con.execute(
                        f"SELECT ord FROM chunks WHERE parent IN (SELECT unnest(?)) AND {vis} ORDER BY ord",
                        [ids, gen, gen],
                    )
                    .fetchnumpy()["ord"]
                    .astype(np.int64)
                )
                for table, key in (("documents", "id"), ("chunks", "parent")):
                    con.execute(
                        f"UPDATE {table} SET deleted_gen = ? WHERE {key} IN (SELECT unnest(?)) AND deleted_gen IS NULL",
                        [gen, ids],
                    )
            if docs:
                cols = list(zip(*docs, strict=True))
                con.execute(
                    "INSERT INTO documents SELECT unnest(?), unnest(?), unnest(?)::JSON, unnest(?), ?, NULL",
                    [list(cols[0]), list(cols[1]), [_dumps(m) for m in cols[2]], list(cols[3]), gen],
                )
            if chunks:
                con.execute(
                    "INSERT INTO chunks SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)::JSON, ?, NULL",
                    [
                        [o for o, _ in chunks],
                        [c.id for _, c in chunks],
                        [str(c.meta.get("parent", c.id)) for _, c in chunks],
                        [c.text for _, c in chunks],
                        [_dumps(c.meta) for _, c in chunks],
                        gen,
                    ],
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return removed

    # ------------------------------------------------------------------ reads
    def doc_hashes(self, ids: Sequence[str], gen: int) -> dict[str, str]:
        if not ids:
            return {}
        rows = self.con.execute(
            f"SELECT id, hash FROM documents WHERE id IN (SELECT unnest(?)) AND {_VISIBLE.format(g='?')}",
            [list(ids), gen, gen],
        ).fetchall()
        return dict(rows)

    def chunks(self, ords: Sequence[int] | np.ndarray) -> dict[int, Doc]:
        """Chunks by ordinal (the caller passes ordinals of its committed indexes)."""
        ords_l = [int(o) for o in ords]
        if not ords_l:
            return {}
        rows = (
            self._read()
            .execute("SELECT ord, id, text, meta FROM chunks WHERE ord IN (SELECT unnest(?))", [ords_l])
            .fetchall()
        )
        return {int(o): Doc(text=t, id=i, meta=json.loads(m) if m else {}) for o, i, t, m in rows}

    def chunks_of(self, parents: Sequence[str], gen: int) -> list[Doc]:
        """The visible chunks of the given documents, in document then position order."""
        rows = (
            self._read()
            .execute(
                f"SELECT ord FROM chunks WHERE parent IN (SELECT unnest(?)) AND {_VISIBLE.format(g='?')} "
                "ORDER BY parent, ord",
                [list(parents), gen, gen],
            )
            .fetchall()
        )
        found = self.chunks([o for (o,) in rows])
        return [found[o] for (o,) in rows]

    def iter_chunks(self, gen: int, batch: int = 10_000) -> Iterator[tuple[np.ndarray, list[str]]]:
        """Visible (ords, texts) in ordinal order, in batches (for rebuilding indexes)."""
        cur = self._read().execute(
            f"SELECT ord, text, meta FROM chunks WHERE {_VISIBLE.format(g='?')} ORDER BY ord", [gen, gen]
        )
        while rows := cur.fetchmany(batch):
            yield (
                np.asarray([r[0] for r in rows], dtype=np.int64),
                [index_text(r[1], json.loads(r[2]) if r[2] else {}) for r in rows],
            )

    def filter_ords(self, filters: Mapping[str, Any] | None, gen: int) -> np.ndarray:
        where, params = to_sql(filters, self.fields(gen))
        out = (
            self._read()
            .execute(
                f"SELECT ord FROM chunks WHERE {_VISIBLE.format(g='?')} AND {where} ORDER BY ord",
                [gen, gen, *params],
            )
            .fetchnumpy()["ord"]
        )
        return np.asarray(out, dtype=np.int64)

    def fields(self, gen: int) -> set[str]:
        """Metadata keys of the chunks visible at ``gen``. The rows a committed generation sees never
        change, so the answer is cached per generation (filters ask on every query)."""
        if self._fields is None or self._fields[0] != gen:
            rows = (
                self._read()
                .execute(
                    f"SELECT DISTINCT unnest(json_keys(meta)) FROM chunks WHERE {_VISIBLE.format(g='?')}",
                    [gen, gen],
                )
                .fetchall()
            )
            self._fields = (gen, {r[0] for r in rows})
        return set(self._fields[1])

    def counts(self, gen: int) -> tuple[int, int]:
        vis = _VISIBLE.format(g="?")
        d = self._read().execute(f"SELECT count(*) FROM documents WHERE {vis}", [gen, gen]).fetchone()
        c = self._read().execute(f"SELECT count(*) FROM chunks WHERE {vis}", [gen, gen]).fetchone()
        return int(d[0]) if d else 0, int(c[0]) if c else 0

    def scan(self) -> int:
        """Read every value of every table in the store (DuckDB verifies each block's checksum as it reads it);
        returns the number of rows read. Raises ``duckdb.Error`` on a damaged block."""
        con = self._read()
        q = "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY ALL"
        tables = con.execute(q).fetchall()
        rows = 0
        for schema, table in tables:
            name = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
            n = con.execute(f"SELECT count(*), sum(hash(t)) FROM {name} AS t").fetchone()
            rows += int(n[0]) if n else 0
        return rows

    def metas(self, gen: int, kind: str) -> dict[str, dict[str, Any]]:
        """Metadata of the visible documents whose ``meta.kind`` is ``kind`` (e.g. the table cards), by id."""
        rows = (
            self._read()
            .execute(
                f"SELECT id, meta FROM documents WHERE {_VISIBLE.format(g='?')} "
                "AND json_extract_string(meta, '$.kind') = ? ORDER BY id",
                [gen, gen, kind],
            )
            .fetchall()
        )
        return {i: json.loads(m) for i, m in rows}

    def doc_ids(self, gen: int) -> list[str]:
        rows = (
            self._read()
            .execute(f"SELECT id FROM documents WHERE {_VISIBLE.format(g='?')} ORDER BY id", [gen, gen])
            .fetchall()
        )
        return [r[0] for r in rows]


def index_text(text: str, meta: Mapping[str, Any]) -> str:
    """The text that BM25 and the encoder see for a chunk: its title (a contextual header), then text."""
    title = meta.get("title")
    return f"{title}\n{text}" if title and not text.startswith(str(title)) else text


def _dumps(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False, default=str)
