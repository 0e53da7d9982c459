"""BM25 for the PostgreSQL store: kept in the application process, built from the store and kept in step with it
through the change log.

Each write bumps ``state.generation`` and logs, under the new generation, the chunk ordinals it removed (``d``)
and added (``a``). Writers go one at a time (an advisory lock), so generations commit in order and a reader that
has applied the log up to generation *g* needs exactly the rows above *g*. Before each search the index asks the
store for its generation (one round trip) and applies what is new. The log is pruned (``LOG_KEEP`` generations
are kept; ``state.log_from`` says where it starts); a process that fell further behind rebuilds from the chunks.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from rag.indexers.bm25_index import BM25Index, BM25Params
from rag.indexers.store import index_text
from rag.indexers.tokenize import Tokenizer

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


def prune(con: Any, schema: str, generation: int) -> None:
    """Drop change-log rows more than ``LOG_KEEP`` generations old (inside the writer's transaction)."""
    cut = generation - LOG_KEEP
    if cut > 0:
        con.execute(f"DELETE FROM {schema}.changes WHERE generation <= %s", [cut])
        con.execute(f"UPDATE {schema}.state SET log_from = %s WHERE log_from < %s", [cut, cut])
