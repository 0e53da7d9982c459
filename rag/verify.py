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
_SENT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|etc|vs|Dr|Mr|Mrs|Ms|Prof|St|No|Fig|al|approx|U\.S)\.$")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+|\d+(?:[.,]\d+)*")
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
FEATURES = ("log_p_supported", "log_p_contradicted", "coverage", "numbers_missing", "bias")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (keeps abbreviations such as "e.g." and decimals together)."""
    parts: list[str] = []
    for piece in _SENT.split(text.strip()):
        if parts and _ABBREV.search(parts[-1]):
            parts[-1] = f"{parts[-1]} {piece}"
        elif piece.strip():
            parts.append(piece.strip())
    return parts


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


def _terms(text: str) -> set[str]:
    return set(_tokenizer().terms(text)) if text else set()


_TOK: Any = None


def _tokenizer() -> Any:
    global _TOK
    if _TOK is None:
        from rag.indexers.tokenize import Tokenizer

        _TOK = Tokenizer()
    return _TOK


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUM.findall(text)}


def lexical_signal(claim: str, premise: str) -> tuple[float, float]:
    """(share of the claim's content terms in the premise, share of the claim's numbers missing from it)."""
    ct, pt = _terms(claim), _terms(premise)
    coverage = len(ct & pt) / len(ct) if ct else 1.0
    cn = numbers(claim)
    missing = len(cn - numbers(premise)) / len(cn) if cn else 0.0
    return coverage, missing


def select_premise(hypothesis: str, passage: str, sentences: int = 3) -> str:
    """The ``sentences`` sentences of ``passage`` sharing most terms with ``hypothesis``, in passage order."""
    sents = split_sentences(passage)
    if len(sents) <= sentences:
        return passage
    ht = _terms(hypothesis)
    scored = sorted(range(len(sents)), key=lambda i: (-len(ht & _terms(sents[i])), i))[:sentences]
    return " ".join(sents[i] for i in sorted(scored))


def hypothesis_for(question: str, claim: str) -> str:
    """A short claim (a bare answer such as "1889") is read together with its question."""
    return f"{question.strip()} {claim}" if question and len(claim.split()) < 6 else claim


@dataclass
class Calibrator:
    """Logistic regression from :data:`FEATURES` to P(supported)."""

    weights: list[float]

    def features(self, probs: np.ndarray, coverage: float, missing: float) -> np.ndarray:
        return np.array([math.log(probs[0] + 1e-6), math.log(probs[2] + 1e-6), coverage, missing, 1.0])

    def __call__(self, x: np.ndarray) -> float:
        return float(1.0 / (1.0 + math.exp(-float(np.dot(self.weights, x)))))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, steps: int = 3000, lr: float = 0.5, l2: float = 1e-3) -> Calibrator:
        w = np.zeros(x.shape[1])
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-(x @ w)))
            w -= lr * (x.T @ (p - y) / len(y) + l2 * w)
        return cls(w.tolist())


_LEXICAL = Calibrator([0.0, 0.0, 6.0, -6.0, -3.5])  # lexical-only default: coverage high, no missing numbers


class NLIVerifier:
    """A :class:`~rag.protocols.Verifier`: per claim, the best supporting passage and P(supported).

    Args:
        model: registry name (``rag models list``), model directory, HF id of an NLI model, or None (lexical only).
        collection: collection whose ``models/`` is searched for registry names.
        threshold: P(supported) at or above which a claim is ``supported``.
        max_passages: passages checked per claim (best-ranked first).
        batch_size: pairs per forward pass. device: ``cpu`` / ``cuda``.
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
    ) -> None:
        self.threshold = threshold
        self.max_passages = max_passages
        self.batch_size = batch_size
        self.model_name = None if model is None else str(model)
        self.manifest: dict[str, Any] = {}
        self._model: Any = None
        self._label_index = [0, 1, 2]
        self.calibrator: Calibrator | None = _LEXICAL if model is None else None
        if model is not None:
            from rag.rerank import load_cross_encoder

            self._model, self.manifest = load_cross_encoder(str(model), "verifier", collection, device=device)
            self._model.max_seq_length = self.manifest.get("training", {}).get("max_length") or 192
            self._label_index = self._labels()
            cal = self.manifest.get("settings", {}).get("calibrator")
            self.calibrator = Calibrator(cal) if cal else None

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
        premises = [select_premise(hypothesis, p) for p in passages]
        probs = self.class_probs([(p, hypothesis) for p in premises])
        out = []
        for prem, pr in zip(premises, probs, strict=True):
            if self.calibrator is None:
                out.append((float(pr[0]), pr))
            else:
                cov, miss = lexical_signal(hypothesis, prem)
                out.append((self.calibrator(self.calibrator.features(pr, cov, miss)), pr))
        return out

    def verify(self, question: str, answer_text: str, hits: Sequence[Hit]) -> list[Claim]:
        from rag.rerank import passage_text

        pool = list(hits[: self.max_passages])
        claims = []
        for text, cites in split_claims(answer_text):
            if not pool:
                claims.append(Claim(text=text, citations=(), support=0.0, verdict="unsupported"))
                continue
            scored = self.score(hypothesis_for(question, text), [passage_text(h) for h in pool])
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
