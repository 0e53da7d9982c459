"""Cross-encoder reranking with a latency budget.

:class:`CrossEncoderReranker` scores (query, passage) pairs with a sentence-transformers ``CrossEncoder``:
any Hugging Face id or local path (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2`` where a hub is reachable),
or a model trained here (``rag train reranker``) named by its registry name.

The budget: at most ``max_candidates`` hits are scored, in first-stage order, and scoring stops before a
batch that would overrun ``budget_ms``. Hits that were not scored (cut by either limit) follow the scored ones
in their first-stage order, so ``k`` may exceed ``max_candidates``.
:meth:`CrossEncoderReranker.rerank_with_report` says what was cut.

``blend`` mixes the first-stage order back in: the final order is a weighted reciprocal-rank fusion of the
cross-encoder's ranks (weight ``1 - blend``) and the first stage's (weight ``blend``). A model trained here
stores the blend that worked best on its held-out training queries; 0 means the cross-encoder alone.

Example:
    >>> rr = CrossEncoderReranker("scifact", collection="./kb", max_candidates=30)  # doctest: +SKIP
    >>> hits = rr.rerank("does vitamin D prevent falls?", kb.search("vitamin D falls", k=30), k=10)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, MissingDependencyError
from rag.types import Hit

RRF_K = 60


@dataclass(frozen=True)
class RerankReport:
    """What one rerank call did: how many candidates were scored and how many were cut, and why."""

    candidates: int
    scored: int
    cut_by_limit: int
    cut_by_time: int
    ms: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def passage_text(hit: Hit) -> str:
    """The text a reranker or verifier reads for a hit: the title (if any and not already leading), then the text."""
    title = hit.doc.meta.get("title")
    text = hit.doc.text
    if isinstance(title, str) and title and not text.startswith(title):
        return f"{title}. {text}"
    return text


def load_cross_encoder(name: str, task: str, collection: str | Path | None, **kwargs: Any) -> tuple[Any, dict]:
    """Load a CrossEncoder by registry name, directory or HF id; returns ``(model, manifest)``."""
    from rag.models.encoders import quiet_transformers
    from rag.models.registry import resolve_model

    path, manifest = resolve_model(name, task, collection)
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("sentence-transformers", purpose=f"the {task}") from e
    quiet_transformers()
    try:
        return CrossEncoder(path, **kwargs), manifest
    except (OSError, ValueError) as e:
        hint = (
            f"train one with `rag train {task}` or pass a local model directory"
            if not Path(path).exists()
            else "check that it is a cross-encoder / sequence-classification model directory"
        )
        raise ConfigError(f"cannot load {task} model {name!r} ({e}); {hint}.") from e


def score_pairs(model: Any, query: str, passages: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """A CrossEncoder's raw scores (logits of the last label) for (query, passage) pairs."""
    if not passages:
        return np.zeros(0, dtype=np.float32)
    out = model.predict(
        [(query, p) for p in passages], batch_size=batch_size, show_progress_bar=False, activation_fn=None
    )
    return np.asarray(out, dtype=np.float32).reshape(len(passages), -1)[:, -1]


class CrossEncoderReranker:
    """A :class:`~rag.protocols.Reranker` over a cross-encoder, with a candidate and time budget.

    Args:
        model: registry name (``rag models list``), model directory, or Hugging Face id.
        collection: the collection whose ``models/`` is searched for registry names.
        max_candidates: score at most this many hits (the rest are cut, reported).
        budget_ms: stop scoring before a batch that would overrun this many milliseconds.
        blend: weight of the first-stage order in the final order (0..1); None: the model's trained value, else 0.
        batch_size: pairs per forward pass. max_length: tokens per pair (default: what the model
            was trained with, else 256).
        device: ``cpu`` / ``cuda``; default CUDA when available.
    """

    def __init__(
        self,
        model: str | Path = "default",
        *,
        collection: str | Path | None = None,
        max_candidates: int = 50,
        budget_ms: float | None = None,
        blend: float | None = None,
        batch_size: int = 16,
        max_length: int | None = None,
        device: str | None = None,
    ) -> None:
        if max_candidates < 1:
            raise ConfigError(f"max_candidates must be >= 1, got {max_candidates}")
        if budget_ms is not None and budget_ms <= 0:
            raise ConfigError(f"budget_ms must be positive, got {budget_ms}")
        self.model_name = str(model)
        self.max_candidates = max_candidates
        self.budget_ms = budget_ms
        self.batch_size = batch_size
        self._model, self.manifest = load_cross_encoder(self.model_name, "reranker", collection, device=device)
        self._model.max_seq_length = max_length or self.manifest.get("settings", {}).get("max_length") or 256
        trained_blend = float(self.manifest.get("settings", {}).get("blend", 0.0))
        self.blend = trained_blend if blend is None else float(blend)
        if not 0.0 <= self.blend <= 1.0:
            raise ConfigError(f"blend must be within [0, 1], got {self.blend}")

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Raw relevance scores (higher is more relevant) for (query, passage) pairs."""
        return score_pairs(self._model, query, passages, self.batch_size)

    def rerank(self, query: str, hits: Sequence[Hit], k: int = 10) -> list[Hit]:
        return self.rerank_with_report(query, hits, k)[0]

    def rerank_with_report(self, query: str, hits: Sequence[Hit], k: int = 10) -> tuple[list[Hit], RerankReport]:
        """Rerank and report what was scored and cut. Scores of the returned hits are the cross-encoder's
        (blended ones when ``blend`` > 0); unscored hits keep their first-stage score and come last."""
        t0 = time.perf_counter()
        pool = list(hits[: self.max_candidates])
        texts = [passage_text(h) for h in pool]
        scores: list[float] = []
        per_batch = 0.0
        for i in range(0, len(pool), self.batch_size):
            elapsed = (time.perf_counter() - t0) * 1000
            if self.budget_ms is not None and scores and elapsed + per_batch > self.budget_ms:
                break
            b0 = time.perf_counter()
            scores.extend(self.score(query, texts[i : i + self.batch_size]).tolist())
            per_batch = max(per_batch, (time.perf_counter() - b0) * 1000)
        n = len(scores)
        order = sorted(range(n), key=lambda i: -scores[i])
        final = [(i, scores[i]) for i in order]
        if self.blend > 0 and n:
            ce_rank = {i: r for r, i in enumerate(order)}
            fused = {i: (1 - self.blend) / (RRF_K + ce_rank[i] + 1) + self.blend / (RRF_K + i + 1) for i in range(n)}
            final = sorted(fused.items(), key=lambda x: -x[1])
        out = [Hit(doc=pool[i].doc, score=float(s), source="rerank") for i, s in final]
        out += list(hits[n:])  # cut by time or by the candidate limit: first-stage order, after the scored
        report = RerankReport(
            candidates=len(hits),
            scored=n,
            cut_by_limit=max(0, len(hits) - self.max_candidates),
            cut_by_time=len(pool) - n,
            ms=round((time.perf_counter() - t0) * 1000, 2),
            model=self.model_name,
        )
        return out[:k], report


class Reranked:
    """A Retriever that fetches ``candidates`` hits from ``retriever`` and reranks them to ``k``."""

    def __init__(self, retriever: Any, reranker: Any, candidates: int = 50) -> None:
        self.retriever = retriever
        self.reranker = reranker
        self.candidates = candidates

    def retrieve(self, query: str, k: int = 10, filters: Any = None) -> list[Hit]:
        hits = self.retriever.retrieve(query, k=max(k, self.candidates), filters=filters)
        return list(self.reranker.rerank(query, hits, k))
