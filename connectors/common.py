"""What every reader shares: an input that was skipped, with its reason; bytes read as text; a table read from a
source (:class:`RawTable`), its column identifiers, and SQL quoting."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import SourceError

_IDENT = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class Skipped:
    """A file (or a line of one) that was not indexed, and why."""

    path: str
    reason: str


def decode_text(data: bytes, rel: str) -> str:
    """``data`` as UTF-8 text (a BOM dropped); :class:`SourceError` naming ``rel`` for binary or non-UTF-8 data."""
    if b"\x00" in data[:8192]:
        raise SourceError(rel, "binary content (NUL bytes), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(rel, f"not valid UTF-8 (byte {e.start}); convert it to UTF-8") from e


@dataclass
class RawTable:
    """A table read from a source, before it is stored.

    ``rows`` holds the cell values when Python read the file (CSV, JSON, Excel, SQLite); ``scan`` is a DuckDB
    ``SELECT`` over ``file`` otherwise (Parquet, DuckDB files), with ``attach`` the database it needs.
    """

    source: str
    name: str
    columns: list[str]
    rows: list[list[Any]] | None = None
    scan: str | None = None
    attach: str | None = None
    file: str | None = None
    sheet: str | None = None
    source_table: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def column_ids(labels: Sequence[str]) -> list[str]:
    """SQL identifiers for column labels: snake_case, ``col_`` before a leading digit, unique.

    >>> column_ids(["Year", "Chart-Positions\\nUK", "1st place", "Year", ""])
    ['year', 'chart_positions_uk', 'col_1st_place', 'year_2', 'col_5']
    """
    out: list[str] = []
    seen: set[str] = set()
    for i, label in enumerate(labels, 1):
        ident = _IDENT.sub("_", str(label).lower()).strip("_") or f"col_{i}"
        if ident[0].isdigit():
            ident = f"col_{ident}"
        base, n = ident, 2
        while ident in seen:
            ident, n = f"{base}_{n}", n + 1
        seen.add(ident)
        out.append(ident)
    return out


def quote_ident(ident: str) -> str:
    """A quoted SQL identifier."""
    return '"' + ident.replace('"', '""') + '"'


def quote_literal(value: str | Path) -> str:
    """A quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"
