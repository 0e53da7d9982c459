"""Table operations without an LLM: a question over one table parsed by rules into an operation, then SQL.

:func:`parse` reads a question against a table's column labels and cells and returns an :class:`Operation`:

- ``count`` ("how many ... "), ``sum`` ("total", "combined"), ``avg`` ("average"), ``max`` / ``min`` ("what is
  the highest <column>"), ``argmax`` / ``argmin`` ("which team scored the most points"), ``first`` / ``last``
  ("who was listed first"), ``difference`` ("how many more points did A score than B"), ``lookup`` ("what was
  the score of the game against Ohio");
- filters: cells the question names (``column = value``), and number or year ranges ("before 1975", "more than
  20", "at least 3") on the column they fit.

:meth:`Operation.sql` writes the query (numbers are read out of text cells: ``"1,234 (est.)"`` → 1234), which the
table retriever validates and runs like any other (:func:`~rag.retrievers.sql_guard.validate_sql`). When no rule
applies, :func:`parse` returns None and the LLM's SQL is the fallback. The rules were written against
WikiTableQuestions *training* questions; test figures are in benchmarks/README.md.

Example:
    >>> op = parse("How many albums were released before 1975?", ["Year", "Album"], [("1970", "A"), ("1980", "B")])
    >>> op.kind, op.filters
    ('count', (('Year', '<', 1975.0),))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.retrievers.sql_guard import validate_sql
from rag.retrievers.table_match import (
    LEAST,
    MOST,
    Table,
    answer_column,
    cells_named,
    column_after,
    columns_named,
    range_filters,
    repeats,
    target_column,
    tokens,
    word_filters,
)
from rag.retrievers.table_sql import SQLResult, run_sql

KINDS = ("lookup", "count", "sum", "avg", "max", "min", "argmax", "argmin", "first", "last", "difference")


def sql_number(column: str) -> str:
    """SQL reading the first number out of a column's text, NULL when there is none."""
    text = f"replace(CAST({_ident(column)} AS VARCHAR), ',', '')"
    return f"TRY_CAST(regexp_extract({text}, '-?[0-9]+(\\.[0-9]+)?') AS DOUBLE)"


def _ident(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Operation:
    """What to compute: ``kind`` over ``target`` (a numeric column), answering with ``answer`` (a column), over
    the rows that pass ``filters`` (``(column, op, value)``; ``=`` compares text, the others numbers)."""

    kind: str
    answer: str | None = None
    target: str | None = None
    filters: tuple[tuple[str, str, Any], ...] = ()
    values: tuple[str, ...] = ()  # difference, compare: the entities compared (cells of ``answer``)
    descending: bool = True  # compare: the one with more (or with less)

    def where(self) -> str:
        parts = []
        for col, op, value in self.filters:
            if op == "=":
                parts.append(f"lower(trim(CAST({_ident(col)} AS VARCHAR))) = lower({_literal(value)})")
            elif op == "~":  # the cell holds the word
                pattern = _literal(rf"(^|[^a-z0-9]){re.escape(str(value))}([^a-z0-9]|$)")
                parts.append(f"regexp_matches(lower(CAST({_ident(col)} AS VARCHAR)), {pattern})")
            else:
                parts.append(f"{sql_number(col)} {op} {float(value)!r}")
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def _among(self, ans: str) -> str:
        if not self.values:
            return ""
        return f"lower(trim(CAST({ans} AS VARCHAR))) IN ({', '.join(f'lower({_literal(v)})' for v in self.values)})"

    def sql(self, table: str) -> str:
        """The query over ``table`` (a physical table name)."""
        t, w = _ident(table), self.where()
        ans = _ident(self.answer) if self.answer else None
        num = sql_number(self.target) if self.target else None
        if self.kind == "count":
            return f"SELECT count(*) FROM {t}{w}"
        if self.kind in ("sum", "avg", "max", "min") and num:
            return f"SELECT {self.kind}({num}) FROM {t}{w}"
        if self.kind in ("argmax", "argmin", "compare") and ans and not num:  # the value with most rows
            order = "DESC" if self.kind == "argmax" or (self.kind == "compare" and self.descending) else "ASC"
            among = self._among(ans)
            grouped = f"{w}{(' AND ' if w else ' WHERE ') + among if among else ''}"
            return f"SELECT {ans} FROM {t}{grouped} GROUP BY {ans} ORDER BY count(*) {order} LIMIT 1"
        if self.kind == "compare" and num and ans:
            order = "DESC" if self.descending else "ASC"
            return f"SELECT {ans} FROM {t} WHERE {self._among(ans)} ORDER BY {num} {order} LIMIT 1"
        if self.kind in ("argmax", "argmin") and num and ans:
            order = "DESC" if self.kind == "argmax" else "ASC"
            return (
                f"SELECT {ans} FROM {t}{w}{' AND' if w else ' WHERE'} {num} IS NOT NULL ORDER BY {num} {order} LIMIT 1"
            )
        if self.kind in ("first", "last") and ans:
            order = "ASC" if self.kind == "first" else "DESC"
            return f"SELECT {ans} FROM (SELECT {ans}, row_number() OVER () AS n FROM {t}{w}) ORDER BY n {order} LIMIT 1"
        if self.kind == "difference" and num and ans and len(self.values) == 2:
            a, b = (
                f"(SELECT {num} FROM {t} WHERE lower(trim(CAST({ans} AS VARCHAR))) = lower({_literal(v)}) LIMIT 1)"
                for v in self.values
            )
            return f"SELECT abs({a} - {b})"
        if self.kind == "lookup" and ans:
            return f"SELECT {ans} FROM {t}{w}"
        raise ValueError(f"operation {self.kind} lacks a column: {self}")


def parse(question: str, labels: Sequence[str], rows: Sequence[Sequence[Any]]) -> Operation | None:
    """The operation ``question`` asks of a table with column ``labels`` and ``rows``; None when no rule fits."""
    n = len(labels)
    table = Table(tuple(str(c) for c in labels), tuple((*tuple(r)[:n], *[""] * (n - len(r))) for r in rows))
    if not table.labels or not table.rows:
        return None
    question = re.sub(r",\s", " ", question)  # "got, at most, 8.5": the commas of a phrase, not of a number
    q = question.lower()
    ranges = range_filters(question, table, set())
    bounds = {f"{v:g}" for _, _, v in ranges}
    named = [(i, v) for i, v in cells_named(question, table) if v.replace(",", "") not in bounds]
    filter_cols = {i for i, _ in named} | {i for i, _, _ in ranges}
    mentioned = columns_named(question, table)
    labels_words = {w for i in mentioned for w in tokens(table.labels[i])}
    contains = word_filters(q, table, filter_cols, labels_words)
    filters = (
        tuple((table.labels[i], "=", v) for i, v in named)
        + tuple((table.labels[i], op, v) for i, op, v in ranges)
        + tuple((table.labels[i], "~", w) for i, w in contains)
    )
    filter_cols |= {i for i, _ in contains}
    numeric = [i for i in mentioned if table.numeric(i) and i not in filter_cols]
    wh = column_after(q, r"\b(?:which|what|whose)", table, filter_cols)
    others = ([wh] if wh is not None else []) + [i for i in mentioned if i not in filter_cols and i != wh]
    answer_i = answer_column(q, table, others, filter_cols)
    answer = table.labels[answer_i]
    target = table.labels[numeric[0]] if numeric else None
    most, least = (
        re.search(rf"\b(?:{MOST}|more|higher|larger|greater)\b", q),
        re.search(rf"\b(?:{LEAST}|less|fewer|lower|smaller)\b", q),
    )
    same = [v for i, v in named if i == named[0][0]] if named else []

    if re.search(r"\bhow many (?:more|less|fewer)\b|\bdifference\b", q) and target and len(same) >= 2:
        return Operation("difference", table.labels[named[0][0]], target, (), tuple(same[:2]))
    if len(same) == 2 and re.search(r"\bor\b", q) and (most or least) and not q.startswith("how many"):
        noun = column_after(
            q, rf"\b(?:{MOST}|{LEAST}|more|less|fewer|higher|lower|larger|smaller|greater)", table, {named[0][0]}
        )
        num = table.labels[noun] if noun is not None and table.numeric(noun) else target
        if num is None and not repeats(table, named[0][0]):  # one row each: compare their numbers, not row counts
            num = target_column(table, [], {named[0][0]})
        desc = bool(most and (not least or most.start() < least.start()))
        return Operation("compare", table.labels[named[0][0]], num, (), tuple(same), desc)
    if re.search(r"\b(?:total|sum|combined|altogether|in all)\b", q) and target:
        return Operation("sum", None, target, filters)
    if re.search(r"\b(?:average|mean)\b", q) and target:
        return Operation("avg", None, target, filters)
    if (
        q.startswith("how many")
        or re.match(r"(?:what|the)(?: total)? number of", q)
        or (re.search(r"\bnumber of\b", q) and not (most or least))
    ):
        if target and named:
            return Operation("lookup", target, None, filters)
        return Operation("count", None, None, filters)
    if most or least:
        kind = "argmax" if most and (not least or most.start() < least.start()) else "argmin"
        noun = column_after(q, rf"\b(?:{MOST}|{LEAST})", table, filter_cols | {answer_i})
        if noun is not None and table.numeric(noun):
            tgt: str | None = table.labels[noun]
        elif noun is None and repeats(table, answer_i) and not numeric:
            tgt = None  # "which country has the most teams": the value with most rows
        else:
            tgt = target_column(table, [i for i in numeric if i != answer_i], filter_cols | {answer_i})
        if re.match(r"(?:what|how much) (?:is|was|were|are) the (?:" + MOST + "|" + LEAST + r")\b", q) and tgt:
            if wh is None or table.labels[wh] == tgt:
                return Operation("max" if kind == "argmax" else "min", None, tgt, filters)
        return Operation(kind, answer, tgt, filters)
    if re.search(r"\b(?:first|last)\b", q) and not named:
        kind = "first" if re.search(r"\bfirst\b", q) else "last"
        return Operation(kind, answer, None, filters)
    if filters and others:
        return Operation("lookup", answer, None, filters)
    return None


def answer(
    con: Any,
    question: str,
    table: str,
    labels: Sequence[str],
    rows: Sequence[Sequence[Any]],
    limit: int,
    timeout: float,
) -> tuple[SQLResult | None, dict[str, Any] | None]:
    """Parse ``question`` against ``table`` (its column ``labels`` and ``rows``), validate and run the operation's
    SQL on ``con``; (result, trace event), or (None, None) when no rule applies. A query that fails or finds
    nothing gives (None, event): the caller's LLM may try."""
    op = parse(question, labels, rows)
    if op is None:
        return None, None
    sql = op.sql(table)
    event: dict[str, Any] = {"step": "rules", "operation": op.kind, "sql": sql}
    try:
        result = run_sql(con, validate_sql(sql, [table]), limit=limit, timeout=timeout)
    except Exception as e:  # a rejected query, a timeout, a duckdb error: the LLM's turn
        event.update(status="error", error=str(e).splitlines()[0])
        return None, event
    if not result.rows or all(v is None for r in result.rows for v in r):
        event.update(status="empty")
        return None, event
    event.update(status="ok", rows=len(result.rows), ms=result.elapsed_ms)
    return result, event
