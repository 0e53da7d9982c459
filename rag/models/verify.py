"""Claim-by-claim verification of an answer against the retrieved evidence.

An answer is split into claims (sentences, and clauses joined by ``;``); ``[n]`` citation markers are kept
as the claim's citations. Each claim is checked against the evidence passages: the few passage sentences
that overlap the claim most form the premise (sentence selection, as fact-verification systems do; it also
keeps the premise short enough for a small model on CPU), and an NLI-style model gives probabilities for
supported / unsupported / contradicted. The passage that supports the claim best is its citation.

The support probability combines the model's class probabilities with a lexical/numeric-consistency signal
(share of the claim's content words and of its numbers found in the premise) through a logistic calibrator
fitted on held-out training claims; without a calibrator it is the model's P(supported).

Models: a verifier trained here (``rag train verifier``; registry name, directory) or any Hugging Face
sequence-classification NLI model (id or path) whose labels name entailment / neutral / contradiction.
With ``model=None`` only the lexical signal is used (a weak baseline, no model download needed).

Example:
    >>> v = NLIVerifier("default")                                           # doctest: +SKIP
    >>> [c.verdict for c in v.verify("When?", "It opened in 1889 [1].", hits)]  # doctest: +SKIP
    ['supported']
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.models.reader import QA_FEATURES, Reader, qa_consistency
from rag.text.sentences import split_sentences
from rag.text.terms import terms
from rag.types import Claim, Hit, Verdict

LABELS = ("supported", "unsupported", "contradicted")
_NLI_NAMES = {
    "entailment": 0,
    "supported": 0,
    "supports": 0,
    "neutral": 1,
    "unsupported": 1,
    "not_enough_info": 1,
    "contradiction": 2,
    "contradicted": 2,
    "refutes": 2,
}
_CITE = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+|\d+(?:[.,]\d+)*")
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


def split_claims(answer: str) -> list[tuple[str, tuple[str, ...]]]:
    """``(claim text, cited markers)`` per claim: sentences, then clauses separated by ``;``."""
    out = []
    for sent in split_sentences(answer):
        for clause in re.split(r";\s+", sent):
            cites = tuple(n.strip() for m in _CITE.findall(clause) for n in m.split(","))
            text = _CITE.sub("", clause).strip()
            if len(_WORD.findall(text)) >= 1:
                out.append((text, cites))
    return out


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


class NLIVerifier:
    """A :class:`~rag.protocols.Verifier`: per claim, the best supporting passage and P(supported).

    Args:
        model: registry name (``rag models list``), model directory, HF id of an NLI model, or None (lexical only).
        collection: collection whose ``models/`` is searched for registry names.
        threshold: P(supported) at or above which a claim is ``supported``.
        max_passages: passages checked per claim (best-ranked first).
        batch_size: pairs per forward pass. device: ``cpu`` / ``cuda``.
        reader: an extractive reader for question-answering consistency (:data:`~rag.models.reader.QA_FEATURES`):
            used when the calibrator was fitted with those features; ``calibrator`` replaces the model's own (e.g.
            :data:`LEXICAL_READER` for the lexical verifier with a reader).
    """

    def __init__(
        self,
        model: str | Path | None = "default",
        *,
        collection: str | Path | None = None,
        threshold: float = 0.5,
        max_passages: int = 5,
        batch_size: int = 32,
        device: str | None = None,
        reader: Reader | None = None,
        calibrator: Calibrator | None = None,
    ) -> None:
        self.threshold = threshold
        self.reader = reader
        self.max_passages = max_passages
        self.batch_size = batch_size
        self.model_name = None if model is None else str(model)
        self.manifest: dict[str, Any] = {}
        self._model: Any = None
        self._label_index = [0, 1, 2]
        self.calibrator: Calibrator | None = LEXICAL if model is None else None
        if model is not None:
            from rag.models.rerank import load_cross_encoder

            self._model, self.manifest = load_cross_encoder(str(model), "verifier", collection, device=device)
            self._model.max_seq_length = self.manifest.get("training", {}).get("max_length") or 192
            self._label_index = self._labels()
            self.calibrator = Calibrator.from_settings(self.manifest.get("settings", {}))
        self.calibrator = calibrator or self.calibrator
        if self.uses_reader and reader is None:
            from rag.errors import ConfigError

            raise ConfigError("this verifier's calibrator weighs the reader's answers: give it a reader (reader=...)")

    @property
    def uses_reader(self) -> bool:
        """Whether the calibrator weighs question-answering consistency (then :attr:`reader` is read)."""
        return self.calibrator is not None and any(f in QA_FEATURES for f in self.calibrator.features)

    def qa_features(
        self, question: str, claims: Sequence[str], passages: Sequence[str]
    ) -> list[list[dict[str, float]]]:
        """Per claim and passage, :data:`~rag.models.reader.QA_FEATURES` ({} each without a reader in use); the
        reader reads each passage once for all the claims."""
        if not self.uses_reader or self.reader is None:
            return [[{} for _ in passages] for _ in claims]
        spans = self.reader.read_each(question, passages)
        return [[qa_consistency(c, span) for span in spans] for c in claims]

    @classmethod
    def from_model(cls, model: Any, name: str, calibrator: Calibrator | None = None, **options: Any) -> NLIVerifier:
        """Wrap an already loaded CrossEncoder (e.g. one just trained)."""
        v = cls(None, **options)
        v._model, v.model_name, v.calibrator = model, name, calibrator
        v._label_index = v._labels()
        return v

    def _labels(self) -> list[int]:
        """Model output column for supported, unsupported, contradicted (from the config's id2label)."""
        from rag.errors import ConfigError

        id2label = getattr(self._model, "config", None) and self._model.config.id2label
        if not id2label or len(id2label) not in (2, 3):
            raise ConfigError(f"verifier model {self.model_name!r} must be a 2- or 3-class NLI classifier")
        index = [-1, -1, -1]
        for i, name in id2label.items():
            j = _NLI_NAMES.get(str(name).lower().replace(" ", "_"))
            if j is not None:
                index[j] = int(i)
        if index[0] < 0:
            raise ConfigError(
                f"verifier model {self.model_name!r} has labels {dict(id2label)}; none means entailment/supported"
            )
        return index

    def class_probs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(n, 3) probabilities of supported / unsupported / contradicted for (premise, hypothesis) pairs."""
        if self._model is None or not pairs:
            return np.tile([1 / 3, 1 / 3, 1 / 3], (len(pairs), 1))
        logits = np.asarray(
            self._model.predict(list(pairs), batch_size=self.batch_size, show_progress_bar=False, activation_fn=None)
        ).reshape(len(pairs), -1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        out = np.zeros((len(pairs), 3))
        for j, col in enumerate(self._label_index):
            if col >= 0:
                out[:, j] = p[:, col]
        if self._label_index[2] < 0:  # 2-class model: not-entailed counts as unsupported
            out[:, 1] = 1 - out[:, 0]
        return out

    def score(self, hypothesis: str, passages: Sequence[str]) -> list[tuple[float, np.ndarray]]:
        """(P(supported), class probabilities) of ``hypothesis`` against each passage."""
        return self.score_many([(hypothesis, passages)])[0]

    def score_many(
        self, items: Sequence[tuple[str, Sequence[str]]], extra: Sequence[Sequence[dict[str, float]]] | None = None
    ) -> list[list[tuple[float, np.ndarray]]]:
        """:meth:`score` for many (hypothesis, passages) at once: one batched model pass over all the pairs.
        ``extra``: more features per item and passage (:meth:`qa_features`)."""
        premises = [[select_premise(hyp, p) for p in passages] for hyp, passages in items]
        pairs = [(prem, hyp) for (hyp, _), prems in zip(items, premises, strict=True) for prem in prems]
        probs = iter(self.class_probs(pairs))
        out = []
        for i, ((hyp, _), prems) in enumerate(zip(items, premises, strict=True)):
            row = []
            for j, prem in enumerate(prems):
                pr = next(probs)
                feats = {**claim_features(hyp, prem, pr), **(extra[i][j] if extra else {})}
                p = float(pr[0]) if self.calibrator is None else self.calibrator(feats)
                row.append((p, pr))
            out.append(row)
        return out

    def verify(self, question: str, answer_text: str, hits: Sequence[Hit]) -> list[Claim]:
        from rag.models.rerank import passage_text

        pool = list(hits[: self.max_passages])
        split = split_claims(answer_text)
        if not pool:
            return [Claim(text=text, citations=(), support=0.0, verdict="unsupported") for text, _ in split]
        texts = [passage_text(h) for h in pool]
        claims = []
        extra = self.qa_features(question, [text for text, _ in split], texts)
        all_scored = self.score_many([(hypothesis_for(question, text), texts) for text, _ in split], extra)
        for (text, cites), scored in zip(split, all_scored, strict=True):
            best = max(range(len(pool)), key=lambda i: scored[i][0])
            p, probs = scored[best]
            verdict: Verdict
            if p >= self.threshold:
                verdict = "supported"
            else:
                verdict = "contradicted" if probs[2] > probs[1] else "unsupported"
            cited = (
                (pool[best].doc.id,)
                if p >= self.threshold
                else tuple(pool[int(c) - 1].doc.id for c in cites if c.isdigit() and 0 < int(c) <= len(pool))
            )
            claims.append(Claim(text=text, citations=cited, support=round(p, 4), verdict=verdict))
        return claims
