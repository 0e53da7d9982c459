"""The roles, one small Protocol each. Composites satisfy the same Protocols."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.types import Claim, Hit, SubQuery


@runtime_checkable
class Retriever(Protocol):
    """Returns at most ``k`` hits for a query, best first. ``k`` larger than the corpus is fine."""

    def retrieve(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]: ...


@runtime_checkable
class Reranker(Protocol):
    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


@runtime_checkable
class Decomposer(Protocol):
    def decompose(self, query: str) -> list[SubQuery]: ...


@runtime_checkable
class Generator(Protocol):
    def generate(self, prompt: Any) -> str: ...

    def stream(self, prompt: Any) -> Iterator[str]: ...


@runtime_checkable
class Verifier(Protocol):
    def verify(self, question: str, answer_text: str, hits: Sequence[Hit]) -> list[Claim]: ...


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 embeddings, one row per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
