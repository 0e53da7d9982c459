"""Tables in a collection: the data in the collection's DuckDB, a searchable card per table in its indexes.

Each table's rows go into the DuckDB schema ``tbl`` under a name made from its title and a content hash
(``renaissance_band_3fa29c1e``), so re-indexing an unchanged file reuses the table and a changed one gets a
new table. Each table also becomes a *card*: a document (``meta.kind == "table"``) naming the table, its
source (file, sheet, source table), its columns with types, and sample values, which BM25 and the dense index
find like any passage. Cards of huge tables are built from a sample (the first ``CARD_SCAN_ROWS`` rows).

The card is committed with the collection's generation (manifest last), so a crash mid-ingest leaves the
previous cards in force; a data table no visible card names is dropped at the next ingest.

Example:
    >>> kb = Collection.create("kb")                                      # doctest: +SKIP
    >>> report = add_tables(kb, ["data/sales.csv", "data/staff.xlsx"])   # doctest: +SKIP
    >>> [t["table"] for t in table_cards(kb).values()]                   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.connectors.common import RawTable, Skipped, column_ids, quote_ident, quote_literal
from rag.connectors.tables import iter_cells, read_tables
from rag.errors import ConfigError, SourceError
from rag.retrievers.sql_guard import TABLE_SCHEMA
from rag.types import Doc

if TYPE_CHECKING:
    from rag.indexers.collection import Collection
    from rag.indexers.directory.collection import DirectoryCollection
    from rag.indexers.writes import IndexResult

SCHEMA = TABLE_SCHEMA
CARD_SCAN_ROWS = 10_000
CARD_VALUES = 30
CARD_WORDS = 1500
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "UBIGINT")


@dataclass
class TableReport:
    """What :func:`add_tables` did: the card documents written, the write's result and the sources skipped."""

    cards: list[Doc] = field(default_factory=list)
    result: IndexResult | None = None
    skipped: list[Skipped] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")[:40] or "table"


def _digest(raw: RawTable, title: str) -> str:
    h = hashlib.sha256(json.dumps([raw.name, title, raw.columns], default=str).encode())
    if raw.rows is not None:
        for row in iter_cells(raw.rows):
            h.update(json.dumps(row, ensure_ascii=False).encode())
    elif raw.file:  # read by DuckDB: the file's identity stands for its content
        st = Path(raw.file).stat()
        h.update(f"{Path(raw.file).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:8]


def _load(con: Any, raw: RawTable, physical: str) -> None:
    """Create ``tbl.<physical>`` from ``raw`` (types sniffed by DuckDB from the whole table)."""
    ids = column_ids(raw.columns)
    target = f"{SCHEMA}.{quote_ident(physical)}"
    if raw.rows is not None:
        fd, tmp = tempfile.mkstemp(suffix=".csv", prefix="pilotfish-table-")
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(ids)
                w.writerows(iter_cells(raw.rows))
            columns = ", ".join(
                f"{quote_literal(c)}: {quote_literal(_sniff_type(raw.rows, i))}" for i, c in enumerate(ids)
            )
            con.execute(
                f"CREATE TABLE {target} AS SELECT * FROM read_csv({quote_literal(tmp)}, header=true, delim=',', "
                "quote='\"', escape='\"', sample_size=-1, null_padding=false, strict_mode=true, "
                f"columns={{{columns}}})"
            )
        finally:
            os.unlink(tmp)
        return
    select = ", ".join(f"{quote_ident(c)} AS {quote_ident(i)}" for c, i in zip(raw.columns, ids, strict=True))
    if raw.attach:
        con.execute(f"ATTACH {quote_literal(raw.attach)} AS src (READ_ONLY)")
    try:
        con.execute(f"CREATE TABLE {target} AS SELECT {select} FROM ({raw.scan})")
    finally:
        if raw.attach:
            con.execute("DETACH src")


def _sniff_type(rows: Sequence[Sequence[Any]], i: int) -> str:
    """BIGINT, DOUBLE or VARCHAR for column ``i``: numeric only when every non-empty cell is a plain number
    (``1,000`` and ``17 years`` stay text, as written)."""
    kind = "BIGINT"
    seen = False
    for row in rows:
        v = row[i]
        if v is None or v == "":
            continue
        seen = True
        if isinstance(v, bool):
            return "VARCHAR"
        if isinstance(v, int):
            continue
        if isinstance(v, float):
            kind = "DOUBLE"
            continue
        s = str(v).strip()
        if re.fullmatch(r"[-+]?\d{1,18}", s):
            continue
        if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", s):
            kind = "DOUBLE"
            continue
        return "VARCHAR"
    return kind if seen else "VARCHAR"


DESCRIBE_PROMPT = "In one sentence, say what this table is about and what it can answer.\n\n{card}"


def _card(con: Any, raw: RawTable, physical: str, title: str, describe: Any = None) -> Doc:
    target = f"{SCHEMA}.{quote_ident(physical)}"
    desc = con.execute(f"DESCRIBE {target}").fetchall()
    row = con.execute(f"SELECT count(*) FROM {target}").fetchone()
    n_rows = int(row[0]) if row else 0
    ids = [d[0] for d in desc]
    types = [str(d[1]) for d in desc]
    sample = con.execute(f"SELECT * FROM {target} LIMIT {CARD_SCAN_ROWS}").fetchall()  # huge tables: a sample
    parts = []
    for i, (ident, label, typ) in enumerate(zip(ids, raw.columns, types, strict=True)):
        head = ident if ident == _slug(label) or not label else f"{ident} ({label.strip()})"
        values = [r[i] for r in sample if r[i] is not None]
        if typ.startswith(_NUMERIC):
            parts.append(f"{head}, number, {min(values)} to {max(values)}" if values else f"{head}, number")
            continue
        common = sorted(Counter(str(v) for v in values).items(), key=lambda vn: (-vn[1], vn[0]))
        shown = "; ".join(" ".join(v.split())[:60] for v, _ in common[:CARD_VALUES])
        parts.append(f"{head}, {'text' if typ == 'VARCHAR' else typ.lower()}: {shown}")
    where = (
        raw.source
        + (f", sheet {raw.sheet}" if raw.sheet else "")
        + (f", table {raw.source_table}" if raw.source_table else "")
    )
    lines = [
        f"Table {title}: {n_rows} rows, {len(ids)} columns ({', '.join(ids)}), from {where}.",
        *(f"- {p}" for p in parts),
    ]
    if describe is not None:  # an LLM-written description, right under the header line
        said = " ".join(str(describe.generate(DESCRIBE_PROMPT.format(card="\n".join(lines)[:2000]))).split())
        if said:
            lines.insert(1, f"Description: {said[:400]}")
    words = "\n".join(lines).split(" ")
    text = " ".join(words[:CARD_WORDS])
    meta = {
        "kind": "table",
        "source": raw.source,
        "title": title,
        "table": physical,
        "columns": ids,
        "labels": [str(c) for c in raw.columns],
        "types": types,
        "n_rows": n_rows,
        **({"sheet": raw.sheet} if raw.sheet else {}),
        **({"source_table": raw.source_table} if raw.source_table else {}),
        **raw.meta,
    }
    return Doc(text=text, id=raw.name, meta=meta)


def _existing(con: Any) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [SCHEMA]).fetchall()
    return {r[0] for r in rows}


def table_cards(collection: DirectoryCollection) -> dict[str, dict[str, Any]]:
    """The visible table cards' metadata, by card id."""
    return collection.store.metas(collection.generation, "table")


def add_tables(
    collection: Collection,
    sources: Iterable[str | Path | RawTable],
    *,
    root: str | Path | None = None,
    titles: Mapping[str, str] | None = None,
    describe: Any = None,
    progress: bool = False,
) -> TableReport:
    """Read tables from files (or take :class:`RawTable` objects), store them and index their cards.

    A source that cannot be read is reported in ``skipped`` (with the file and row) and the others are still
    stored. ``titles`` maps a table's name (``file`` or ``file:sheet``) to a title for its card; the default
    is the file stem (and sheet). Every card describes its table from the data (title, source, columns with
    types, value ranges, frequent values); ``describe``, a generator (the LLM), adds a one-sentence description
    it writes from that card. Re-adding an unchanged table changes nothing (with a greedy ``describe``).
    """
    if collection.read_only:
        raise ConfigError(f"collection {collection.location} is open read-only; open it for writing to add tables")
    sources = list(sources)
    from rag.indexers.directory.collection import DirectoryCollection

    if not isinstance(collection, DirectoryCollection):
        if not sources:
            return TableReport()
        raise ConfigError(
            f"collection {collection.location} cannot hold tables (a PostgreSQL store keeps documents only); "
            "index tables into a directory collection"
        )
    report = TableReport()
    con = collection.store.con
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    keep = {m["table"] for m in table_cards(collection).values()}
    for stale in _existing(con) - keep:  # left by a crashed or superseded ingest
        con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{quote_ident(stale)}")
    existing = _existing(con)
    for src in sources:
        try:
            raws = [src] if isinstance(src, RawTable) else read_tables(src, root)
        except SourceError as e:
            report.skipped.append(Skipped(e.source, e.reason))
            continue
        for raw in raws:
            part = raw.sheet or (raw.source_table or "").split(".")[-1]
            title = (titles or {}).get(raw.name) or Path(raw.source).stem + (f" {part}" if part else "")
            physical = f"{_slug(title)}_{_digest(raw, title)}"
            created = physical not in existing
            try:
                if created:
                    _load(con, raw, physical)
                    existing.add(physical)
                report.cards.append(_card(con, raw, physical, title, describe))
            except Exception as e:  # a duckdb or LLM error: report it, keep going
                if created:  # only what this call made; a table a visible card names stays
                    con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{quote_ident(physical)}")
                    existing.discard(physical)
                report.skipped.append(Skipped(raw.name, f"cannot load the table: {e}"))
    if report.cards:
        report.result = collection.add(report.cards, progress=progress)
    return report
