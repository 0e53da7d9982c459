"""Validating and running SQL that an LLM wrote: one read-only SELECT over allowed tables, bounded.

:func:`validate_sql` parses the query with DuckDB's own parser and fails closed: it accepts exactly one
``SELECT`` statement (CTEs, joins, subqueries, set operations, window functions, ``VALUES``) whose every table
is one of the allowed tables (or a CTE of the query), and rejects comments, several statements, any other
statement type (DROP, ATTACH, COPY, PRAGMA, SET, INSERT, CALL, ...), table functions (``read_csv``,
``glob``, ...), file paths used as tables, other schemas and catalogs, ``SHOW``/``DESCRIBE``/``SUMMARIZE``,
and functions that reach outside the data (``getenv``, ...). A rejection raises
:class:`~rag.errors.UnsafeQueryError` saying why; the query is never executed.

:func:`run_sql` executes a validated query wrapped in ``LIMIT`` on its own cursor, interrupting it after
``timeout`` seconds.

Example:
    >>> validate_sql("SELECT count(*) FROM staff WHERE city = 'Lisbon'", {"staff"})
    "SELECT count(*) FROM staff WHERE city = 'Lisbon'"
    >>> validate_sql("DROP TABLE staff", {"staff"})
    Traceback (most recent call last):
    rag.errors.UnsafeQueryError: only a SELECT query is allowed, not DROP: 'DROP TABLE staff'
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rag.errors import UnsafeQueryError

MAX_SQL_CHARS = 4000
_NODES = {
    "SELECT_NODE",
    "SET_OPERATION_NODE",
    "RECURSIVE_CTE_NODE",
    "CTE_NODE",
    "BASE_TABLE",
    "SUBQUERY",
    "JOIN",
    "EMPTY",
    "EMPTY_FROM",
    "EXPRESSION_LIST",
    "ORDER_MODIFIER",
    "LIMIT_MODIFIER",
    "LIMIT_PERCENT_MODIFIER",
    "DISTINCT_MODIFIER",
    "ASCENDING",
    "DESCENDING",
    "ORDER_DEFAULT",
}
_DENIED_FUNCTION = re.compile(
    r"^(getenv|current_setting|read_\w*|glob|\w*_scan|query|query_table|sniff_csv|parquet_\w*|json_execute\w*|"
    r"duckdb_\w*|pragma_\w*|http\w*|load|install|attach|detach|export\w*|copy\w*|system|shell|checkpoint|"
    r"force_checkpoint|enable_\w*|disable_\w*|set\w*|sql_auto_complete|which_secret|delta_scan|iceberg_\w*)$"
)


def _short(sql: str) -> str:
    s = " ".join(sql.split())
    return repr(s if len(s) <= 120 else s[:117] + "...")


def _tree(sql: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    try:
        out = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    finally:
        con.close()
    return json.loads(out[0]) if out else {"error": True, "error_message": "no parse tree"}


def _walk(node: Any, tables: list[tuple[str, str, str]], functions: list[str], ctes: set[str]) -> None:
    if isinstance(node, list):
        for v in node:
            _walk(v, tables, functions, ctes)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if "class" not in node and isinstance(kind, str) and kind not in _NODES:
        what = node.get("function", {}).get("function_name") if kind == "TABLE_FUNCTION" else None
        label = f"the table function {what}()" if what else kind.replace("_", " ").lower()
        raise UnsafeQueryError(f"the query uses {label}, which is not allowed")
    if kind == "BASE_TABLE":
        tables.append((node.get("catalog_name", ""), node.get("schema_name", ""), node.get("table_name", "")))
    if node.get("class") == "FUNCTION":
        functions.append(str(node.get("function_name", "")).lower())
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        ctes.update(str(e.get("key", "")).lower() for e in cte_map.get("map", []))
    for v in node.values():
        _walk(v, tables, functions, ctes)


def validate_sql(sql: str, allowed: Iterable[str], schema: str = "tbl") -> str:
    """``sql`` stripped of a trailing semicolon when it is one safe SELECT over ``allowed`` tables.

    Tables may be named bare or qualified with ``schema``. Raises :class:`UnsafeQueryError` otherwise.
    """
    import duckdb

    if not isinstance(sql, str) or not sql.strip():
        raise UnsafeQueryError("the SQL query is empty; expected one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise UnsafeQueryError(f"the SQL query is {len(sql)} characters long (limit {MAX_SQL_CHARS})")
    try:
        tokens = duckdb.tokenize(sql)
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise UnsafeQueryError(f"the SQL does not parse ({str(e).splitlines()[0]}): {_short(sql)}") from e
    if any(t[1] == duckdb.token_type.comment for t in tokens):
        raise UnsafeQueryError(f"comments are not allowed in the SQL: {_short(sql)}")
    if len(statements) != 1:
        raise UnsafeQueryError(f"exactly one statement is allowed; got {len(statements)}: {_short(sql)}")
    kind = statements[0].type.name
    if kind != "SELECT":
        raise UnsafeQueryError(f"only a SELECT query is allowed, not {kind}: {_short(sql)}")
    body = sql.strip().rstrip(";").strip()
    tree = _tree(body)
    if tree.get("error"):
        raise UnsafeQueryError(f"only a plain SELECT query is allowed ({tree.get('error_message')}): {_short(sql)}")
    tables: list[tuple[str, str, str]] = []
    functions: list[str] = []
    ctes: set[str] = set()
    try:
        _walk(tree.get("statements", []), tables, functions, ctes)
    except UnsafeQueryError as e:
        raise UnsafeQueryError(f"{e}: {_short(sql)}") from None
    ok = {t.lower() for t in allowed}
    for catalog, sch, name in tables:
        qualified = ".".join(p for p in (catalog, sch, name) if p)
        if catalog or (sch and sch.lower() != schema) or name.lower() not in (ok | ctes if not sch else ok):
            raise UnsafeQueryError(
                f"the query reads {qualified!r}, which is not one of the allowed tables {sorted(ok)}: {_short(sql)}"
            )
    for fn in functions:
        if _DENIED_FUNCTION.match(fn):
            raise UnsafeQueryError(f"the function {fn}() is not allowed in a query: {_short(sql)}")
    return body


@dataclass(frozen=True)
class SQLResult:
    """Rows of a query, its columns, whether the row limit cut it, and how long it ran."""

    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    elapsed_ms: float


def run_sql(con: Any, sql: str, *, limit: int = 50, timeout: float = 5.0, schema: str = "tbl") -> SQLResult:
    """Execute a query already passed by :func:`validate_sql`: at most ``limit`` rows, interrupted after
    ``timeout`` seconds (raises :class:`UnsafeQueryError` then). ``con`` is a DuckDB connection; the query runs
    on a cursor of its own with ``schema`` first on the search path."""
    import duckdb

    cur = con.cursor()
    timer = threading.Timer(timeout, cur.interrupt)
    t0 = time.perf_counter()
    try:
        cur.execute(f"SET search_path = '{schema}'")
        timer.start()
        cur.execute(f"SELECT * FROM ({sql}) AS q LIMIT {int(limit) + 1}")
        rows = cur.fetchall()
        columns = [d[0] for d in cur.description or []]
    except duckdb.InterruptException as e:
        raise UnsafeQueryError(f"the query ran over {timeout:g}s and was stopped: {_short(sql)}") from e
    finally:
        timer.cancel()
        cur.close()
    return SQLResult(
        sql=sql,
        columns=columns,
        rows=rows[:limit],
        truncated=len(rows) > limit,
        elapsed_ms=round((time.perf_counter() - t0) * 1000, 2),
    )
