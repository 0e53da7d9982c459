"""The PostgreSQL store's ANN index (pgvector HNSW or IVFFlat, cosine): building it, dropping it for a bulk load,
and the nearest-neighbour query that uses it (see :mod:`rag.indexers.pg.collection`).

Building the index once after a large load is several times faster than inserting into it row by row (measured
in benchmarks/README.md), so a bulk load drops it and builds it at the end; a writer that opens the collection
builds it when a crash left it missing. ANN queries run with pgvector's iterative index scans, so a filter that
rejects most rows still returns ``k`` of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.indexers.dense import DenseParams

NAME = "chunks_embedding"
BULK_MIN = 1000  # documents: smaller ingests update the ANN index row by row
BUILD_MEMORY = "512MB"  # maintenance_work_mem while building (the HNSW graph should fit)
_USING = {"hnsw": "hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc})",
          "ivf": "ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})"}  # fmt: skip


def exists(con: Any, schema: str) -> bool:
    q = "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s"
    return con.execute(q, [schema, NAME]).fetchone() is not None


def drop(con: Any, schema: str) -> None:
    con.execute(f"DROP INDEX IF EXISTS {schema}.{NAME}")


def ensure(con: Any, schema: str, p: DenseParams) -> None:
    """Build the index ``p`` asks for when it is missing (IVFFlat: one list per 1,000 rows, up to ``nlist``)."""
    if p.kind == "flat" or exists(con, schema):
        return
    rows = int(con.execute(f"SELECT count(*) FROM {schema}.chunks").fetchone()[0])
    using = _USING[p.kind].format(m=p.m, efc=p.ef_construction, lists=max(1, min(p.nlist, rows // 1000)))
    with con.transaction():
        con.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
        con.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON {schema}.chunks USING {using}")


def nearest(
    con: Any, schema: str, p: DenseParams, query_vec: np.ndarray, k: int, where: str, params: list[Any], exact: bool
) -> list[tuple[int, str, str, dict[str, Any], float]]:
    """The ``k`` rows nearest to ``query_vec`` among those matching ``where``: (ord, id, text, meta, distance)."""
    vec = np.asarray(query_vec, dtype=np.float32).reshape(-1)
    with con.transaction():
        if exact:
            con.execute("SET LOCAL enable_indexscan = off")
        elif p.kind == "hnsw":
            con.execute(f"SET LOCAL hnsw.ef_search = {max(int(p.ef_search), k)}")
            con.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        elif p.kind == "ivf":
            con.execute(f"SET LOCAL ivfflat.probes = {int(p.nprobe)}")
            con.execute("SET LOCAL ivfflat.iterative_scan = relaxed_order")
        rows: list[tuple[int, str, str, dict[str, Any], float]] = con.execute(
            "SELECT ord, id, text, meta, d FROM (SELECT ord, id, text, meta, embedding <=> %s AS d "
            f"FROM {schema}.chunks WHERE {where} ORDER BY d LIMIT %s) AS nearest ORDER BY d, ord",
            [vec, *params, k],
        ).fetchall()
    return rows


def health(con: Any, schema: str, p: DenseParams | None) -> list[str]:
    """What is wrong with a collection's rows and ANN index: chunks a document does not account for, chunks
    without an embedding, a missing or invalid (half-built) index. Each problem says what to do."""
    problems = []
    q = (
        f"SELECT (SELECT coalesce(sum(n_chunks), 0) FROM {schema}.documents), (SELECT count(*) FROM {schema}.chunks)"
        + (f", (SELECT count(*) FROM {schema}.chunks WHERE embedding IS NULL)" if p is not None else ", 0")
    )
    declared, stored, unembedded = con.execute(q).fetchone()
    if declared != stored or unembedded:
        problems.append(
            f"schema {schema}: documents declare {declared} chunks, {stored} are stored, {unembedded} lack an "
            "embedding; delete the affected documents (`rag delete ID... --store URL`) and index them again"
        )
    if p is not None and p.kind != "flat":
        row = con.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            [schema, NAME],
        ).fetchone()
        if row is None or not row[0]:
            state = "missing" if row is None else "invalid (a build was interrupted)"
            problems.append(f"schema {schema}: the {p.kind} index is {state}; run `rag reindex --store URL`")
    return problems
