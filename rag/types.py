"""Core value types: :class:`Doc`, :class:`Hit`, :class:`Claim`, :class:`Answer`, :class:`SubQuery`.

Frozen dataclasses, standard library only. ``meta`` mappings are plain dicts by convention; treat them
as read-only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["supported", "unsupported", "contradicted", "unchecked"]
SubQueryKind = Literal["text", "table", "tool"]


def content_id(text: str, meta: dict[str, Any] | None = None) -> str:
    """A stable id for a text (and its metadata): the first 16 hex digits of a sha256."""
    h = hashlib.sha256(text.encode("utf-8"))
    if meta:
        h.update(json.dumps(meta, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Doc:
    """A document or a chunk of one.

    ``id`` is stable: given, or a content hash. A chunk is a Doc whose meta names its ``parent``
    and its span (``start``, ``end`` character offsets into the parent's text).

    Example:
        >>> Doc("Keys rotate every 90 days.", id="policy").id
        'policy'
    """

    text: str
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Doc.text must be a str, got {type(self.text).__name__}")
        if not self.id:
            object.__setattr__(self, "id", content_id(self.text, self.meta))


@dataclass(frozen=True)
class Hit:
    """A retrieved document with its score; ``source`` names the retriever that produced it."""

    doc: Doc
    score: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``rag search --json``: id, score, source, text, meta."""
        return {
            "id": self.doc.id,
            "score": float(self.score),
            "source": self.source,
            "text": self.doc.text,
            "meta": self.doc.meta,
        }


@dataclass(frozen=True)
class SubQuery:
    """One part of a decomposed question, typed for the retriever that should answer it."""

    text: str
    kind: SubQueryKind = "text"


@dataclass(frozen=True)
class Claim:
    """A claim of an answer, the passages cited for it, and how well the evidence supports it."""

    text: str
    citations: tuple[str, ...] = ()
    support: float = 0.0
    verdict: Verdict = "unchecked"


@dataclass(frozen=True)
class Answer:
    """An answer with its claims, the evidence it was built from, and a per-stage trace."""

    text: str
    claims: tuple[Claim, ...] = ()
    hits: tuple[Hit, ...] = ()
    abstained: bool = False
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``rag ask --json``: text, abstained, claims, hits (as in search), trace."""
        return {
            "text": self.text,
            "abstained": self.abstained,
            "claims": [
                {"text": c.text, "citations": list(c.citations), "support": c.support, "verdict": c.verdict}
                for c in self.claims
            ],
            "hits": [h.to_dict() for h in self.hits],
            "trace": self.trace,
        }
