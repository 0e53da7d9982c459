"""The table retriever: find the tables a question is about, then answer from their rows or with SQL.

Tables are found through their cards (see :mod:`rag.indexers.tables`) with the collection's own BM25 and
dense indexes. Then, by ``mode``:

* ``rows``: the best-matching rows of those tables (BM25 over each row's ``column: value`` text) become
  citable hits: ``meta`` names the table, its source file and the row number, with the row's columns and values.
* ``sql``: a table operation parsed by rules (:mod:`rag.retrievers.table_ops`) answers when one applies; otherwise
  the LLM writes one query against the tables' schemas (with three sample rows each); the query is
  validated (:func:`~rag.retrievers.sql_guard.validate_sql`), run with a row limit and a timeout, and the
  result table becomes one citable hit showing the SQL. A rejected or failing query is logged in the trace and
  sent back to the LLM once with the error (``retries``); it never runs unvalidated. Cell values reach the
  LLM as data: whitespace-collapsed in SQL comments, with chat-template control tokens removed.

Aggregations (count, sum, max, filter-and-sum) need ``sql``: rows alone show the LLM a handful of rows.

Example:
    >>> tables = TableRetriever(Collection.open("kb"), mode="sql", generator=LocalGenerator())  # doctest: +SKIP
    >>> tables.retrieve("How many people work in the Lisbon office?")[0].doc.text              # doctest: +SKIP
    'SQL over offices (offices.csv): SELECT sum(staff) FROM offices_3fa29c1e WHERE city = ...'
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rag.checks import check_k, check_query
from rag.errors import ConfigError, UnsafeQueryError
from rag.retrievers.base import Searchable
from rag.retrievers.sql_guard import TABLE_SCHEMA, validate_sql
from rag.retrievers.table_sql import REPAIR, SQL_PROMPT, SQLResult, extract_sql, run_sql
from rag.text.injection import strip_control
from rag.types import Doc, Hit

if TYPE_CHECKING:
    from rag.retrievers.bm25_index import BM25Index

log = logging.getLogger(__name__)
MODES = ("rows", "sql")


class TableSource(Searchable, Protocol):
    """A collection holding tables: searchable for its table cards, with its DuckDB store (``store.con``) where
    the tables live in schema :data:`~rag.retrievers.sql_guard.TABLE_SCHEMA` (a directory collection)."""

    store: Any


@dataclass(frozen=True)
class TableRef:
    """A table found for a question: its card id, score and card metadata (``table``, ``columns``, ...)."""

    id: str
    score: float
    meta: Mapping[str, Any]

    @property
    def physical(self) -> str:
        return str(self.meta["table"])

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or self.id)


def _cell(v: Any, width: int = 40) -> str:
    s = " ".join(str(v).split()) if v is not None else ""
    return s if len(s) <= width else s[: width - 1] + "…"


class TableRetriever:
    """A :class:`~rag.protocols.Retriever` over the tables of a collection.

    Args:
        collection: a collection with tables (``rag index`` of CSV/Excel/Parquet/... files, or
            :func:`rag.indexers.tables.add_tables`).
        mode: ``rows`` (best-matching rows as hits) or ``sql`` (the LLM writes a query; needs ``generator``).
        generator: the LLM for ``sql`` mode.
        k_tables: tables considered per question.
        limit: most rows a SQL result keeps; ``timeout``: seconds a query may run.
        retries: how often a rejected or failing query goes back to the LLM with the error.
        max_scan: rows of a table read for ``rows`` mode; bigger tables are first narrowed to rows containing a
            query term.
        search: how cards are searched: ``bm25``, ``dense`` or ``hybrid`` (default: hybrid when the collection
            has a dense index, else bm25).
        sql_tokens: the most tokens the LLM may spend on one query (when its ``generate`` takes
            ``max_new_tokens``).
        rules: in ``sql`` mode, first parse the question into a table operation by rules (count, sum, average,
            max/min, argmax/argmin, first/last, compare, difference, lookup, with value and range filters; see
            :mod:`rag.retrievers.table_ops`) over the best table; the LLM writes SQL only when no rule applies or
            the rule's query finds nothing. Without a generator, rules alone.

    Example:
        >>> TableRetriever(Collection.open("kb")).retrieve("Lisbon office staff", k=3)  # doctest: +SKIP
    """

    name = "table"

    def __init__(
        self,
        collection: TableSource,
        mode: str = "rows",
        generator: Any = None,
        k_tables: int = 3,
        limit: int = 50,
        timeout: float = 5.0,
        retries: int = 1,
        max_scan: int = 20_000,
        search: str | None = None,
        sql_tokens: int = 128,
        rules: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown table mode {mode!r}; use one of {MODES}")
        if mode == "sql" and generator is None and not rules:
            raise ConfigError("mode='sql' without rules needs a generator (the LLM that writes the query)")
        self.collection, self.mode, self.generator = collection, mode, generator
        self.k_tables, self.limit, self.timeout = check_k(k_tables), check_k(limit), float(timeout)
        self.retries, self.max_scan = max(0, int(retries)), check_k(max_scan)
        self.search = search or ("hybrid" if collection.has_dense else "bm25")
        self.sql_tokens = check_k(sql_tokens)
        self.use_rules = rules
        params = inspect.signature(generator.generate).parameters if generator is not None else {}
        self._sized = "max_new_tokens" in params
        if self.search not in ("bm25", "dense", "hybrid"):
            raise ConfigError(f"unknown card search {self.search!r}; use bm25, dense or hybrid")
        self._rows: OrderedDict[str, tuple[BM25Index, list[tuple[Any, ...]], list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ finding tables
    def find_tables(self, query: str, k: int | None = None) -> list[TableRef]:
        """The tables whose cards best match ``query``, best first."""
        check_query(query)
        k = check_k(k or self.k_tables)
        kb = self.collection
        if "kind" not in kb.fields():
            return []
        hits = kb.retriever(self.search, filters={"kind": "table"}).retrieve(query, k=4 * k)
        out: dict[str, TableRef] = {}
        for h in hits:
            card = str(h.doc.meta.get("parent", h.doc.id))
            if card not in out:
                out[card] = TableRef(card, h.score, h.doc.meta)
        return list(out.values())[:k]

    # ------------------------------------------------------------------ rows
    def _row_index(self, ref: TableRef, query: str) -> tuple[BM25Index, list[tuple[Any, ...]], list[str]]:
        from rag.retrievers.bm25_index import BM25Index  # numba: loaded when a table is first read

        key = ref.physical
        big = int(ref.meta.get("n_rows", 0)) > self.max_scan
        with self._lock:
            if not big and key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        cols = [str(c) for c in ref.meta.get("columns", [])]
        text = "concat_ws(' ', " + ", ".join(f'CAST("{c}" AS VARCHAR)' for c in cols) + ")"
        sql, params = f'SELECT * FROM {TABLE_SCHEMA}."{key}"', []
        if big:  # narrow a huge table to rows containing a query term, still bounded by max_scan
            terms = [re.escape(t) for t in re.findall(r"\w{3,}", query.lower())] or ["."]
            sql += f" WHERE regexp_matches(lower({text}), ?)"
            params.append("|".join(terms))
        cur = self.collection.store.con.cursor()
        try:
            rows = cur.execute(f"{sql} LIMIT {self.max_scan}", params).fetchall()
        finally:
            cur.close()
        index = BM25Index()
        index.add(
            list(range(len(rows))),
            [" ".join(f"{c} {_cell(v, 200)}" for c, v in zip(cols, r, strict=True)) for r in rows],
        )
        entry = (index, rows, cols)
        if not big:
            with self._lock:
                self._rows[key] = entry
                while len(self._rows) > 32:
                    self._rows.popitem(last=False)
        return entry

    def _row_hit(self, ref: TableRef, o: int, row: Sequence[Any], cols: Sequence[str], score: float) -> Hit:
        body = "; ".join(f"{c}: {_cell(v, 200)}" for c, v in zip(cols, row, strict=True))
        meta = {
            "kind": "table_row",
            "table": ref.physical,
            "card": ref.id,
            "title": ref.title,
            "source": ref.meta.get("source"),
            "row": o + 1,
            "columns": list(cols),
            "values": [_cell(v, 200) for v in row],
        }
        doc = Doc(text=f"{ref.title}, row {o + 1}: {body}", id=f"{ref.id}#row{o + 1}", meta=meta)
        return Hit(doc=doc, score=score, source=self.name)

    def rows(self, query: str, tables: Sequence[TableRef], k: int = 10) -> list[Hit]:
        """The ``k`` best-matching rows of ``tables`` (the first rows of the best table when none match)."""
        hits: list[Hit] = []
        for ref in tables:
            index, rows, cols = self._row_index(ref, query)
            if rows:
                ords, scores = index.search([query], k=min(k, len(rows)))
                for o, s in zip(ords[0], scores[0], strict=True):
                    if o >= 0:
                        hits.append(self._row_hit(ref, int(o), rows[int(o)], cols, float(s)))
        hits.sort(key=lambda h: -h.score)
        if not hits and tables:  # no row shares a term with the query: show the start of the best table
            _, rows, cols = self._row_index(tables[0], query)
            hits = [self._row_hit(tables[0], o, r, cols, 0.0) for o, r in enumerate(rows[:k])]
        return hits[:k]

    # ------------------------------------------------------------------ sql
    def schema_text(self, tables: Sequence[TableRef], sample_rows: int = 3) -> str:
        """The tables as the SQL prompt shows them: ``CREATE TABLE`` with typed columns, then the title, row count
        and a few rows as SQL comments (the layout text-to-SQL models know best)."""
        blocks = []
        for ref in tables:
            cols = [str(c) for c in ref.meta.get("columns", [])]
            types = [str(t) for t in ref.meta.get("types", [])] or ["VARCHAR"] * len(cols)
            _, rows, _ = self._row_index(ref, "")
            lines = [
                f"CREATE TABLE {ref.physical} (",
                ",\n".join(f"  {c} {t}" for c, t in zip(cols, types, strict=True)),
                ");",
                f"-- {ref.title}: {ref.meta.get('n_rows', len(rows))} rows, for example:",
                "-- " + " | ".join(cols),
                *("-- " + " | ".join(_cell(v) for v in r) for r in rows[:sample_rows]),
            ]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def write_sql(self, question: str, tables: Sequence[TableRef], error: tuple[str, str] | None = None) -> str:
        """The LLM's query for ``question`` (``error``: the previous query and why it failed)."""
        prompt = SQL_PROMPT.format(schemas=self.schema_text(tables), question=question)
        if error:
            prompt += REPAIR.format(sql=error[0], error=error[1])
        prompt = strip_control(prompt)  # cells, the question and an echoed query cannot forge chat turns
        if self._sized:
            return extract_sql(str(self.generator.generate(prompt, max_new_tokens=self.sql_tokens)))
        return extract_sql(str(self.generator.generate(prompt)))

    def rules(self, question: str, ref: TableRef) -> tuple[SQLResult | None, dict[str, Any] | None]:
        """The question as a table operation by rules over ``ref`` (:func:`~rag.retrievers.table_ops.answer`)."""
        from rag.retrievers.table_ops import answer

        _, rows, cols = self._row_index(ref, "")
        return answer(self.collection.store.con, question, ref.physical, cols, rows, self.limit, self.timeout)

    def sql(self, question: str, tables: Sequence[TableRef]) -> tuple[SQLResult | None, list[dict[str, Any]]]:
        """Answer with a table operation by rules over the best table, else (with an LLM) write, validate and run
        a query; the result (None when every attempt failed) and the events."""
        events: list[dict[str, Any]] = []
        if self.use_rules:
            ruled, ruling = self.rules(question, tables[0])
            events += [ruling] if ruling is not None else []
            if ruled is not None or self.generator is None:
                return ruled, events
        allowed = [t.physical for t in tables]
        error: tuple[str, str] | None = None
        for attempt in range(1, self.retries + 2):
            sql = self.write_sql(question, tables, error)
            event: dict[str, Any] = {"step": "sql", "attempt": attempt, "sql": sql}
            events.append(event)
            try:
                safe = validate_sql(sql, allowed)
            except UnsafeQueryError as e:
                event.update(status="rejected", error=str(e))
                log.warning("rejected generated SQL: %s", e)
                error = (sql, str(e))
                continue
            try:
                result = run_sql(self.collection.store.con, safe, limit=self.limit, timeout=self.timeout)
            except UnsafeQueryError as e:  # the timeout
                event.update(status="timeout", error=str(e))
                error = (sql, str(e))
                continue
            except Exception as e:  # a duckdb error: unknown column, bad cast, ...
                msg = str(e).splitlines()[0]
                event.update(status="error", error=msg)
                error = (sql, msg)
                continue
            event.update(status="ok", rows=len(result.rows), truncated=result.truncated, ms=result.elapsed_ms)
            return result, events
        return None, events

    def sql_hit(self, result: SQLResult, tables: Sequence[TableRef], score: float) -> Hit:
        """A SQL result as a citable hit: the query, then the result as a pipe table."""
        used = [t for t in tables if re.search(rf"\b{re.escape(t.physical)}\b", result.sql)] or list(tables[:1])
        names = ", ".join(f"{t.title} ({t.meta.get('source')})" for t in used)
        lines = [f"SQL over {names}: {result.sql}", "Result:", " | ".join(result.columns)]
        lines += [" | ".join(_cell(v, 80) for v in r) for r in result.rows]
        if result.truncated:
            lines.append(f"(first {len(result.rows)} rows)")
        meta = {
            "kind": "sql",
            "sql": result.sql,
            "tables": [t.physical for t in used],
            "cards": [t.id for t in used],
            "source": ", ".join(str(t.meta.get("source")) for t in used),
            "title": names,
            "rows": len(result.rows),
        }
        doc = Doc(text="\n".join(lines), meta=meta)
        return Hit(doc=doc, score=score, source=self.name)

    # ------------------------------------------------------------------ Retriever
    def retrieve_traced(
        self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> tuple[list[Hit], list[dict[str, Any]]]:
        """Hits and the trace events (tables found, each SQL attempt with its status)."""
        check_query(query)
        k = check_k(k)
        if filters:
            raise ConfigError("the table retriever takes no metadata filters; filter the text retriever instead")
        tables = self.find_tables(query)
        events: list[dict[str, Any]] = [{"step": "tables", "found": [(t.id, round(t.score, 4)) for t in tables]}]
        if not tables:
            return [], events
        if self.mode == "rows":
            return self.rows(query, tables, k), events
        result, sql_events = self.sql(query, tables)
        events += sql_events
        return ([self.sql_hit(result, tables, tables[0].score)] if result else []), events

    def retrieve(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """At most ``k`` hits for ``query``: rows, or one SQL result (see the class docstring)."""
        return self.retrieve_traced(query, k, filters)[0]
