"""How a question names a table's parts: columns by their labels, cells by their text, numbers and year ranges,
and the column an answer or an aggregate is about. Used by :mod:`rag.retrievers.table_ops`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MOST = r"most|highest|largest|greatest|biggest|longest|top|maximum|max|best|latest|oldest"
LEAST = r"least|lowest|smallest|fewest|shortest|minimum|min|worst|earliest|youngest"
_RANGES = (
    (r"\b(?:before|earlier than|prior to|until|pre)\s+(-?[\d,.]+)", "<"),
    (r"\b(?:after|later than|since|post)\s+(-?[\d,.]+)", ">"),
    (r"\b(?:more|greater|higher|larger|bigger|longer|over|above|exceed(?:ed|s|ing)?)\s+(?:than\s+)?(-?[\d,.]+)", ">"),
    (r"\b(?:less|fewer|lower|smaller|shorter|under|below)\s+(?:than\s+)?(-?[\d,.]+)", "<"),
    (r"\bat least\s+(-?[\d,.]+)", ">="),
    (r"\bat most\s+(-?[\d,.]+)", "<="),
)
_BETWEEN = (
    (r"\b(?:between|from)\s+(\d{4})\s*(?:and|to|-|–)\s*\d{4}", ">="),
    (r"\b(?:between|from)\s+\d{4}\s*(?:and|to|-|–)\s*(\d{4})", "<="),
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def tokens(text: str) -> list[str]:
    return [w[:-1] if len(w) > 3 and w.endswith("s") else w for w in re.findall(r"[a-z0-9]+", text.lower())]


def stem(word: str) -> str:
    """A crude stem: words of five letters or more compare on their first five ("attended" ~ "attendance")."""
    return word[:5] if len(word) >= 5 else word


def number(value: Any) -> float | None:
    """The first number written in a cell (``"1,234 (est.)"`` → 1234.0), or None."""
    m = _NUMBER.search(str(value).replace(",", ""))
    return float(m.group(0)) if m else None


@dataclass(frozen=True)
class Table:
    labels: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def numeric(self, i: int) -> bool:
        cells = [r[i] for r in self.rows if r[i] not in (None, "")]
        return bool(cells) and sum(number(c) is not None for c in cells) >= 0.8 * len(cells)

    def spans(self, i: int, value: float) -> bool:
        nums = [n for n in (number(r[i]) for r in self.rows) if n is not None]
        return bool(nums) and min(nums) <= value <= max(nums)

    def yearish(self, i: int) -> bool:
        label = self.labels[i].lower()
        return any(w in label for w in ("year", "date", "season", "born", "released")) and self.numeric(i)


def columns_named(question: str, table: Table) -> list[int]:
    """Columns whose label's words are in the question, best match first."""
    q = set(tokens(question))
    scored = []
    for i, label in enumerate(table.labels):
        words = [w for w in tokens(label) if w not in ("the", "of", "no", "a")]
        hit = sum(stem(w) in {stem(x) for x in q} for w in words)
        if words and hit:
            scored.append((-(hit / len(words)), -hit, i))
    return [i for *_, i in sorted(scored)]


def cells_named(question: str, table: Table) -> list[tuple[int, str]]:
    """(column, cell) for cells the question names, longest first, not overlapping."""
    low = f" {question.lower()} "
    found: list[tuple[int, int, str]] = []
    for row in table.rows:
        for i, cell in enumerate(row):
            text = " ".join(str(cell or "").split())
            if len(text) < 2 or (text.isdigit() and len(text) < 3):
                continue
            m = re.search(rf"(?<![a-z0-9]){re.escape(text.lower())}(?![a-z0-9])", low)
            if m:
                found.append((m.start(), i, text))
    found.sort(key=lambda x: -len(x[2]))
    out: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for start, i, text in found:
        span = (start, start + len(text))
        if any(a < span[1] and span[0] < b for a, b in taken):
            continue
        taken.append(span)
        out.append((i, text))
    return out


def range_filters(question: str, table: Table, used: set[int]) -> list[tuple[int, str, float]]:
    out = []
    for pattern, op in _BETWEEN + _RANGES:
        for m in re.finditer(pattern, question.lower()):
            value = number(m.group(1))
            if value is None:
                continue
            year = 1000 <= value <= 2100 and float(value).is_integer()
            cols = [i for i in range(len(table.labels)) if (table.yearish(i) if year else table.numeric(i))]
            cols = cols or [i for i in range(len(table.labels)) if table.numeric(i)]
            fits = [i for i in cols if table.spans(i, value)]  # a threshold inside the column's values
            if cols:
                mentioned = [i for i in columns_named(question, table) if i in cols]
                out.append(((mentioned or fits or cols)[0], op, value))
    return out


_WH = {
    "who": r"name|player|driver|rider|athlete|artist|winner|team|nation|country|club|candidate|member|coach|"
    r"director|author|singer|person|opponent|champion",
    "when": r"year|date|season|time",
    "where": r"venue|location|city|country|place|site|stadium|town|region|state",
}
_STOP = frozenset(
    "the a an of in on at to for by with from and or is was were are be been what which who whom when where how many "
    "much number total did does do has have had than more less most least that this these those there their its it "
    "as all any each other name list times time first last second third next previous only".split()
)


_GLUE = frozenset("the a an of is was were are has have had did does do in on at to for by with from".split())


def answer_column(q: str, table: Table, others: list[int], filter_cols: set[int]) -> int:
    """The column holding the answer: one the question names (not a filter), else one its wh-word points to,
    else the first text column that is not a filter."""
    if others:
        return others[0]
    wh = re.match(r"\s*(who|when|where)\b", q)
    if wh:
        for i, label in enumerate(table.labels):
            if i not in filter_cols and re.search(rf"\b(?:{_WH[wh.group(1)]})", label.lower()):
                return i
    text_cols = [i for i in range(len(table.labels)) if not table.numeric(i) and i not in filter_cols]
    return text_cols[0] if text_cols else 0


def word_filters(q: str, table: Table, filter_cols: set[int], labels_words: set[str]) -> list[tuple[int, str]]:
    """(column, word) for question words (not column names, not function words) found as whole words inside the
    cells of one column: "how many V6 engines" → Engine contains "v6"."""
    out = []
    for w in re.findall(r"[a-z0-9]+", q):
        if len(w) < 3 or w in _STOP or w in labels_words or w.isdigit():
            continue
        counts = [
            sum(
                bool(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", str(r[i] or "").lower()))
                for r in table.rows
            )
            for i in range(len(table.labels))
        ]
        best = max(range(len(counts)), key=lambda i: counts[i])
        if counts[best] and best not in filter_cols and counts[best] < len(table.rows):
            out.append((best, w))
    return out


def target_column(table: Table, numeric: list[int], filter_cols: set[int]) -> str | None:
    """The numeric column a superlative or an aggregate is about: one the question names, else a "total" column,
    else the first numeric column that is not a rank, a number or a year."""
    if numeric:
        return table.labels[numeric[0]]
    free = [i for i in range(len(table.labels)) if table.numeric(i) and i not in filter_cols]
    total = [i for i in free if "total" in table.labels[i].lower()]
    plain = [i for i in free if not re.search(r"rank|^#|^no\b|^pos|year|season", table.labels[i].lower())]
    best = total or plain or free
    return table.labels[best[0]] if best else None


def column_after(q: str, pattern: str, table: Table, exclude: set[int]) -> int | None:
    """The column whose label holds one of the (up to three) words right after ``pattern`` ("which team ...")."""
    m = re.search(pattern + r"\s+([a-z0-9' ]+)", q)
    if not m:
        return None
    for w in [w for w in tokens(m.group(1)) if w not in _GLUE][:3]:
        for i, label in enumerate(table.labels):
            if i not in exclude and stem(w) in {stem(x) for x in tokens(label)}:
                return i
    return None


def repeats(table: Table, i: int) -> bool:
    values = [str(r[i]).strip().lower() for r in table.rows if str(r[i] or "").strip()]
    return len(set(values)) < 0.8 * len(values)
