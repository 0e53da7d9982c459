"""BM25 for the PostgreSQL store: kept in the application process, built from the store and kept in step with it
through the change log.

Each write bumps ``state.generation`` and logs, under the new generation, the chunk ordinals it removed (``d``)
and added (``a``). Writers go one at a time (an advisory lock), so generations commit in order and a reader that
has applied the log up to generation *g* needs exactly the rows above *g*. Before each search the index asks the
store for its generation (one round trip) and applies what is new. The log is pruned (``LOG_KEEP`` generations
are kept; ``state.log_from`` says where it starts); a process that fell further behind rebuilds from the chunks.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from rag.indexers.store import index_text
from rag.indexers.writes import ReadWriteLock
from rag.retrievers.bm25_index import BM25Index, BM25Params
from rag.text.tokenizer import Tokenizer

LOG_KEEP = 1000  # generations of change log kept; older ones are pruned by the writer


class StoreBM25:
    """The BM25 index of one PostgreSQL collection in this process."""

    def __init__(self, schema: str, settings: dict[str, Any]) -> None:
        self.schema, self.settings = schema, settings
        self.index: BM25Index | None = None
        self.generation = -1
        self.rebuilds = 0
        self._lock = threading.Lock()

    def current(self, con: Any) -> BM25Index:
        """The index, brought up to the store's current generation first."""
        with self._lock:
            gen, log_from = con.execute(f"SELECT generation, log_from FROM {self.schema}.state").fetchone()
            if self.index is None or self.generation < log_from or (gen > self.generation and not self._follow(con)):
                self._build(con)
            assert self.index is not None
            return self.index

    def rebuild(self, con: Any) -> BM25Index:
        with self._lock:
            self._build(con)
            assert self.index is not None
            return self.index

    def _build(self, con: Any) -> None:
        s = self.settings
        bm = BM25Index(BM25Params(**s["params"]), Tokenizer(**s["tokenizer"]))
        with con.transaction():  # one snapshot: the rows and the generation they make
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            gen = int(con.execute(f"SELECT generation FROM {self.schema}.state").fetchone()[0])
            with con.cursor(name="pilotfish_bm25") as cur:
                cur.itersize = 20_000
                cur.execute(f"SELECT ord, text, meta FROM {self.schema}.chunks ORDER BY ord")
                while rows := cur.fetchmany(20_000):
                    bm.add([r[0] for r in rows], [index_text(r[1], r[2]) for r in rows])
        self.index, self.generation = bm, gen
        self.rebuilds += 1

    def _follow(self, con: Any) -> bool:
        """Apply the log up to the current generation; False when the rows needed were pruned meanwhile."""
        assert self.index is not None
        with con.transaction():
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            gen, log_from = con.execute(f"SELECT generation, log_from FROM {self.schema}.state").fetchone()
            if self.generation < log_from:
                return False
            log = con.execute(
                f"SELECT ord, op FROM {self.schema}.changes WHERE generation > %s AND generation <= %s",
                [self.generation, gen],
            ).fetchall()
            deleted = {o for o, op in log if op == "d"}
            added = sorted(o for o, op in log if op == "a" and o not in deleted)
            rows = con.execute(
                f"SELECT ord, text, meta FROM {self.schema}.chunks WHERE ord = ANY(%s) ORDER BY ord", [added]
            ).fetchall()
        self.index.delete(np.asarray(sorted(deleted), dtype=np.int64))
        if rows:
            self.index.add([r[0] for r in rows], [index_text(r[1], r[2]) for r in rows])
        self.generation = int(gen)
        return True


class Synced(Protocol):
    """What :func:`catch_up` and :func:`snapshot` need of a :class:`~rag.indexers.pg.collection.PgCollection`:
    its connections, its generation in the store, its lock, this thread's state and its :class:`StoreBM25`."""

    location: str
    rw: ReadWriteLock
    _local: threading.local
    _bm25: StoreBM25

    def con(self) -> Any: ...

    def db_generation(self) -> int: ...


def catch_up(kb: Synced) -> BM25Index:
    """Bring this process's BM25 up to the store's generation. Applying the log changes the index in place, so it
    happens under the collection's write lock: no search of this process is reading the index meanwhile."""
    bm = kb._bm25
    if bm.index is None or kb.db_generation() != bm.generation:
        with kb.rw.write():
            bm.current(kb.con())
    assert bm.index is not None
    return bm.index


@contextlib.contextmanager
def snapshot(kb: Synced) -> Iterator[None]:
    """One consistent view for a group of reads (a search, or a hybrid search's runs): this thread's queries run in
    one REPEATABLE READ transaction, and BM25 is at exactly that transaction's generation, so every result comes
    from one committed state even while other processes write. When BM25 is not at the snapshot's generation (another
    process wrote), the log is applied outside the snapshot and a new one taken. Nested blocks share the outer one."""
    local = kb._local
    if getattr(local, "snapshot", 0):
        local.snapshot += 1
        try:
            yield
        finally:
            local.snapshot -= 1
        return
    for _ in range(100):
        with kb.rw.read():
            con = kb.con()
            with con.transaction():
                con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if kb._bm25.index is not None and kb.db_generation() == kb._bm25.generation:
                    local.snapshot = 1
                    try:
                        yield
                    finally:
                        local.snapshot = 0
                    return
        catch_up(kb)  # BM25 is behind the snapshot (another process wrote): apply the log, then look again
    raise RuntimeError(f"{kb.location}: no consistent view after 100 tries; writes are landing faster than reads")


def prune(con: Any, schema: str, generation: int) -> None:
    """Drop change-log rows more than ``LOG_KEEP`` generations old (inside the writer's transaction)."""
    cut = generation - LOG_KEEP
    if cut > 0:
        con.execute(f"DELETE FROM {schema}.changes WHERE generation <= %s", [cut])
        con.execute(f"UPDATE {schema}.state SET log_from = %s WHERE log_from < %s", [cut, cut])
