"""The rule filler: arguments for a tool taken from the query by type, without a model (:func:`rule_fill`),
and the check of an LLM's value against the query that ``llm_mode="llm_first"`` relies on (:func:`grounded`).

Value parsing (dates, times, expressions, coercion) lives in :mod:`rag.retrievers.tool_values`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rag.retrievers.tool_values import MONTHS, arg_kind, coerce, find_dates, find_expression, find_times, json_types
from rag.tools.base import Tool, validate_args

_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:,\d{3})*(?:\.\d+)?(?![\d])")
_NUMBER_WORDS = {
    w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_FILE = re.compile(r"(?<![@\w.])[\w-]+(?:\.[\w-]+)*\.[A-Za-z][A-Za-z0-9]{1,4}\b(?!@)")
_IDENT = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9][\w-]*\b|\b[A-Z]{2,6}\b|\b\d{3,}\b")
_PROPER = re.compile(r"\b[A-Z][\w'.-]*(?:\s+(?:of\s+|de\s+|du\s+|la\s+)?[A-Z][\w'.-]*)*")
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|(?<!\w)'(.+?)'(?!\w)")
_STOP_AFTER = re.compile(r"[?.!,;:]|\b(?:today|tomorrow|yesterday|now|please|and|on|in|at|for|from|to|with)\b", re.I)
_OPENERS = {
    *"what whats how who when where which why is are was were do does did can could would will should may "
    "i i'm im my me we you please hey hi ok okay tell show give find get let need want make help set check "
    "look list search send book cancel schedule create delete add remove convert translate calculate compute "
    "remind email text call any if the a an is it our your their".split()
}
_STOPWORDS = {"a", "an", "the", "is", "are", "my", "to", "for", "of", "in", "on", "at", "and", "or", "it", "that"}
_MASKING = ("email", "date", "time", "phone", "file", "tag", "ident")
_FREE_TEXT = ("query", "text", "q", "message", "content", "topic", "keywords", "search", "prompt", "question", "body")


def _same_word(a: str, b: str) -> bool:
    """Whether two words are one (``pharmacy`` / ``pharmacies``, ``walk`` / ``walking``): a common prefix of
    at least five letters, or one word (four letters or more) opening the other."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return (len(short) >= 4 and long.startswith(short)) or (len(short) >= 5 and long[:5] == short[:5])


def _named_near(low: str, start: int, end: int, words: Sequence[str]) -> bool:
    """Whether one of an argument's name words sits right after (``30 days``) or before (``UTC+2``) a number."""
    after, before = low[end : end + 16], low[max(0, start - 16) : start]
    if after.startswith("%") and {"rate", "percent", "percentage", "pct", "interest"} & set(words):
        return True
    after = after.lstrip(" -")
    stems = [w.rstrip("s")[:4] for w in words]
    return any(after.startswith(w) or re.search(re.escape(w) + r"\w*\W{0,3}$", before) for w in stems)


class _Pools:
    """Candidate values found in a query, by kind, each with its span; a value taken is not offered again."""

    def __init__(self, query: str, today: dt.date, kinds: set[str]) -> None:
        self.query, self.low = query, query.lower()
        found = {
            "quoted": [(m.start(), m.end(), next(g for g in m.groups() if g)) for m in _QUOTED.finditer(query)],
            "date": find_dates(query, today),
            "time": find_times(query),
            "email": [(m.start(), m.end(), m.group(0)) for m in _EMAIL.finditer(query)],
            "phone": [(m.start(), m.end(), m.group(0)) for m in _PHONE.finditer(query)],
            "file": [(m.start(), m.end(), m.group(0)) for m in _FILE.finditer(query)],
            "ident": [(m.start(), m.end(), m.group(0)) for m in _IDENT.finditer(query)],
            "tag": [(m.start(), m.end(), m.group(1)) for m in re.finditer(r"#([A-Za-z][\w-]*)", query)],
        }
        self.taken: list[tuple[int, int]] = [(s, e) for s, e, _ in found["quoted"]]
        self.pools: dict[str, list[tuple[int, int, str]]] = {"quoted": found["quoted"]}
        for kind in _MASKING:  # an earlier kind's spans mask later ones
            if kind in ("email", "date", "time") or kind in kinds:
                self.pools[kind] = [c for c in found[kind] if not self._overlaps(c[0], c[1])]
                if kind != "ident":
                    self.taken += [(s, e) for s, e, _ in self.pools[kind]]
        self.fixed = list(self.taken)  # spans numbers and free text must avoid
        numbers = [(m.start(), m.end(), m.group(0)) for m in _NUMBER.finditer(query)]
        numbers = [
            (s, e, str(float(n.replace(",", "")) * 1000))
            if query[e : e + 1] in ("k", "K") and not query[e + 1 : e + 2].isalpha()
            else (s, e, n)
            for s, e, n in numbers
        ]
        numbers += [(m.start(), m.end(), str(_NUMBER_WORDS[m.group(1).lower()])) for m in _NUMBER_WORD.finditer(query)]
        self.pools["number"] = sorted(c for c in numbers if not self._overlaps(c[0], c[1]))
        self.taken = []  # from here on: spans given to arguments

    def _overlaps(self, start: int, end: int, spans: Sequence[tuple[int, int]] | None = None) -> bool:
        return any(s < end and start < e for s, e in (self.taken if spans is None else spans))

    def take(self, kind: str, prefer: Callable[[tuple[int, int, str]], bool] | None = None) -> str | None:
        """The first unused candidate of a kind (with ``prefer``: the first preferred one, or None)."""
        free = [c for c in self.pools.get(kind, []) if not self._overlaps(c[0], c[1])]
        best = next((c for c in free if prefer(c)), None) if prefer else (free[0] if free else None)
        if best is None:
            return None
        self.taken.append((best[0], best[1]))
        return best[2]

    def enum(self, key: str, values: Sequence[Any]) -> Any:
        """An enum value the query names: verbatim first (a value of one or two letters only after a number or
        ``to``/``in``), else the value sharing most words with the query (``found cheaper`` -> found_cheaper,
        ``pharmacies`` -> pharmacy); ``to``/``into``/``in`` before a mention marks a target argument's value."""
        target = bool({"to", "target", "into", "destination", "quote"} & set(key.lower().split("_")))
        mentions: list[tuple[bool, int, int, Any]] = []
        for v in values:
            pattern = r"(?<![\w-])" + re.escape(str(v).lower()).replace("_", "[ _-]?") + r"s?(?![\w-])"
            for m in re.finditer(pattern, self.low):
                before = self.low[max(0, m.start() - 8) : m.start()]
                says_to = bool(re.search(r"\b(to|into|in)\s+$|[/-]$", before))
                short_ok = len(str(v)) > 2 or says_to or re.search(r"\d\s*$", before)
                if short_ok and self._free(m.start(), m.end()):
                    mentions.append((says_to != target, m.start(), m.end(), v))
        if not mentions:
            words = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"[a-z]{3,}", self.low)]
            words = [w for w in words if self._free(w[0], w[1])]
            best = (0.0, 0, 0, None)
            for v in values:
                parts = [p for p in re.split(r"[_\W]+", str(v).lower()) if len(p) >= 3]
                found = [w for p in parts for w in words if _same_word(p, w[2])]
                share = len({w[2] for w in found}) / len(parts) if parts else 0.0
                if found and share >= 0.5 and share > best[0]:
                    best = (share, found[0][0], found[0][1], v)
            if best[3] is not None:
                mentions.append((False, best[1], best[2], best[3]))
        if not mentions:
            return None
        _, start, end, value = min(mentions, key=lambda x: x[:2])
        self.taken.append((start, end))
        return value

    def _free(self, start: int, end: int) -> bool:
        return not self._overlaps(start, end) and not self._overlaps(start, end, self.fixed)

    def after_name(self, words: Sequence[str]) -> str | None:
        """The token right after the argument's name (``username is jdoe``, ``order A10293``)."""
        for w in words:
            pattern = rf"\b{re.escape(w.rstrip('s')[:4])}\w*(?:\s+(?:is|=|:))?\s*[:#=]?\s+([\w][\w.@+-]*\w|\w)"
            for m in re.finditer(pattern, self.query, flags=re.I):
                if self._free(m.start(1), m.end(1)) and m.group(1).lower() not in _STOPWORDS:
                    self.taken.append((m.start(1), m.end(1)))
                    return m.group(1)
        return None

    def phrase(self, cues: Iterable[str], proper_only: bool = False) -> str | None:
        """The words after one of the cue words (``from X``), up to punctuation or a stop word; a phrase opening
        with a capital (cut to its run of capitalised words) is preferred."""
        found = []
        for m in re.finditer(
            r"(?:\b(?:" + "|".join(cues) + r")\b|:)\s*(?:(?:the|a|an|my)\s+)?", self.query, flags=re.I
        ):
            rest = self.query[m.end() :]
            stop = _STOP_AFTER.search(rest)
            text = rest[: stop.start() if stop else len(rest)].strip()
            proper = _PROPER.match(text)
            if proper:
                text = proper.group(0)
            text = re.sub(r"'s$", "", text)
            if (
                (proper or not proper_only)
                and re.search(r"[A-Za-z]", text)
                and self._free(m.end(), m.end() + len(text))
            ):
                found.append((not proper, m.end(), text))
        if not found:
            return None
        _, start, text = min(found)
        self.taken.append((start, start + len(text)))
        return text

    def noun(self) -> str | None:
        """The next proper noun (a run of capitalised words) not opening a sentence and not taken."""
        for m in _PROPER.finditer(self.query):
            start, words = m.start(), m.group(0).split()
            while words and words[0].lower().strip("'s") in (*MONTHS, *_OPENERS):
                start, words = start + len(words[0]) + 1, words[1:]
            text = re.sub(r"'s$", "", " ".join(words).rstrip(".'"))
            span = (start, start + len(text))
            if text and not self._overlaps(*span) and not self._overlaps(*span, self.fixed):
                self.taken.append(span)
                return text
        return None


def _fill_one(key: str, prop: Mapping[str, Any], kind: str, pools: _Pools, required: bool, strict: bool) -> Any:
    """One argument's value from the pools: only clear evidence when ``strict``, else a fallback."""
    words = [w for w in re.split(r"[_\W]+", key.lower()) if w]
    long_words = [w for w in words if len(w) >= 3]
    if strict:
        if kind == "enum":
            return pools.enum(key, prop["enum"])
        if kind == "ident":
            return pools.after_name(long_words) or pools.take(kind)
        if kind in ("date", "time", "email", "phone", "file", "tag"):
            return pools.take(kind)
        if kind == "number":  # a number next to the argument's name or unit ("30 days", "6.5%")
            return pools.take("number", lambda c: _named_near(pools.low, c[0], c[1], long_words))
        if kind == "boolean":
            hit = next((pools.low.find(w) for w in long_words if w in pools.low), -1)
            if hit >= 0:
                return not re.search(r"\b(no|not|without|don't|never)\s+$", pools.low[max(0, hit - 12) : hit])
            return False if required else None
        if kind == "array" and {"integer", "number"} & set(json_types(prop.get("items", {}))):
            return [float(n[2].replace(",", "")) for n in pools.pools["number"]] or None
        if kind == "number_list":
            return ",".join(n[2].replace(",", "") for n in pools.pools["number"]) or None
        if kind == "expression":
            return find_expression(pools.query)
        if kind == "text" and set(words) & {"from", "origin", "source", "sender"}:
            return pools.phrase(["from"])
        if kind == "text" and set(words) & {"to", "destination", "target", "recipient"}:
            return pools.phrase(["to", "into"])
        return None
    if kind == "number" and required:
        return pools.take("number")
    if kind != "text":
        return None
    free_text = bool(set(words) & set(_FREE_TEXT))
    value = pools.take("quoted")
    if value is None and free_text:
        value = pools.phrase(["about", "for", "on", "to"])
    place = bool(set(words) & {"city", "location", "place", "address", "country", "region", "area", "town"})
    cues = ["in", "at", "for", "near", "around", "of"]
    if value is None:  # a place name after a preposition, or a proper noun; the preposition first for places
        value = (pools.phrase(cues, True) or pools.noun()) if place else (pools.noun() or pools.phrase(cues, True))
    if value is None and required:
        value = pools.phrase([*cues, "about", "called", "named", "with"])
    if value is None and required and free_text:
        value = pools.query.strip().rstrip("?.!")
    return value


def rule_fill(tool: Tool, query: str, today: dt.date | None = None) -> dict[str, Any]:
    """Arguments for ``tool`` taken from ``query`` by type, without a model.

    Each argument gets a kind from its type, name and description (enum, number, date, time, email, phone,
    file name, identifier, arithmetic expression, list of numbers, text) and takes an unused value of that
    kind from the query: dates (ISO, ``March 1, 2024``, today/tomorrow), 24-hour times (``10am`` -> ``10:00``),
    numbers (first one next to the argument's name or unit, e.g. ``30 days`` -> ``days``, then in order),
    enum values named in the query (``to``/``into``/``in`` before a value marks the target of a from/to
    pair), and for text: quoted strings, the phrase after ``from``/``to`` for origin/destination-like names,
    proper nouns. A first pass takes clear evidence, a second fills what is left. Optional arguments with
    nothing in the query are left out; required ones too, so that validation reports them.

    Example:
        >>> rule_fill(calculator, "what is 17 times 23?")   # doctest: +SKIP
        {'expression': '17 * 23'}
    """
    props: Mapping[str, Any] = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    kinds = {key: arg_kind(key, prop) for key, prop in props.items() if isinstance(prop, Mapping)}
    pools = _Pools(query, today or dt.date.today(), set(kinds.values()))
    out: dict[str, Any] = {}
    order = sorted(kinds, key=lambda k: kinds[k] != "enum")  # enum mentions are the most specific evidence
    for strict in (True, False):
        for key in order:
            kind = kinds[key]
            if key not in out:
                value = _fill_one(key, props[key], kind, pools, key in required, strict)
                if value is not None:
                    out[key] = coerce(value, props[key])
    return {key: out[key] for key in props if key in out}


def grounded(key: str, prop: Mapping[str, Any], raw: Any, value: Any, query: str) -> bool:
    """Whether an LLM's value stands against the rule filler's: it is valid for the argument, and supported by
    the query: a plain string occurs in it, a number is one of its numbers, an enum value was named exactly
    (not snapped from something else). Dates and expressions are taken as the LLM computed them."""
    if value is None or validate_args({"type": "object", "properties": {key: prop}}, {key: value}):
        return False
    kind = arg_kind(key, prop)
    if kind == "enum":
        return str(raw).casefold() in {str(e).casefold() for e in prop["enum"]}
    if kind == "number":
        pools = _Pools(query, dt.date.today(), set())
        return any(abs(float(n[2].replace(",", "")) - float(value)) < 1e-9 for n in pools.pools["number"])
    if kind in ("text", "ident", "tag", "file", "email", "phone"):
        return isinstance(value, str) and value.casefold() in query.casefold()
    return True
