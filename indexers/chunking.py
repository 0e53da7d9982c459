"""Splitting documents into overlapping chunks with stable ids.

A document of at most ``size`` words is one chunk that keeps the document's id. A longer one is cut
into windows of ``size`` words that overlap by ``overlap`` words; each window ends at a sentence end
when one lies in its last quarter. A chunk's id is ``"{parent}#{start}-{end}"`` (character span in the
parent), so indexing the same file again yields the same ids and updates rather than duplicates.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from rag.errors import ConfigError
from rag.types import Doc

_WORD = re.compile(r"\S+")
_SENT_END = re.compile(r"[.!?。！？]['\")\]]*$")


@dataclass(frozen=True)
class Chunker:
    """Word-window chunking. ``size=0`` keeps every document whole.

    Example:
        >>> [c.id for c in Chunker(size=3, overlap=1).split(Doc("a b c d e", id="x"))]
        ['x#0-5', 'x#4-9']
    """

    size: int = 200
    overlap: int = 40

    def __post_init__(self) -> None:
        if self.size < 0 or self.overlap < 0 or (self.size and self.overlap >= self.size):
            raise ConfigError(
                f"chunk size must be >= 0 and overlap smaller than size; got size={self.size}, overlap={self.overlap}"
            )

    def split(self, doc: Doc) -> list[Doc]:
        meta = {k: v for k, v in doc.meta.items() if k != "page_starts"}
        pages = doc.meta.get("page_starts")
        words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(doc.text)]
        if not self.size or len(words) <= self.size:
            m = {**meta, "parent": doc.id, "start": 0, "end": len(doc.text)}
            if pages:
                m["page"] = 1
            return [Doc(text=doc.text, id=doc.id, meta=m)]
        out = []
        i = 0
        while i < len(words):
            j = min(len(words), i + self.size)
            if j < len(words):  # prefer ending on a sentence boundary in the window's last quarter
                for e in range(j, i + max(1, (3 * self.size) // 4), -1):
                    if _SENT_END.search(words[e - 1][2]):
                        j = e
                        break
            start, end = words[i][0], words[j - 1][1]
            m = {**meta, "parent": doc.id, "start": start, "end": end}
            if pages:
                m["page"] = bisect.bisect_right(pages, start)
            out.append(Doc(text=doc.text[start:end], id=f"{doc.id}#{start}-{end}", meta=m))
            if j >= len(words):
                break
            i = max(i + 1, j - self.overlap)
        return out
