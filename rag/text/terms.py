"""Content terms: the words BM25 matches on (stop words dropped, stemmed), and how much two texts share.

Example:
    >>> sorted(terms("How often are the keys rotated?"))
    ['how', 'key', 'often', 'rotat']
    >>> overlap("How often are keys rotated?", "Keys rotate every 90 days.")
    0.5
"""

from __future__ import annotations

from rag.text.tokenizer import Tokenizer

_TOK: Tokenizer | None = None


def terms(text: str) -> set[str]:
    """The content terms of ``text`` (BM25's default tokenizer: stop words dropped, Snowball stemming)."""
    global _TOK
    if not text:
        return set()
    if _TOK is None:
        _TOK = Tokenizer()
    return set(_TOK.tokenize([text])[0])


def overlap(question: str, text: str) -> float:
    """Share of the question's content terms that occur in ``text`` (1.0 for a question without any)."""
    q = terms(question)
    return len(q & terms(text)) / len(q) if q else 1.0
