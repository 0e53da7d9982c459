"""The learned decomposer: a question-type classifier (MiniLM embedding + softmax head), inference only.

Labels: ``single`` (one lookup), ``bridge`` (multi-hop: the answer to one lookup names the next),
``comparison`` (the same attribute of two or more entities), ``table`` (aggregation over a table), ``tool``
(arithmetic, unit conversion, dates). Training: :mod:`rag.train.decomposer` (``rag train decomposer``).

Example:
    >>> LearnedDecomposer("models/decomposer/default").classify("What is 12 * 7?")   # doctest: +SKIP
    ('tool', 0.99)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.checks import check_query
from rag.errors import ConfigError
from rag.models.decompose.rules import RuleDecomposer, comparison_parts, kind_of
from rag.types import SubQuery

LABELS: tuple[str, ...] = ("single", "bridge", "comparison", "table", "tool")
HEAD_FILE = "head.npz"
RULE_FEATURES = ("comparison", "tool", "table", "conjunction", "length")


class LearnedDecomposer:
    """A :class:`~rag.protocols.Decomposer` whose question type comes from a small trained classifier.

    The question is embedded with the model's encoder (MiniLM by default), the rules' signals are appended
    (:func:`rule_features`: comparison found, tool / table kind, joined questions, length) and a softmax head
    predicts one of
    ``single``, ``bridge``, ``comparison``, ``table``, ``tool``. The label picks the rule: ``comparison`` splits
    per entity, ``table`` / ``tool`` type the question, ``bridge`` keeps it whole but :meth:`needs_hops` says
    to retrieve iteratively (:class:`~rag.retrievers.multihop.MultiHopRetriever`), ``single`` keeps it whole unless it
    joins two questions. Below ``threshold`` the :class:`RuleDecomposer` decides.

    Args:
        model: ``"default"``, a registered name (``rag models list``) or a model directory.
        collection: a collection directory whose ``models/`` is searched first.
        encoder: an Encoder to reuse (must be the one the model was trained with); default: the manifest's.
        threshold: the confidence below which the rules decide (default: the model's, usually 0.5).

    Example:
        >>> dec = LearnedDecomposer("default")                                        # doctest: +SKIP
        >>> dec.classify("Which is older, the Eiffel Tower or Big Ben?")              # doctest: +SKIP
        ('comparison', 0.97)
    """

    name = "learned"

    def __init__(
        self,
        model: str | Path = "default",
        collection: str | Path | None = None,
        *,
        encoder: Any = None,
        threshold: float | None = None,
    ) -> None:
        from rag.models.registry import models_home, resolve_model

        path, manifest = resolve_model(model, "decomposer", collection)
        if not manifest:
            where = f"{collection}/models/decomposer, " if collection is not None else ""
            raise ConfigError(
                f"no trained decomposer {str(model)!r} (looked for a model directory, then in {where}"
                f"{models_home() / 'decomposer'}); train one with `rag train decomposer --data ../shared/data` "
                "(or rag.train.decomposer.train_decomposer), or pass the directory of a trained decomposer"
            )
        self.path, self.manifest = Path(path), manifest
        settings = manifest.get("settings", {})
        self.labels: tuple[str, ...] = tuple(settings.get("labels", LABELS))
        try:
            with np.load(self.path / HEAD_FILE, allow_pickle=False) as z:
                self.weights, self.bias = np.asarray(z["W"], np.float32), np.asarray(z["b"], np.float32)
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"{self.path / HEAD_FILE} is missing or unreadable ({e}); retrain with --force") from e
        if self.weights.shape[1:] != (len(self.labels),) or self.bias.shape != (len(self.labels),):
            raise ConfigError(f"{self.path / HEAD_FILE} does not match the labels {self.labels}; retrain with --force")
        self.threshold = float(settings.get("threshold", 0.5) if threshold is None else threshold)
        if encoder is None:
            from rag.models.encoders import SentenceTransformerEncoder

            encoder = SentenceTransformerEncoder(settings.get("encoder", "default"))
        self.encoder = encoder
        self.rules = RuleDecomposer()

    def probabilities(self, queries: Sequence[str]) -> np.ndarray:
        """Label probabilities, one row per query, columns in :attr:`labels` order."""
        x = features(self.encoder.encode(list(queries)), queries)
        if x.shape[1] != self.weights.shape[0]:
            raise ConfigError(
                f"the encoder gives {x.shape[1] - len(RULE_FEATURES)}-d vectors but the decomposer at {self.path} was "
                f"trained on {self.weights.shape[0] - len(RULE_FEATURES)}-d ones; use its encoder "
                f"({self.manifest.get('settings', {}).get('encoder')})"
            )
        return softmax(x @ self.weights + self.bias)

    def classify_batch(self, queries: Sequence[str]) -> list[tuple[str, float]]:
        """``(label, probability)`` of the most likely type of each query."""
        for q in queries:
            check_query(q)
        if not queries:
            return []
        p = self.probabilities(queries)
        return [(self.labels[int(i)], float(row[i])) for row, i in zip(p, p.argmax(1), strict=True)]

    def classify(self, query: str) -> tuple[str, float]:
        """``(label, probability)`` of the most likely type of ``query``."""
        return self.classify_batch([query])[0]

    def needs_hops(self, query: str) -> bool:
        """True when the classifier is confident ``query`` is a bridge (multi-hop) question."""
        label, prob = self.classify(query)
        return label == "bridge" and prob >= self.threshold

    def from_label(self, query: str, label: str, prob: float) -> list[SubQuery]:
        """The sub-queries for a query already classified (``classify_batch`` then this, for batches)."""
        if prob < self.threshold:
            return self.rules.decompose(query)
        if label in ("table", "tool"):
            return [SubQuery(query, label)]  # type: ignore[arg-type]
        if label == "comparison":
            subs = self.rules.compare(query) or self.rules.split(query)
        elif label == "single":
            subs = self.rules.split(query)
        else:
            subs = []
        return subs if len(subs) >= 2 else [SubQuery(query)]

    def decompose(self, query: str) -> list[SubQuery]:
        """Sub-queries of ``query`` built by the rule its predicted type picks."""
        return self.from_label(query, *self.classify(query))


_RULES = RuleDecomposer()


def rule_features(queries: Sequence[str]) -> np.ndarray:
    """The rules' signals per query (:data:`RULE_FEATURES`): comparison found, tool kind, table kind, joined
    questions (0/1 each) and length in words / 40 (capped at 1)."""
    rows = []
    for q in queries:
        k = kind_of(q)
        n = min(len(q.split()), 40) / 40
        rows.append([comparison_parts(q) is not None, k == "tool", k == "table", len(_RULES.split(q)) > 1, n])
    return np.array(rows, dtype=np.float32).reshape(len(rows), len(RULE_FEATURES))


def features(embeddings: np.ndarray, queries: Sequence[str]) -> np.ndarray:
    """The classifier's input: the embeddings with the rule features appended."""
    return np.hstack([np.asarray(embeddings, np.float32), rule_features(queries)])


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))
