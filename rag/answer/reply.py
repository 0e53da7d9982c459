"""Reading the LLM's reply: undo a copied evidence list, and recognise the abstention the prompt asks for.

Example:
    >>> tidy_answer("[1] (Security handbook) Keys rotate every 90 days.\\n[2] (FAQ) ...")
    'Keys rotate every 90 days. [1]'
    >>> says_abstain("I don't know based on the evidence.")
    True
"""

from __future__ import annotations

import re

from rag.answer.prompts import ABSTAIN

_ECHO = re.compile(r"^\s*\[(\d+)\]\s*(?:\([^)]{0,120}\)\s*)?")


def tidy_answer(text: str) -> str:
    """Undo a small model's habit of copying the evidence list: keep the first copied line only and turn its
    ``[n] (label) text`` form into ``text [n]``. Other answers are returned unchanged (stripped)."""
    text = text.strip()
    m = _ECHO.match(text)
    if not m:
        return text
    first = text.split("\n", 1)[0][m.end() :].strip().lstrip("# ").strip()
    return f"{first} [{m.group(1)}]" if first else text


def says_abstain(text: str) -> bool:
    """Whether the (tidied) reply is the abstention the prompt asks for."""
    return ABSTAIN.lower().rstrip(".") in text.lower()
