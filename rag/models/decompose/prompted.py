"""A decomposer that asks an LLM for tagged sub-questions, with the rules as fallback."""

from __future__ import annotations

import re
from typing import Any

from rag.checks import check_query
from rag.models.decompose.rules import RuleDecomposer, kind_of, salient
from rag.text.injection import strip_control
from rag.types import SubQuery

PROMPT_SYSTEM = (
    "Split the user's question into the simple sub-questions needed to answer it, one per line. Start each line "
    "with [text] for facts to look up in documents, [table] for counting, sums, averages or rankings over a "
    "table, or [tool] for arithmetic, unit conversion or today's date. If the question is already simple, "
    "repeat it as the only line. Write nothing else."
)
PROMPT_SHOTS: tuple[tuple[str, str], ...] = (
    ("Who was born first, Marie Curie or Albert Einstein?", "[text] When was Marie Curie born?\n"
     "[text] When was Albert Einstein born?"),
    ("What is the capital of Peru and how many people live there in total?", "[text] What is the capital of "
     "Peru?\n[table] How many people live in the capital of Peru in total?"),
    ("What is 18% of 250?", "[tool] 18% of 250"),
    ("Who wrote Pride and Prejudice?", "[text] Who wrote Pride and Prejudice?"),
)  # fmt: skip
_LINE = re.compile(
    r"^\s*(?:[-*•]|\d+[.)])?\s*(?:\[\s*(text|table|tool)\s*\]|\(\s*(text|table|tool)\s*\)|(text|table|tool)\s*:)"
    r"\s*[:\-]?\s*(.*)$",
    re.I,
)
_TAG = re.compile(r"\[\s*(?:text|table|tool)\s*\]", re.I)


def _norm(s: str) -> str:
    return " ".join(re.findall(r"\w+", s.lower()))


def _echoes(text: str, query: str) -> bool:
    """True when ``text`` is the query again, or nearly (80% of the words of both shared)."""
    a, b = set(_norm(text).split()), set(_norm(query).split())
    return bool(a and b) and len(a & b) >= 0.8 * len(a | b)


class PromptedDecomposer:
    """A :class:`~rag.protocols.Decomposer` asking an LLM for tagged sub-questions, with the rules as fallback.

    The reply is read line by line: ``[text] ...``, ``[table] ...``, ``[tool] ...`` (bullets, numbers and a
    missing bracket are tolerated); untagged lines ending with ``?`` are typed by the rules. The fallback
    (the rules) decides instead when the reply holds no usable line, only repeats the prompt's examples, or
    only echoes the question (then the rules type it); :attr:`last_fallback` says which way the last call went.
    A line naming none of the question's names and numbers is dropped, and a ``[tool]`` line with no number
    and no date word is typed by the rules (small LLMs tag everything ``[tool]``).

    Args:
        generator: any object with ``generate(prompt) -> str`` (e.g. :class:`rag.models.generate.LocalGenerator`).
        fallback: the decomposer used when the reply is unusable (default :class:`RuleDecomposer`).
        max_subqueries: at most this many sub-queries.

    Example:
        >>> from rag.models.generate import LocalGenerator                                  # doctest: +SKIP
        >>> PromptedDecomposer(LocalGenerator()).decompose("Is Lima older than Quito?")  # doctest: +SKIP
    """

    name = "prompted"

    def __init__(self, generator: Any, fallback: Any = None, max_subqueries: int = 4) -> None:
        if not callable(getattr(generator, "generate", None)):
            raise TypeError(f"generator needs a generate(prompt) -> str method; got {type(generator).__name__}")
        self.generator = generator
        self.fallback = fallback if fallback is not None else RuleDecomposer(max_subqueries=max_subqueries)
        self.max_subqueries = max_subqueries
        self.last_fallback = False

    def prompt(self, query: str) -> list[dict[str, str]]:
        """The chat messages sent to the LLM: instruction, few-shot examples, then the question."""
        msgs = [{"role": "system", "content": PROMPT_SYSTEM}]
        for q, a in PROMPT_SHOTS:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return [*msgs, {"role": "user", "content": strip_control(query)}]  # no forged chat turns

    def parse(self, query: str, reply: str) -> list[SubQuery]:
        """The sub-queries in an LLM reply; ``[]`` when none is usable."""
        shots = {_norm(_TAG.sub("", x)) for q, a in PROMPT_SHOTS for x in [q, *a.splitlines()]} - {_norm(query)}
        names = salient(query)
        out: list[SubQuery] = []
        seen: set[str] = set()
        for line in str(reply or "").splitlines():
            m = _LINE.match(line)
            if m:
                text, kind = m.group(4).strip().strip("\"'"), next(g for g in m.groups()[:3] if g).lower()
            elif line.strip().endswith("?"):
                text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
                kind = kind_of(text)
            else:
                continue
            key = _norm(text)
            if len(key.split()) < 2 or key in seen or key in shots or (names and not names & set(key.split())):
                continue  # too short, a repeat, the prompt's example, or about none of the question's names
            if kind == "tool" and kind_of(text) != "tool" and not re.search(r"\d", text):
                kind = kind_of(text)  # small LLMs tag anything [tool]; a tool call needs numbers or a date
            seen.add(key)
            out.append(SubQuery(text, kind))  # type: ignore[arg-type]
        return out[: self.max_subqueries]

    def decompose(self, query: str) -> list[SubQuery]:
        """Sub-queries from the LLM, or the fallback's when its reply is unusable."""
        check_query(query)
        subs = self.parse(query, self.generator.generate(self.prompt(query)))
        self.last_fallback = not subs or (len(subs) == 1 and _echoes(subs[0].text, query))
        return list(self.fallback.decompose(query)) if self.last_fallback else subs
