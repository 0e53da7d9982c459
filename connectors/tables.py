"""Reading tables: CSV, TSV, Parquet, JSON/JSONL, Excel, and the tables of DuckDB and SQLite files.

Every source becomes one or more :class:`RawTable` (column labels, and either rows read by Python or a
DuckDB query over the file); :func:`read_tables` yields them and :mod:`rag.indexers.tables` loads them into
the collection's DuckDB. Row-level problems are reported with the file and row number
(``sales.csv: row 7 has 5 fields, the header has 4; fix the row or quote the comma``). Column labels are kept
as written for display; SQL sees snake_case identifiers made from them (:func:`~rag.connectors.common.column_ids`).

A JSONL file whose records carry a ``text`` field is a document corpus (BEIR style), not a table; see
:func:`is_table_file`.

Example:
    >>> [t.name for t in read_tables("data/sales.xlsx")]   # doctest: +SKIP
    ['sales.xlsx:2023', 'sales.xlsx:2024']
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.connectors.common import RawTable, decode_text, quote_literal
from rag.connectors.databases import read_duckdb, read_sqlite
from rag.errors import SourceError

MAX_UNZIPPED = 512 * 1024 * 1024  # an Excel workbook's unpacked size
TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".json", ".jsonl", ".xlsx", ".xlsm", ".duckdb", ".sqlite", ".sqlite3"}


def is_table_file(path: str | Path) -> bool:
    """Whether ``path`` is read as a table: a tabular suffix; JSONL only when its first line is an object
    without a ``text`` field (else it is a document corpus)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        return False
    if suffix != ".jsonl":
        return True
    with p.open("rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    first = json.loads(raw)
                except ValueError:
                    return False  # the document reader reports the bad lines
                return isinstance(first, dict) and "text" not in first
    return True


def read_tables(path: str | Path, root: str | Path | None = None) -> list[RawTable]:
    """The tables in one file. Raises :class:`SourceError` naming the file (and row) when it cannot be read."""
    p = Path(path)
    rel = p.relative_to(root).as_posix() if root else p.name
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise SourceError(rel, f"not a table file ({suffix or 'no suffix'}); supported: {sorted(TABLE_SUFFIXES)}")
    if not p.is_file():
        raise SourceError(rel, "no such file")
    if p.stat().st_size == 0:
        raise SourceError(rel, "empty file")
    if suffix in (".csv", ".tsv"):
        return [_delimited(p, rel, "\t" if suffix == ".tsv" else None)]
    if suffix in (".json", ".jsonl"):
        return [_json(p, rel, lines=suffix == ".jsonl")]
    if suffix in (".xlsx", ".xlsm"):
        from rag.connectors.isolate import run_isolated

        return run_isolated(rel, _excel, p, rel)
    if suffix == ".parquet":
        return [_parquet(p, rel)]
    if suffix == ".duckdb":
        return read_duckdb(p, rel)
    return read_sqlite(p, rel)


def _check_rows(rel: str, header: Sequence[Any], rows: Iterable[Sequence[Any]], first_row: int) -> list[list[Any]]:
    """Rows padded/validated against the header; a row longer than the header is an error naming it."""
    out: list[list[Any]] = []
    n = len(header)
    for i, row in enumerate(rows, first_row):
        cells = list(row)
        while len(cells) > n and cells[-1] in (None, ""):
            cells.pop()
        if len(cells) > n:
            raise SourceError(
                rel, f"row {i} has {len(cells)} fields, the header has {n}; fix the row or quote the field"
            )
        if not any(c not in (None, "") for c in cells):
            continue
        out.append(cells + [None] * (n - len(cells)))
    return out


def _delimited(p: Path, rel: str, delimiter: str | None) -> RawTable:
    text = decode_text(p.read_bytes(), rel)
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        header, body = _parse_csv(text, delimiter, None)
    except SourceError as e:  # some writers escape quotes with a backslash (\") instead of doubling them
        if '\\"' not in text:
            raise SourceError(rel, e.reason) from None
        try:
            header, body = _parse_csv(text, delimiter, "\\")
        except SourceError:
            raise SourceError(rel, e.reason) from None
    if not any(h.strip() for h in header):
        raise SourceError(rel, "the header row (row 1) is empty; put column names in the first row")
    rows = _check_rows(rel, header, body, first_row=2)
    return RawTable(source=rel, name=rel, columns=[h.strip() for h in header], rows=rows)


def _parse_csv(text: str, delimiter: str, escapechar: str | None) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, escapechar=escapechar, strict=True)
    try:
        header = next(reader)
        return header, list(reader)
    except StopIteration:
        raise SourceError("", "no header row") from None
    except csv.Error as e:
        raise SourceError("", f"malformed CSV at row {reader.line_num}: {e}") from e


def _json(p: Path, rel: str, lines: bool) -> RawTable:
    text = decode_text(p.read_bytes(), rel)
    records: list[Any] = []
    if lines:
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SourceError(rel, f"line {i} is not valid JSON ({e.msg}); fix or remove the line") from e
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SourceError(rel, f"not valid JSON at line {e.lineno} ({e.msg})") from e
        records = data if isinstance(data, list) else [data]
    columns: dict[str, None] = {}
    for i, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise SourceError(rel, f"record {i} is a {type(rec).__name__}, not an object; a table needs one per row")
        columns.update(dict.fromkeys(rec))
    if not columns:
        raise SourceError(rel, "no records with fields")
    cols = list(columns)

    def cell(v: Any) -> Any:
        return json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v

    rows = [[cell(rec.get(c)) for c in cols] for rec in records]
    return RawTable(source=rel, name=rel, columns=cols, rows=rows)


def _check_unzipped_size(p: Path, rel: str) -> None:
    """Refuse a workbook (a zip archive) that unpacks to more than ``MAX_UNZIPPED`` bytes: a zip bomb, or a
    sheet too large to read. Python's zipfile never inflates a member past its declared size, so the sizes
    declared in the archive are the bound."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: openpyxl says so below
    if total > MAX_UNZIPPED:
        raise SourceError(
            rel, f"unpacks to {total:,} bytes (the limit is {MAX_UNZIPPED:,}): a zip bomb, or too large; split it"
        )


def _excel(p: Path, rel: str) -> list[RawTable]:
    try:
        import openpyxl
    except ImportError as e:  # pragma: no cover - a core dependency
        from rag.errors import MissingDependencyError

        raise MissingDependencyError("openpyxl", purpose="reading Excel files") from e
    _check_unzipped_size(p, rel)
    try:
        wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile/KeyError/InvalidFileException for broken files
        raise SourceError(rel, f"not a readable Excel workbook ({type(e).__name__}: {e})") from e
    out: list[RawTable] = []
    try:
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            header: list[Any] | None = None
            at = 0
            for n, row in enumerate(rows, 1):  # the first non-empty row is the header
                if any(c not in (None, "") for c in row):
                    header, at = list(row), n
                    break
            if header is None:
                continue
            while header and header[-1] in (None, ""):
                header.pop()
            body = _check_rows(f"{rel} (sheet {ws.title!r})", header, rows, first_row=at + 1)
            labels = ["" if h is None else str(h).strip() for h in header]
            out.append(RawTable(source=rel, name=f"{rel}:{ws.title}", columns=labels, rows=body, sheet=ws.title))
    finally:
        wb.close()
    if not out:
        raise SourceError(rel, "every sheet is empty")
    return out


def _parquet(p: Path, rel: str) -> RawTable:
    import duckdb

    scan = f"SELECT * FROM read_parquet({quote_literal(p)})"
    try:
        cols = [d[0] for d in duckdb.connect().execute(f"{scan} LIMIT 0").description]
    except duckdb.Error as e:
        raise SourceError(rel, f"not a readable Parquet file ({e})") from e
    return RawTable(source=rel, name=rel, columns=cols, scan=scan, file=str(p))


def iter_cells(rows: Iterable[Sequence[Any]]) -> Iterator[list[str]]:
    """Rows as CSV-ready strings (None → empty, which DuckDB reads as NULL)."""
    for row in rows:
        yield ["" if c is None else str(c) for c in row]
