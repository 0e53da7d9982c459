"""Query decomposition: split a question into typed sub-queries before retrieval.

Three :class:`~rag.protocols.Decomposer` implementations, each returning ``[SubQuery(query)]`` when there is
nothing to split:

* :class:`RuleDecomposer` -- patterns: comparisons (``Which is older, X or Y?``, ``Are X and Y both ...?``)
  become one sub-query per entity carrying the compared attribute; two joined questions (``What is A and who
  founded B?``) become two; each part is typed ``tool`` (arithmetic, percentages, unit conversion, the current
  date or time), ``table`` (totals, averages, "which ... had the most", "in the table") or ``text``.
* :class:`~rag.models.decompose.learned.LearnedDecomposer` -- a MiniLM embedding + softmax head trained offline
  (``rag train decomposer``, :func:`~rag.train.decomposer.train_decomposer`) that picks
  the question type (single / bridge / comparison / table / tool); the type picks the rule that builds the
  sub-queries, and below its threshold the rules decide.
* :class:`~rag.models.decompose.prompted.PromptedDecomposer` -- asks an LLM for sub-questions, one per line
  tagged ``[text]``, ``[table]`` or ``[tool]``; falls back to the rules when the reply cannot be used.

Multi-hop (bridge) questions are not split here: :class:`~rag.retrievers.multihop.MultiHopRetriever` retrieves for them
iteratively.
"""

from __future__ import annotations

import re

from rag.checks import check_query
from rag.types import SubQuery, SubQueryKind

__all__ = ["RuleDecomposer", "comparison_parts", "kind_of", "salient"]

_NUM = r"\d+(?:[.,]\d+)?"
_UNITS = (
    r"(?:km|kms|kilometers?|kilometres?|miles?|mi|meters?|metres?|m|cm|mm|centimeters?|millimeters?|inch(?:es)?|"
    r"feet|foot|ft|yards?|kg|kilograms?|g|grams?|lbs?|pounds?|ounces?|oz|tons?|tonnes?|liters?|litres?|ml|"
    r"gallons?|pints?|cups?|quarts?|celsius|fahrenheit|kelvin|°c|°f|mph|km/h|kph|hours?|minutes?|seconds?|"
    r"days?|weeks?|months?|years?|dollars?|euros?|usd|eur|gbp|bytes?|kb|mb|gb|tb|acres?|hectares?)"
)
_TOOL = [
    rf"{_NUM}\s*(?:[+*×÷^]|\*\*)\s*\(?-?{_NUM}",  # 12 * 7, 3^4 (no bare '-' or '/': "1940/41", "2010-11")
    rf"{_NUM}\s+(?:[-/x]|plus|minus|times|divided by|multiplied by|over)\s+-?{_NUM}",
    rf"{_NUM}\s*(?:%|percent|per cent)\s+of\b",
    r"\b(?:square root|cube root|factorial|logarithm|log)\s+of\s+\d",
    rf"\b{_NUM}\s+(?:squared|cubed)\b|\bto the power of\b",
    r"^\s*(?:calculate|compute|evaluate|solve|convert)\b",
    rf"\bconvert\b.*\b(?:to|into)\b|\b{_NUM}\s*{_UNITS}\s+(?:in|to|into)\s+{_UNITS}\b",
    rf"\bhow many\s+{_UNITS}\s+(?:are\s+)?(?:there\s+)?in\s+(?:a|an|one|{_NUM})\b",
    r"\bwhat(?:'s| is)? (?:the )?(?:day|date|time|year|month)(?: is it)?(?: today| now| right now)\b",
    r"\bwhat (?:day|time|year|month) is it\b|\btoday'?s date\b|\bcurrent (?:date|time|day|year|month)\b",
    r"\b(?:days?|weeks?|months?|hours?) (?:from now|from today|ago|until|till|left until|between)\b",
    r"\bday of the week\b.*\d{4}|\btip on\b",
]
_TABLE = [
    r"\bhow many\b.*\b(?:in total|total|altogether|combined|in all|times)\b",
    r"\b(?:total number|total amount|sum of|sum total|average|mean (?:number|value|of)|median)\b",
    r"\b(?:which|who|what)\b.*\b(?:had|has|have|got|scored|won|received|earned|recorded|finished|ranked|placed)\b"
    r".*\b(?:most|highest|lowest|least|fewest|largest|smallest|top|best|worst|fastest|slowest|longest|shortest)\b",
    r"\b(?:list (?:all|every|each)|all (?:the )?rows|in the table|in this table|of the table|column|spreadsheet)\b",
    r"\b(?:how many more|how many less|how many fewer|difference between the (?:number|total|score))\b",
]
_TOOL_RE = [re.compile(p, re.I) for p in _TOOL]
_TABLE_RE = [re.compile(p, re.I) for p in _TABLE]

_WH = {"which", "who", "whom", "whose", "what", "when", "where", "why", "how"}
_AUX = {"is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will", "would"}
_CONNECT = {"of", "the", "de", "du", "la", "le", "von", "van", "der", "del", "da", "in", "on", "for", "a", "an"}
_CONNECT |= {"to", "at", "&", "v.", "vs.", "vs", "y", "el", "los", "and"}
_STOP = _WH | _AUX | _CONNECT | {
    "both", "same", "common", "first", "last", "earlier", "later", "more", "most", "less", "fewer", "than",
    "out", "between", "either", "neither", "one", "two", "these", "those", "this", "that", "it", "they",
    "or", "by", "with", "from", "as", "be", "been", "known", "did", "does", "there", "kind", "type", "types",
    "sort", "all", "each", "also", "other", "among", "share", "shared",
}  # fmt: skip
_ATTR = {
    "born": {"older", "younger", "oldest", "youngest", "elder", "age", "born"},
    "height": {"taller", "tallest", "higher", "highest", "height", "tall"},
    "length": {"longer", "longest", "length", "shorter", "shortest"},
    "size": {"bigger", "larger", "smaller", "biggest", "largest", "smallest", "size"},
    "population": {"populous", "population", "inhabitants"},
}
_ATTR_OF = {w: a for a, words in _ATTR.items() for w in words}
_CUES = re.compile(r"\b(?:both|in common|same|out of|either|neither|compared|differ)\b|^(?:in )?between\b", re.I)
_JOIN = re.compile(r"\s*,?\s+(?:and|but)\s+(?=(?:what|who|when|where|which|why|how)\s)", re.I)
_EDGE = _CONNECT | {"both", "between", "either", "neither", "name", "list"}
_TOKEN = re.compile(r"\"[^\"]+\"|“[^”]+”|'[^']+'(?=\s|$|[,?.:])|\S+")


def kind_of(text: str) -> SubQueryKind:
    """The retriever a (sub-)question needs: ``tool``, ``table`` or ``text`` (first matching rule wins)."""
    if any(r.search(text) for r in _TOOL_RE):
        return "tool"
    if any(r.search(text) for r in _TABLE_RE):
        return "table"
    return "text"


def _is_name(tok: str) -> bool:
    t = tok.strip(",.?!:;()")
    return bool(t) and (t[0].isupper() or t[0].isdigit() or t[0] in "\"“'") and t.lower() not in _WH | _AUX


def _name_run(toks: list[str], start: int, step: int, allow_and: bool) -> tuple[list[str], int]:
    """The longest run of name tokens (with connectors inside) from ``start`` going ``step`` (+1 / -1), and
    how many tokens it spans before connectors at its edges are trimmed."""
    run: list[str] = []
    i = start
    while 0 <= i < len(toks):
        t = toks[i]
        low = t.lower().strip(",")
        if _is_name(t) or (low in _CONNECT and (allow_and or low != "and")):
            run.append(t)
        else:
            break
        if step > 0 and t.endswith(","):  # a comma closes an entity going forward
            break
        i += step
    spanned = len(run)
    if step < 0:
        run.reverse()
    while run and run[0].lower() in _EDGE:
        run.pop(0)
    while run and run[-1].lower().strip(",") in _CONNECT:
        run.pop()
    return (run, spanned) if any(_is_name(t) for t in run) else ([], 0)


def _clean(entity: str) -> str:
    e = re.sub(rf"\s+(?:{'|'.join(_AUX)})$", "", entity.strip().strip("?.!:;,").strip(), flags=re.I)
    if len(e) > 1 and e[0] in "\"“'" and e[-1] in "\"”'":
        e = e[1:-1].strip()
    return re.sub(r"^(?:the|a|an)\s+", "", e, flags=re.I) if len(e.split()) > 1 else e


def _attribute(rest: str) -> str:
    words = [w.strip(",.?!:;\"'()").lower() for w in rest.split()]
    out: list[str] = []
    for w in words:
        w = _ATTR_OF.get(w, w)
        if w and w not in _STOP and not w.endswith("'s") and w not in out:
            out.append(w)
    return " ".join(out)


def _around(q: str, sep: str) -> tuple[list[str], str] | None:
    """Entities as the name runs on both sides of ``sep`` (``or`` / ``and``) and the rest of the question."""
    toks = _TOKEN.findall(q)
    for i, t in enumerate(toks):
        if t.lower() != sep or i == 0:
            continue
        left, n_left = _name_run(toks, i - 1, -1, allow_and=sep != "and")
        right, n_right = _name_run(toks, i + 1, +1, allow_and=sep != "and")
        if left and right:
            rest = " ".join(toks[: i - n_left] + toks[i + 1 + n_right :])
            return [" ".join(left), " ".join(right)], rest
    return None


def _options(ents: str) -> list[str]:
    """``X or Y`` / ``X, Y, or Z`` (a comma list only with the comma before ``or``: names hold commas)."""
    sep = r"\s*,\s*(?:or\s+)?" if re.search(r",\s+or\s+", ents) else r"\s*,?\s+or\s+"
    return [c for c in (_clean(p) for p in re.split(sep, ents.strip())) if c]


def comparison_parts(query: str) -> tuple[list[str], str] | None:
    """``(entities, attribute)`` of a comparison question, or None when it is not one."""
    q = query.strip()
    first = q.split()[0].lower().strip(",") if q.split() else ""
    if ":" in q:  # "X or Y: which is older?" / "Which is older: X or Y?"
        left, _, right = q.partition(":")
        ents, head = (left, right) if re.search(r"\bor\b", left) else (right, left)
        parts = _options(ents)
        if len(parts) >= 2 and re.search(r"\bor\b", ents):
            return parts, _attribute(head)
    m = re.match(r"^((?:which|who|what|whose|where|when|how)\b[^,]*?),\s*(.+)$", q, re.I)
    if m and re.search(r"\s+or\s+", m.group(2)):  # "Which is older, X or Y?"
        ents, *tail = re.split(r",\s+(?!or\s)(?=[a-z])", m.group(2), maxsplit=1)  # "Which mall, X or Y, has had ...?"
        parts = _options(ents)
        if len(parts) >= 2:
            return parts, _attribute(" ".join([m.group(1), *tail]))
    if first in _WH | _AUX and re.search(r"\bor\b", q) and not re.search(r"\bor not\b|\beither\b", q, re.I):
        found = _around(q, "or")  # "Who was born first David Draiman or Terry Kath?"
        if found:
            return [_clean(e) for e in found[0]], _attribute(found[1])
    m = re.match(rf"^(?:{'|'.join(_AUX)})\s+(.+?)\s+((?:more|less)\s+\w+|\w+er)\s+than\s+(.+?)[?.!\s]*$", q, re.I)
    if m:  # "Is Lima older than Quito?"
        return [_clean(m.group(1)), _clean(m.group(3))], _attribute(m.group(2))
    if _CUES.search(q):  # "Are X and Y both ...?", "What do X and Y have in common?"
        found = _around(q, "and")
        if found:
            return [_clean(e) for e in found[0]], _attribute(found[1])
        m = re.match(rf"^(?:{'|'.join(_AUX)})\s+(.+?)\s+and\s+(.+?)\s+(both|of|from|in|the)\b(.*)$", q, re.I)
        if m:
            return [_clean(m.group(1)), _clean(m.group(2))], _attribute(m.group(3) + m.group(4))
    return None


class RuleDecomposer:
    """A rule-based :class:`~rag.protocols.Decomposer`: comparisons, joined questions and kind typing.

    Args:
        split_comparisons: one sub-query per compared entity (``"X born"``, ``"Y born"``).
        split_conjunctions: two joined questions (``"What is A and who founded B?"``) become two sub-queries.
        max_subqueries: at most this many sub-queries (the rest are dropped).

    Example:
        >>> RuleDecomposer().decompose("Who was born first, Alan Turing or Ada Lovelace?")
        [SubQuery(text='Alan Turing born', kind='text'), SubQuery(text='Ada Lovelace born', kind='text')]
        >>> RuleDecomposer().decompose("What is 15% of 80?")
        [SubQuery(text='What is 15% of 80?', kind='tool')]
    """

    name = "rules"

    def __init__(self, split_comparisons: bool = True, split_conjunctions: bool = True, max_subqueries: int = 4):
        self.split_comparisons = split_comparisons
        self.split_conjunctions = split_conjunctions
        self.max_subqueries = max_subqueries

    def compare(self, query: str) -> list[SubQuery]:
        """Per-entity sub-queries of a comparison question; ``[]`` when it is not one."""
        found = comparison_parts(query)
        if not found:
            return []
        ents, attr = found
        subs = [f"{e} {attr}".strip() for e in ents if e]
        return [SubQuery(s, kind_of(s)) for s in subs] if len(set(subs)) >= 2 else []

    def split(self, query: str) -> list[SubQuery]:
        """The parts of a query joined by ``and``/``?`` when each part is a question; ``[]`` otherwise."""
        parts = [p for chunk in re.split(r"(?<=\?)\s+(?=\S)", query.strip()) for p in _JOIN.split(chunk)]
        parts = [p.strip(" ,;") for p in parts if p.strip(" ,;")]
        if any(len(re.findall(r"\w+", p)) < 3 or p.split()[0].lower() not in _WH | _AUX for p in parts):
            return []  # each part must be a question of its own ("... and what other war?" is not)
        return [SubQuery(p, kind_of(p)) for p in parts] if len(parts) >= 2 else []

    def decompose(self, query: str) -> list[SubQuery]:
        """Sub-queries of ``query``; ``[SubQuery(query, kind)]`` when there is nothing to split."""
        check_query(query)
        subs = (self.compare(query) if self.split_comparisons else []) or (
            self.split(query) if self.split_conjunctions else []
        )
        subs = [s for s in subs if re.search(r"\w", s.text)][: self.max_subqueries]
        return subs if len(subs) >= 2 else [SubQuery(query, kind_of(query))]


def salient(query: str) -> set[str]:
    """The query's names and numbers (capitalised words after the first, digits), lower-cased."""
    words = re.findall(r"[\w'’.-]+", query)[1:]
    return {w.lower().strip(".") for w in words if w[0].isupper() or w[0].isdigit()} - _STOP
