"""The tables of database files: every table of a DuckDB or SQLite file, opened read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rag.connectors.common import RawTable, quote_ident
from rag.errors import SourceError


def read_duckdb(p: Path, rel: str) -> list[RawTable]:
    import duckdb

    try:
        con = duckdb.connect(str(p), read_only=True)
    except duckdb.Error as e:
        raise SourceError(rel, f"not a readable DuckDB database ({e})") from e
    try:
        names = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT internal ORDER BY schema_name, table_name"
        ).fetchall()
        out = []
        for schema, table in names:
            relation = f"{quote_ident(schema)}.{quote_ident(table)}"
            cols = [d[0] for d in con.execute(f"SELECT * FROM {relation} LIMIT 0").description]
            out.append(
                RawTable(
                    source=rel,
                    name=f"{rel}:{table}",
                    columns=cols,
                    scan=f"SELECT * FROM src.{quote_ident(schema)}.{quote_ident(table)}",
                    attach=str(p),
                    file=str(p),
                    source_table=f"{schema}.{table}",
                )
            )
    finally:
        con.close()
    if not out:
        raise SourceError(rel, "the database has no tables")
    return out


def read_sqlite(p: Path, rel: str) -> list[RawTable]:
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    except sqlite3.Error as e:
        raise SourceError(rel, f"not a readable SQLite database ({e})") from e
    out = []
    try:
        for table in names:
            if table.startswith("sqlite_"):
                continue
            cur = con.execute(f"SELECT * FROM {quote_ident(table)}")
            cols = [d[0] for d in cur.description]
            rows = [list(r) for r in cur]
            out.append(RawTable(source=rel, name=f"{rel}:{table}", columns=cols, rows=rows, source_table=table))
    except sqlite3.Error as e:
        raise SourceError(rel, f"cannot read table {table!r} ({e})") from e
    finally:
        con.close()
    if not out:
        raise SourceError(rel, "the database has no tables")
    return out
