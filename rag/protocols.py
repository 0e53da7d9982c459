"""The roles, one small Protocol each. Composites satisfy the same Protocols.

These are the types :class:`~rag.answer.pipeline.RAG` takes for its parts, and they match the calls it makes;
any object with the method fits (they are ``runtime_checkable``: ``isinstance(x, Retriever)`` checks that the
method exists). Optional extras a part may offer are listed in its docstring and looked up with ``getattr``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.types import Claim, Hit, SubQuery

Prompt = str | Sequence[dict[str, str]]
"""What a :class:`Generator` is given: a plain string, or chat messages (``{"role": ..., "content": ...}``)."""


@runtime_checkable
class Retriever(Protocol):
    """Returns at most ``k`` hits for a query, best first. ``k`` larger than the corpus is fine.

    Optional: ``retrieve_traced(query, k=, filters=) -> (hits, events)`` (the events go into the answer's trace)
    and ``name`` (how the trace names it)."""

    def retrieve(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]: ...


@runtime_checkable
class Reranker(Protocol):
    """Reorders ``hits`` for ``query``, best first, and keeps at most ``k``."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


@runtime_checkable
class Decomposer(Protocol):
    """Splits a question into typed sub-queries; ``[SubQuery(query)]`` when there is nothing to split."""

    def decompose(self, query: str) -> list[SubQuery]: ...


@runtime_checkable
class Generator(Protocol):
    """The frozen LLM: the answer to a prompt, whole or piece by piece, at most ``max_new_tokens`` long (None: the
    generator's own default).

    Optional: ``count_tokens(text) -> int`` and ``context_tokens`` (the prompt is packed with its tokenizer and
    within its window), ``loaded`` and ``load()`` (a first question loads it as a stage of its own), ``name``."""

    def generate(self, prompt: Prompt, max_new_tokens: int | None = None) -> str: ...

    def stream(self, prompt: Prompt, max_new_tokens: int | None = None) -> Iterator[str]: ...


@runtime_checkable
class Reader(Protocol):
    """Extractive QA: the ``top`` best answer spans over ``hits``, best first. A span has ``text``, ``hit`` (the
    index of its passage in ``hits``), ``score`` and ``null_score`` (the reader's no-answer score; the span is an
    answer only when its score is at least that), ``confidence`` and ``to_dict()``
    (:class:`rag.models.reader.Span`)."""

    def read(self, question: str, hits: Sequence[Hit], top: int = 1) -> Sequence[Any]: ...


@runtime_checkable
class Verifier(Protocol):
    """The claims of ``answer_text``, each with the passages cited for it, its support and a verdict."""

    def verify(self, question: str, answer_text: str, hits: Sequence[Hit]) -> list[Claim]: ...


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 embeddings, one row per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
