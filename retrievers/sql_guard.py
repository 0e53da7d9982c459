"""Validating and running SQL that an LLM wrote: one read-only SELECT over allowed tables, bounded.

:func:`validate_sql` parses the query with DuckDB's own parser and fails closed: it accepts exactly one
``SELECT`` statement (CTEs, joins, subqueries, set operations, window functions, ``VALUES``) whose every table
is one of the allowed tables (or a CTE of the query), and rejects comments, several statements, any other
statement type (DROP, ATTACH, COPY, PRAGMA, SET, INSERT, CALL, ...), table functions (``read_csv``,
``glob``, ...), file paths used as tables, other schemas and catalogs, ``SHOW``/``DESCRIBE``/``SUMMARIZE``,
functions that reach outside the data or change state (``getenv``, ``getvariable``, ``nextval``,
``write_log``, built-in macros that query the catalog, ...), and calls that build one huge value
(``repeat``, ``lpad``, ``range``, ``printf`` widths, ... beyond :data:`MAX_GENERATED` characters or elements:
DuckDB cannot interrupt a single such call, so the timeout would not stop it). A CTE's name covers only the
references DuckDB resolves to it (its scope, the CTEs after it, its own recursive part), so naming a CTE like
a store table does not let the real table through; DuckDB's own table-name extraction double-checks the
tables. A rejection raises :class:`~rag.errors.UnsafeQueryError` saying why; the query is never executed.

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

import contextlib
import functools
import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rag.errors import UnsafeQueryError

TABLE_SCHEMA = "tbl"  # the schema a collection's tables live in (see rag.indexers.tables)
MAX_SQL_CHARS = 4000
MAX_GENERATED = 10_000  # the most characters or list elements one repeat/lpad/range/printf/... call may build
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
    r"force_checkpoint|enable_\w*|disable_\w*|set\w*|sql_auto_complete|which_secret|delta_scan|iceberg_\w*|"
    r"getvariable|nextval|currval|write_log)$"
)
_PRINTF_SPEC = re.compile(r"%[-+ #0']*(\d+|\*)?(?:\.(\d+|\*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*\}")
_PART = r'"(?:[^"]|"")*"|[^."\s]+'
_QUALIFIED = re.compile(rf"(?:{_PART})(?:\.(?:{_PART}))*")
_IDLE_MAX = 4  # parser connections kept between validations
_idle: list[Any] = []
_idle_lock = threading.Lock()


def short_sql(sql: str) -> str:
    s = " ".join(sql.split())
    return repr(s if len(s) <= 120 else s[:117] + "...")


@contextlib.contextmanager
def _parser() -> Iterator[Any]:
    """An in-memory DuckDB connection (about 5 MB) to parse queries with, never to run them: borrowed from a small
    pool, so parsing costs about 2 ms instead of 100 ms for a new connection, and a server's many worker threads
    share a few connections instead of holding one each."""
    import duckdb

    with _idle_lock:
        con = _idle.pop() if _idle else None
    con = con or duckdb.connect()
    try:
        yield con
    finally:
        with _idle_lock:
            keep = len(_idle) < _IDLE_MAX
            if keep:
                _idle.append(con)
        if not keep:
            con.close()


def _tree(sql: str) -> dict[str, Any]:
    with _parser() as con:
        out = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    return json.loads(out[0]) if out else {"error": True, "error_message": "no parse tree"}


@functools.cache
def _query_macros() -> frozenset[str]:
    """Built-in scalar macros whose body queries the catalog (``pg_get_viewdef``, ``get_block_size``, ...)."""
    q = (
        "SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE function_type = 'macro' "
        "AND regexp_matches(lower(coalesce(macro_definition, '')), '\\b(select|from)\\b')"
    )
    with _parser() as con:
        rows = con.execute(q).fetchall()
    return frozenset(r[0] for r in rows)


@dataclass
class _Found:
    tables: list[tuple[str, str, str, frozenset[str]]]  # catalog, schema, name, the CTE names in scope there
    functions: list[dict[str, Any]]


def _walk(node: Any, scope: frozenset[str], found: _Found) -> None:
    if isinstance(node, list):
        for v in node:
            _walk(v, scope, found)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if "class" not in node and isinstance(kind, str) and kind not in _NODES:
        what = node.get("function", {}).get("function_name") if kind == "TABLE_FUNCTION" else None
        label = f"the table function {what}()" if what else kind.replace("_", " ").lower()
        raise UnsafeQueryError(f"the query uses {label}, which is not allowed")
    if kind == "BASE_TABLE":
        name = (node.get("catalog_name", ""), node.get("schema_name", ""), node.get("table_name", ""))
        found.tables.append((*name, scope))
    if node.get("class") == "FUNCTION":
        found.functions.append(node)
    cte_map = node.get("cte_map")
    entries = cte_map.get("map", []) if isinstance(cte_map, dict) else []
    names = [str(e.get("key", "")).lower() for e in entries]
    for i, e in enumerate(entries):  # a CTE sees the ones before it; itself only from its recursive part
        _walk(e.get("value"), scope | frozenset(names[:i]), found)
    scope |= frozenset(names)
    for key, v in node.items():
        if key == "right" and kind == "RECURSIVE_CTE_NODE":
            _walk(v, scope | {str(node.get("cte_name", "")).lower()}, found)
        elif key != "cte_map":
            _walk(v, scope, found)


def _arguments(fn: dict[str, Any]) -> list[Any]:
    args = fn.get("arguments")
    if isinstance(args, list):
        return [a.get("expression", a) if isinstance(a, dict) else a for a in args]
    return list(fn.get("children", []))


def _constant(expr: Any) -> str | float | None:
    """The value of a literal number or string in the parse tree; None for anything else."""
    if not isinstance(expr, dict) or expr.get("class") != "CONSTANT":
        return None
    lit = expr.get("literal") or {}
    kind, text = lit.get("kind"), str(lit.get("text", ""))
    if kind == "STRING":
        return text
    try:
        return float(text) if kind in ("INTEGER", "NUMERIC") else None
    except ValueError:
        return None


def _widths(fn: str, fmt: str) -> float:
    """The widest field a printf/format string asks for (infinite for a width given by an argument)."""
    if fn == "printf":
        parts = [p for m in _PRINTF_SPEC.finditer(fmt) for p in m.groups() if p]
    elif re.search(r"\{[^{}]*\{", fmt):  # {:>{}}: a nested field, the width is an argument
        return float("inf")
    else:
        parts = [p for m in _FORMAT_SPEC.finditer(fmt) for p in re.findall(r"\d+", m.group())]
    return max((float("inf") if p == "*" else float(p) for p in parts), default=0.0)


def _size_problem(fn: str, args: list[Any]) -> str | None:
    """Why a call that builds a value of a size its arguments set is refused (None: it is small, or not such a
    function). Sizes must be literals, so that they can be checked here."""
    vals = [_constant(a) for a in args] + [None, None, None]
    size_at = {"lpad": 1, "rpad": 1, "list_resize": 1, "array_resize": 1, "to_base": 2}
    if fn == "repeat":
        text, n = vals[0], vals[1]
        if not isinstance(text, str) or not isinstance(n, float):
            return "needs a literal text and a literal count"
        size = len(text) * n
    elif fn in size_at:
        n = vals[size_at[fn]]
        if not isinstance(n, float):
            if fn == "to_base" and len(args) <= 2:
                return None
            return "needs a literal size"
        size = n
    elif fn in ("range", "generate_series"):
        nums = [v for v in vals[: len(args)] if isinstance(v, float)]
        if not nums or len(nums) != len(args):
            return "needs literal integer bounds"
        start, stop, step = ([0.0, *nums, 1.0] if len(nums) == 1 else [*nums, 1.0])[:3]
        size = (stop - start) / step if step else float("inf")
    elif fn in ("printf", "format"):
        if not isinstance(vals[0], str):
            return "needs a literal format string"
        size = _widths(fn, vals[0])
    else:
        return None
    return None if size <= MAX_GENERATED else f"would build {size:.0f} characters or elements (at most {MAX_GENERATED})"


def _check_functions(functions: list[dict[str, Any]], sql: str) -> None:
    macros = _query_macros()
    for node in functions:
        fn = str(node.get("function_name", "")).lower()
        if _DENIED_FUNCTION.match(fn) or fn in macros:
            raise UnsafeQueryError(f"the function {fn}() is not allowed in a query: {short_sql(sql)}")
        problem = _size_problem(fn, _arguments(node))
        if problem:
            raise UnsafeQueryError(f"{fn}() {problem}: {short_sql(sql)}")


def _split_name(qualified: str) -> list[str]:
    """The parts of a name as ``get_table_names(qualified=True)`` writes it: ``tbl."a.b" AS x`` -> tbl, a.b."""
    m = _QUALIFIED.match(qualified)
    parts = re.findall(_PART, m.group(0) if m else qualified)
    return [p[1:-1].replace('""', '"') if p.startswith('"') else p for p in parts]


def validate_sql(sql: str, allowed: Iterable[str], schema: str = TABLE_SCHEMA) -> str:
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
        raise UnsafeQueryError(f"the SQL does not parse ({str(e).splitlines()[0]}): {short_sql(sql)}") from e
    if any(t[1] == duckdb.token_type.comment for t in tokens):
        raise UnsafeQueryError(f"comments are not allowed in the SQL: {short_sql(sql)}")
    if len(statements) != 1:
        raise UnsafeQueryError(f"exactly one statement is allowed; got {len(statements)}: {short_sql(sql)}")
    kind = statements[0].type.name
    if kind != "SELECT":
        raise UnsafeQueryError(f"only a SELECT query is allowed, not {kind}: {short_sql(sql)}")
    body = sql.strip().rstrip(";").strip()
    tree = _tree(body)
    if tree.get("error"):
        raise UnsafeQueryError(f"only a plain SELECT query is allowed ({tree.get('error_message')}): {short_sql(sql)}")
    found = _Found([], [])
    try:
        _walk(tree.get("statements", []), frozenset(), found)
    except UnsafeQueryError as e:
        raise UnsafeQueryError(f"{e}: {short_sql(sql)}") from None
    ok = {t.lower() for t in allowed}

    def check_table(parts: list[str], ctes: frozenset[str]) -> None:
        *where, name = parts
        if len(where) > 1 or (where and where[0].lower() != schema) or name.lower() not in (ctes if not where else ok):
            raise UnsafeQueryError(
                f"the query reads {'.'.join(parts)!r}, which is not one of the allowed tables {sorted(ok)}: "
                + short_sql(sql)
            )

    for catalog, sch, name, ctes in found.tables:
        check_table([p for p in (catalog, sch, name) if p], frozenset(ok) | ctes)
    _check_functions(found.functions, sql)
    try:  # DuckDB's own list of the tables the query reads (CTE references resolved), as a second check
        with _parser() as con:
            names = con.get_table_names(body, qualified=True)
    except duckdb.Error as e:
        raise UnsafeQueryError(f"the query does not bind ({str(e).splitlines()[0]}): {short_sql(sql)}") from e
    for qualified in sorted(names):
        check_table(_split_name(qualified), frozenset(ok))
    return body
