"""Values in text for tool arguments: dates, clock times, arithmetic expressions, argument kinds, coercion
of a value to an argument's JSON-schema type, and the value at the start of an LLM's reply.

Used by the rule filler (:mod:`rag.retrievers.tool_fill`) and the LLM filling of
:class:`~rag.retrievers.tool.ToolRetriever`.

Example:
    >>> parse_date("on 1st of March, 2024")
    '2024-03-01'
    >>> coerce("12", {"type": "integer"})
    12
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

MONTHS = tuple("january february march april may june july august september october november december".split())
_MON = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE_PATTERNS = (
    (re.compile(r"\b(\d{4})[-/](\d{1,2})[-/](\d{1,2})\b"), "ymd"),
    (re.compile(rf"\b{_MON}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I), "mdy"),
    (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON},?\s+(\d{{4}})\b", re.I), "dmy"),
    (re.compile(r"\b(today|tomorrow|yesterday)\b", re.I), "rel"),
)
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\s*([ap]\.?m\b\.?)?|\b(\d{1,2})\s*([ap]\.?m)\b\.?|\b(noon|midnight)\b", re.I)
_EXPR_NAMES = ("expression", "expr", "formula", "equation", "calculation", "math")
_FUNCS = "sqrt|abs|round|min|max|log|exp|floor|ceil|pi"
_EXPR_RUN = re.compile(rf"(?:\d+(?:\.\d+)?|\b(?:{_FUNCS})\b|\*\*|[-+*/%^(),]|\s)+")
_WORD_OPS = (
    (r"(\d+(?:\.\d+)?)\s*(?:%|percent)\s+of\b", r"(\1/100)*"),
    (r"\bsquare root of\s*(\d+(?:\.\d+)?)", r"sqrt(\1)"),
    (r"\bto the power of\b|\braised to(?: the power of)?\b", "**"),
    (r"\bmultiplied by\b|\btimes\b|×", "*"),
    (r"(?<=\d)\s*x\s*(?=\d)", "*"),
    (r"\bdivided by\b|÷", "/"),
    (r"\bplus\b|\badded to\b", "+"),
    (r"\bminus\b|\bsubtract(?:ed)?\b", "-"),
    (r"\bmod(?:ulo)?\b", "%"),
    (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"),
    (r"(?<=\d),(?=\d{3}\b)", ""),
)


# ---------------------------------------------------------------- dates and times
def parse_date(text: str, today: dt.date | None = None) -> str | None:
    """An ISO date from ISO, ``March 1, 2024``, ``1 March 2024``, today / tomorrow / yesterday; else None."""
    found = find_dates(text, today or dt.date.today())
    return found[0][2] if found else None


def find_dates(text: str, today: dt.date) -> list[tuple[int, int, str]]:
    """The dates in ``text`` as ISO strings with their spans, in order (relative words counted from ``today``)."""
    out: list[tuple[int, int, str]] = []
    for pattern, kind in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            try:
                if kind == "rel":
                    day = today + dt.timedelta(days={"today": 0, "tomorrow": 1, "yesterday": -1}[g[0].lower()])
                elif kind == "ymd":
                    day = dt.date(int(g[0]), int(g[1]), int(g[2]))
                else:
                    mon, d, y = (g[0], g[1], g[2]) if kind == "mdy" else (g[1], g[0], g[2])
                    month = next(i for i, name in enumerate(MONTHS, 1) if name.startswith(mon.lower()[:3]))
                    day = dt.date(int(y), month, int(d))
            except ValueError:
                continue
            if not any(s < m.end() and m.start() < e for s, e, _ in out):
                out.append((m.start(), m.end(), day.isoformat()))
    return sorted(out)


def find_times(text: str) -> list[tuple[int, int, str]]:
    """The clock times in ``text`` as 24-hour ``HH:MM`` (``10am``, ``8:30 pm``, ``noon``), with their spans."""
    return [(m.start(), m.end(), t) for m in _TIME.finditer(text) if (t := _clock(m))]


def _clock(m: re.Match[str]) -> str | None:
    g = m.groups()
    if g[5]:
        return "12:00" if g[5].lower() == "noon" else "00:00"
    hour, minute, ampm = (int(g[0]), int(g[1]), g[2]) if g[0] else (int(g[3]), 0, g[4])
    if ampm:
        hour = hour % 12 + (12 if ampm.lower().startswith("p") else 0)
    return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else None


# ---------------------------------------------------------------- argument kinds and coercion
def json_types(prop: Mapping[str, Any]) -> list[str]:
    """A JSON-schema property's type names (``"type"`` may be one name or a list)."""
    t = prop.get("type")
    return [t] if isinstance(t, str) else list(t or [])


def is_date_arg(key: str, prop: Mapping[str, Any]) -> bool:
    """Whether an argument takes a date: by its format, its description (``YYYY-MM-DD``) or a string's name."""
    note, words = str(prop.get("description", "")), set(re.split(r"[_\W]+", key.lower()))
    named = "date" in words or (bool(words & {"start", "end", "day"}) and not words & {"time", "hour", "minute"})
    return (
        prop.get("format") in ("date", "date-time") or "YYYY-MM-DD" in note or ("string" in json_types(prop) and named)
    )


def arg_kind(key: str, prop: Mapping[str, Any]) -> str:
    """What sort of value an argument takes, from its type, name and description."""
    types, name, note = json_types(prop), key.lower(), str(prop.get("description", "")).lower()
    words = set(re.split(r"[_\W]+", name))
    if prop.get("enum"):
        return "enum"
    if types and "string" not in types:
        if "integer" in types or "number" in types:
            return "number"
        return "boolean" if "boolean" in types else "array" if "array" in types else "other"
    checks = (
        ("date", is_date_arg(key, prop)),
        ("time", "hh:mm" in note or ("time" in words and "zone" not in note)),
        ("email", "email" in words or "email address" in note),
        ("phone", "phone" in words or "phone" in note),
        ("file", bool(words & {"file", "filename", "path"}) or "with extension" in note),
        ("expression", bool(words & set(_EXPR_NAMES))),
        ("number_list", name in ("numbers", "values") or "comma-separated" in note),
        ("tag", bool(words & {"channel", "hashtag", "tag", "tags"})),
        ("ident", bool(words & {"id", "number", "code", "symbol", "ticker", "username", "sku", "isbn"})),
    )
    return next((kind for kind, hit in checks if hit), "text")


def coerce(value: Any, prop: Mapping[str, Any]) -> Any:
    """``value`` converted to the property's type where that is unambiguous ("12" -> 12, 3.0 -> 3, "yes" ->
    True); enum values snapped to the closest allowed one. Anything else is returned as it is, for validation."""
    if value is None:
        return None
    enum = prop.get("enum")
    if enum:
        if value in enum:
            return value
        by_text = {str(e).lower(): e for e in enum}
        close = difflib.get_close_matches(str(value).lower().strip(), list(by_text), n=1, cutoff=0.0)
        return by_text[close[0]] if close else value
    types = json_types(prop)
    text = str(value).strip().replace(",", "") if isinstance(value, str | int | float) else ""
    if "integer" in types and not (isinstance(value, int) and not isinstance(value, bool)):
        try:
            num = float(text)
            return int(num) if num.is_integer() else value
        except ValueError:
            return value
    if "number" in types and (isinstance(value, str) or isinstance(value, bool)):
        try:
            num = float(text)
            return int(num) if num.is_integer() and "." not in text else num
        except ValueError:
            return value
    if "boolean" in types and isinstance(value, str):
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower(), value)
    if "string" in types and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if "string" in types and isinstance(value, str) and prop.get("format") == "date":
        return parse_date(value) or value
    if "array" in types and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [v.strip() for v in value.split(",") if v.strip()]
    if "array" in types and isinstance(value, list) and isinstance(prop.get("items"), Mapping):
        return [coerce(v, prop["items"]) for v in value]
    return value


# ---------------------------------------------------------------- arithmetic and LLM replies
def find_expression(query: str) -> str | None:
    """The longest arithmetic expression in ``query``, number words made operators (``17 times 23`` ->
    ``17 * 23``, ``15% of 80`` -> ``(15/100)* 80``); None when there is none."""
    text = query
    for pattern, repl in _WORD_OPS:
        text = re.sub(pattern, repl, text, flags=re.I)
    best = ""
    for m in _EXPR_RUN.finditer(text):
        cand = m.group(0).strip().strip(",").strip()
        binary = re.search(r"[\d)]\s*(?:\*\*|[-+*/%^])\s*[\d(a-z]", cand) or re.search(rf"(?:{_FUNCS})\s*\(", cand)
        if len(cand) > len(best) and binary:
            try:
                compile(cand, "<expression>", "eval")
            except SyntaxError:
                continue
            best = cand
    return best or None


def first_value(reply: str, key: str) -> Any:
    """The JSON value at the start of an LLM's reply, cut at the first top-level ``,`` / ``}`` / newline.

    Replies that echo the whole object (``{"key": value}``), the key (``"key": value``) or open with a label
    (``JSON:``, ``Answer:``) are understood; a reply that is not JSON is taken as a bare string. Returns None
    for an empty reply or ``null``.
    """
    text = re.sub(r"```\w*", "", reply).strip()
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*', text) or re.match(re.escape(key) + r"\s*[:=]\s*", text)
    if m:
        text = text[m.end() :]
    else:
        text = re.sub(r"^(?:json|answer|value|output|result|argument)\s*:\s*", "", text, flags=re.I).strip()
    depth, quote, i = 0, "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
                if depth == 0:  # a top-level string ends the value
                    i += 1
                    break
        elif c in "\"'" and (i == 0 or depth > 0):
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}" and depth > 0:
            depth -= 1
        elif depth == 0 and c in ",}\n" and text[:i].strip():
            break
        i += 1
    piece = text[:i].strip()
    if not piece or piece == "null":
        return None
    try:
        return json.loads(piece)
    except ValueError:
        return None if piece[0] in "{[" else piece.strip("'\"` ") or None
