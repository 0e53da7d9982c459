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

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.models.reader import Reader, qa_consistency
from rag.models.verify_signals import (  # noqa: F401  (importable from here, as before the split)
    FEATURES,
    KNOWN_FEATURES,
    LEXICAL,
    LEXICAL_FEATURES,
    LEXICAL_READER,
    MODEL_FEATURES,
    NUMBER,
    QA_FEATURES,
    Calibrator,
    claim_features,
    hypothesis_for,
    lexical_signal,
    numbers,
    select_premise,
)
from rag.text.sentences import split_sentences
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
