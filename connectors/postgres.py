"""Reading the tables of a PostgreSQL database, read-only, for :func:`rag.indexers.tables.add_tables`.

The connection runs in a read-only session (``default_transaction_read_only``), lists the base tables and
views of one schema (or the ones named) and reads each into a :class:`~rag.connectors.tables.RawTable`; the
password never reaches the cards (the source is the DSN without it). Tables longer than ``max_rows`` are cut
there, and the card says so (``meta.truncated_at``). Needs ``psycopg`` (``pip install 'pilotfish[pg]'``).

Example:
    >>> raws = read_postgres("postgresql://reader@127.0.0.1:5432/shop", tables=["orders"])  # doctest: +SKIP
    >>> add_tables(kb, raws)                                                                # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.connectors.common import RawTable
from rag.errors import MissingDependencyError, SourceError

MAX_ROWS = 1_000_000


def is_postgres_url(path: str) -> bool:
    return bool(re.match(r"^postgres(ql)?://", str(path)))


def redact(dsn: str) -> str:
    """The DSN without its password: ``postgresql://user:secret@host/db`` → ``postgresql://user@host/db``."""
    return re.sub(r"^(postgres(?:ql)?://[^:@/]*):[^@/]*@", r"\1@", dsn)


def _cell(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else str(v)


def read_postgres(
    dsn: str, schema: str = "public", tables: Sequence[str] | None = None, max_rows: int = MAX_ROWS
) -> list[RawTable]:
    """The tables (and views) of ``schema`` in the database at ``dsn``, read in a read-only session."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError as e:
        raise MissingDependencyError("psycopg", extra="pg", purpose="reading PostgreSQL tables") from e
    source = redact(dsn)
    try:
        con = psycopg.connect(dsn, connect_timeout=10, options="-c default_transaction_read_only=on")
    except psycopg.Error as e:
        raise SourceError(source, f"cannot connect ({str(e).strip().splitlines()[0]})") from e
    out: list[RawTable] = []
    try:
        con.read_only = True
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
                [schema],
            )
        ]
        missing = sorted(set(tables or []) - set(names))
        if missing:
            raise SourceError(source, f"no table {missing} in schema {schema!r}; it has {names}")
        db = con.info.dbname
        for name in tables or names:
            ident = sql.Identifier(schema, name)
            cur = con.execute(sql.SQL("SELECT * FROM {} LIMIT %s").format(ident), [max_rows + 1])
            columns = [d.name for d in cur.description or []]
            rows = [[_cell(v) for v in r] for r in cur.fetchall()]
            meta = {"truncated_at": max_rows} if len(rows) > max_rows else {}
            out.append(
                RawTable(
                    source=source,
                    name=f"{db}:{schema}.{name}",
                    columns=columns,
                    rows=rows[:max_rows],
                    source_table=f"{schema}.{name}",
                    meta=meta,
                )
            )
    except psycopg.Error as e:
        raise SourceError(source, f"cannot read the tables ({str(e).strip().splitlines()[0]})") from e
    finally:
        con.close()
    if not out:
        raise SourceError(source, f"schema {schema!r} has no tables")
    return out
