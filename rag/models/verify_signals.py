"""The signals a claim verifier weighs, and the calibrator that turns them into P(supported).

- lexical/numeric consistency of a claim with its premise (:func:`lexical_signal`);
- an NLI model's class probabilities (:data:`MODEL_FEATURES`, when the verifier has a model);
- question-answering consistency: the extractive reader's answer from the passage against the claim
  (:data:`~rag.models.reader.QA_FEATURES`, when the verifier has a reader).

:class:`Calibrator` is a logistic regression over any of them; :data:`LEXICAL` is the one the model-free
verifier uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.models.reader import QA_FEATURES
from rag.text.sentences import split_sentences
from rag.text.terms import terms

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
"""A number as it is written in text (``1,889``, ``3.5``)."""
_NAME = re.compile(r"\b[A-Z][a-zA-Z]+")
MODEL_FEATURES = ("log_p_supported", "log_p_contradicted")
LEXICAL_FEATURES = (
    "coverage",
    "numbers_missing",
    "any_number_missing",
    "names_missing",
    "any_name_missing",
    "bias",
)
FEATURES = MODEL_FEATURES + LEXICAL_FEATURES
KNOWN_FEATURES = FEATURES + QA_FEATURES
"""Every feature a calibrator may use: :data:`FEATURES`, and the reader's question-answering consistency."""


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def lexical_signal(claim: str, premise: str) -> dict[str, float]:
    """Lexical/numeric consistency of ``claim`` with ``premise`` (the :data:`LEXICAL_FEATURES`).

    Missing content terms, numbers and capitalised names are what a planted or hallucinated answer leaves
    behind: a wrong number or entity is usually absent from the passage that should support it. Counts are
    capped (3 numbers, 3 names) so one long claim does not dominate. There is deliberately no "every term
    found" feature: planted training claims are verbatim passage sentences, so such a feature learns a
    shortcut that fails on paraphrased LLM answers (it scored a correct, reworded answer 0.38).
    """
    ct, pt = terms(claim), terms(premise)
    missing = len(ct - pt)
    nums = len(numbers(claim) - numbers(premise))
    low = premise.lower()
    names = sum(1 for n in {m.lower() for m in _NAME.findall(claim)} if n not in low)
    return {
        "coverage": 1.0 - missing / len(ct) if ct else 1.0,
        "numbers_missing": min(nums, 3) / 3,
        "any_number_missing": float(nums > 0),
        "names_missing": min(names, 3) / 3,
        "any_name_missing": float(names > 0),
        "bias": 1.0,
    }


def claim_features(claim: str, premise: str, probs: np.ndarray | None = None) -> dict[str, float]:
    """All :data:`FEATURES` of one (premise, claim) pair; ``probs`` are the model's class probabilities."""
    feats = lexical_signal(claim, premise)
    if probs is not None:
        feats["log_p_supported"] = math.log(float(probs[0]) + 1e-6)
        feats["log_p_contradicted"] = math.log(float(probs[2]) + 1e-6)
    return feats


def select_premise(hypothesis: str, passage: str, sentences: int = 3) -> str:
    """The ``sentences`` sentences of ``passage`` sharing most terms with ``hypothesis``, in passage order."""
    sents = split_sentences(passage)
    if len(sents) <= sentences:
        return passage
    ht = terms(hypothesis)
    scored = sorted(range(len(sents)), key=lambda i: (-len(ht & terms(sents[i])), i))[:sentences]
    return " ".join(sents[i] for i in sorted(scored))


_VERB = re.compile(
    r"\b(?:is|are|was|were|be|been|has|have|had|will|would|can|could|must|should|may|might|do|does|did)\b", re.I
)


def hypothesis_for(question: str, claim: str) -> str:
    """A bare answer ("1889", "Denver Broncos": under six words, no auxiliary verb) is read together with its
    question; a sentence ("Coffee is free before nine.") stands on its own."""
    bare = len(claim.split()) < 6 and not _VERB.search(claim)
    return f"{question.strip()} {claim}" if question and bare else claim


@dataclass
class Calibrator:
    """Logistic regression from named features (a subset of :data:`FEATURES`) to P(supported)."""

    weights: list[float]
    features: tuple[str, ...] = FEATURES

    def vector(self, feats: dict[str, float]) -> np.ndarray:
        return np.array([feats[f] for f in self.features])

    def __call__(self, feats: dict[str, float]) -> float:
        z = float(np.dot(self.weights, self.vector(feats)))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def fit(
        cls,
        rows: Sequence[dict[str, float]],
        y: Sequence[float],
        features: Sequence[str] = FEATURES,
        steps: int = 5000,
        lr: float = 1.0,
        l2: float = 1e-3,
    ) -> Calibrator:
        """Gradient descent on the log-loss; ``y`` is 1 for supported claims."""
        x = np.array([[r[f] for f in features] for r in rows])
        t = np.asarray(y, dtype=float)
        w = np.zeros(x.shape[1])
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-(x @ w)))
            w -= lr * (x.T @ (p - t) / len(t) + l2 * w)
        return cls([round(float(v), 4) for v in w], tuple(features))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Calibrator | None:
        """The calibrator stored in a model manifest's settings (None when the model has none)."""
        weights = settings.get("calibrator")
        if not weights:
            return None
        names = tuple(settings.get("features") or FEATURES)
        unknown = set(names) - set(KNOWN_FEATURES)
        if unknown or len(names) != len(weights):
            from rag.errors import ConfigError

            raise ConfigError(
                f"verifier calibrator has features {list(names)} for {len(weights)} weights; "
                f"this version knows {list(KNOWN_FEATURES)}: retrain it with `rag train verifier --force`"
            )
        return cls(list(weights), names)


# Lexical-only calibrator for ``NLIVerifier(None)``: fitted on planted-error claims from 800 SQuAD dev questions
# (`python benchmarks/small_models.py verifier` fits and prints these weights: "lexical calibrator fitted on squad").
LEXICAL = Calibrator(
    [4.2429, -0.9802, -2.4561, -3.7563, 1.3922, -3.061],
    LEXICAL_FEATURES,
)

# The lexical verifier with a reader: the same signals plus the reader's question-answering consistency, fitted on
# planted-error claims from 500 SQuAD *train* questions with the reader trained by `rag train reader` on SQuAD train
# (`python benchmarks/reader_verifier.py --train-n 500 --test-n 300` prints these weights: "lexical+reader").
LEXICAL_READER = Calibrator(
    [3.1176, -1.0222, -2.7692, -3.5745, 1.0694, -2.1358, 3.5632, -1.9277],
    LEXICAL_FEATURES + QA_FEATURES,
)
