"""Metadata filters, translated to SQL over the JSON ``meta`` column: DuckDB's (the directory store) or
PostgreSQL's (``dialect="postgres"``, the pgvector store, where ``meta`` is JSONB).

A filter is a mapping from a metadata field to a condition:

* a scalar: equality, ``{"source": "handbook.pdf"}``
* a list/tuple/set: membership, ``{"lang": ["en", "de"]}``
* an operator mapping: ``{"year": {"$gte": 2020, "$lt": 2024}}`` with ``$eq $ne $gt $gte $lt $lte
  $in $nin``. Numbers compare numerically; ``datetime.date``/``datetime`` values and ISO date
  strings compare as timestamps; other strings compare as text.

Several fields are combined with AND. A field that no document has raises :class:`ConfigError`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from rag.errors import ConfigError

_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$")
_FIELD = re.compile(r"^[\w.\-]+$", re.UNICODE)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, dt.date | dt.datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return "date"
    if isinstance(value, str):
        return "str"
    raise ConfigError(
        f"filter value {value!r} has unsupported type {type(value).__name__}; use a string, number, bool or date"
    )


_NUM_RE = r"'^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'"
_DATE_RE = r"'^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?$'"


def _pg_expr(field: str, kind: str) -> str:
    """PostgreSQL has no TRY_CAST: a value that does not parse as the kind is NULL (so it matches nothing)."""
    v = f"(meta->>'{field}')"
    if kind == "num":
        return f"(CASE WHEN {v} ~ {_NUM_RE} THEN {v}::float8 END)"
    if kind == "date":
        return f"(CASE WHEN {v} ~ {_DATE_RE} THEN {v}::timestamp END)"
    if kind == "bool":
        return f"(CASE WHEN lower({v}) IN ('true', 'false', 't', 'f', '1', '0') THEN {v}::boolean END)"
    return v


def _expr(field: str, kind: str, dialect: str = "duckdb") -> str:
    if dialect == "postgres":
        return _pg_expr(field, kind)
    path = f"'$.\"{field}\"'"
    if kind == "num":
        return f"TRY_CAST(json_extract_string(meta, {path}) AS DOUBLE)"
    if kind == "date":
        return f"TRY_CAST(json_extract_string(meta, {path}) AS TIMESTAMP)"
    if kind == "bool":
        return f"TRY_CAST(json_extract_string(meta, {path}) AS BOOLEAN)"
    return f"json_extract_string(meta, {path})"


def _param(value: Any, kind: str) -> Any:
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day)
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    return value


def to_sql(
    filters: Mapping[str, Any] | None, known_fields: Iterable[str], dialect: str = "duckdb"
) -> tuple[str, list[Any]]:
    """Return ``(where_clause, params)``; the clause is ``TRUE`` for no filters. Parameters are marked ``?``
    (DuckDB) or ``%s`` (``dialect="postgres"``, psycopg)."""
    mark = "%s" if dialect == "postgres" else "?"
    if not filters:
        return "TRUE", []
    if not isinstance(filters, Mapping):
        raise ConfigError(f"filters must be a mapping of field -> condition, got {type(filters).__name__}")
    known = set(known_fields)
    clauses: list[str] = []
    params: list[Any] = []
    for field, cond in filters.items():
        if not isinstance(field, str) or not _FIELD.match(field):
            raise ConfigError(f"invalid filter field name {field!r}")
        if field not in known:
            raise ConfigError(f"unknown filter field {field!r}; fields in this collection: {sorted(known) or 'none'}")
        if isinstance(cond, Mapping):
            items = list(cond.items())
        elif isinstance(cond, list | tuple | set | frozenset):
            items = [("$in", list(cond))]
        else:
            items = [("$eq", cond)]
        for op, value in items:
            if op in ("$in", "$nin"):
                values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
                if not values:
                    clauses.append("FALSE" if op == "$in" else "TRUE")
                    continue
                kinds = {_kind(v) for v in values}
                kind = kinds.pop() if len(kinds) == 1 else "str"
                marks = ", ".join(mark for _ in values)
                neg = "NOT " if op == "$nin" else ""
                clauses.append(f"{_expr(field, kind, dialect)} {neg}IN ({marks})")
                params.extend(_param(v, kind) if kind != "str" else str(v) for v in values)
            elif op in _OPS:
                kind = _kind(value)
                clauses.append(f"{_expr(field, kind, dialect)} {_OPS[op]} {mark}")
                params.append(_param(value, kind))
            else:
                raise ConfigError(
                    f"unknown filter operator {op!r} on field {field!r}; use one of {sorted([*_OPS, '$in', '$nin'])}"
                )
    return " AND ".join(f"({c})" for c in clauses), params


def parse_cli_filter(expr: str) -> tuple[str, str, Any]:
    """Parse ``field=value``, ``field!=value``, ``field>=value`` (and ``> < <=``) from the CLI.

    Values that look like numbers become numbers. Returns ``(field, op, value)``.
    """
    m = re.match(r"^\s*([\w.\-]+)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$", expr)
    if not m:
        raise ConfigError(f"cannot parse filter {expr!r}; write FIELD=VALUE, FIELD>=VALUE, FIELD!=VALUE, ...")
    field, op, raw = m.groups()
    value: Any = raw
    for cast in (int, float):
        try:
            value = cast(raw)
            break
        except ValueError:
            continue
    ops = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
    return field, ops[op], value


def merge_cli_filters(exprs: Iterable[str]) -> dict[str, Any]:
    """Combine repeated ``--filter`` options; repeated equality on one field means membership."""
    out: dict[str, dict[str, Any]] = {}
    for e in exprs:
        field, op, value = parse_cli_filter(e)
        cond = out.setdefault(field, {})
        if op == "$eq" and ("$eq" in cond or "$in" in cond):
            cond["$in"] = [*cond.pop("$in", []), *([cond.pop("$eq")] if "$eq" in cond else []), value]
        else:
            cond[op] = value
    return dict(out)
