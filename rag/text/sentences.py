"""Sentences: split a text into sentences, keeping abbreviations and decimals together.

Example:
    >>> split_sentences("Doses, e.g. 5 mg, vary. Ask first.")
    ['Doses, e.g. 5 mg, vary.', 'Ask first.']
"""

from __future__ import annotations

import re

_SENT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|etc|vs|Dr|Mr|Mrs|Ms|Prof|St|No|Fig|al|approx|U\.S)\.$")


def _blocks(text: str) -> list[str]:
    """Paragraphs of ``text``; a Markdown heading line is a paragraph of its own."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.split("\n")
        buf: list[str] = []
        for line in lines:
            if line.lstrip().startswith("#"):
                out += [" ".join(buf)] if buf else []
                out.append(line)
                buf = []
            else:
                buf.append(line)
        out += [" ".join(buf)] if buf else []
    return out


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (keeps abbreviations such as "e.g." and decimals together); a blank line or a
    heading line also ends a sentence."""
    parts: list[str] = []
    for block in _blocks(text):
        start = len(parts)
        for piece in _SENT.split(" ".join(block.split())):
            if len(parts) > start and _ABBREV.search(parts[-1]):
                parts[-1] = f"{parts[-1]} {piece}"
            elif piece.strip():
                parts.append(piece.strip())
    return parts
