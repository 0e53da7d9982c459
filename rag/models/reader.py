"""An extractive reader: the span of the evidence that answers a question, with the passage it cites.

:class:`Reader` runs a Hugging Face question-answering model (``AutoModelForQuestionAnswering``: start and end
logits per token) over ``(question, passage)`` windows of every retrieved passage, and returns the best spans.
Spans from different passages compete on their raw scores (start logit + end logit), as in multi-passage
readers (Clark & Gardner 2018); a passage longer than the window is read in overlapping windows.

Each span carries:

- ``score``: start + end logit; ``null_score``: the same at the [CLS] token, the model's "no answer here" (a
  reader trained here sees questions paired with passages that do not answer them, whose target is [CLS]);
- ``probability``: the span's share of the softmax over every candidate span and the best null of all windows;
- ``confidence``: P(the span is right), from a logistic calibrator over (probability, score - null) fitted on
  held-out training questions (``rag train reader``); without one, ``probability``.

Models: a reader trained here (``rag train reader``, registry task ``reader``; name or directory) or any Hugging
Face extractive-QA model (id or path), e.g. ``deepset/minilm-uncased-squad2`` where a hub is reachable.

Example:
    >>> reader = Reader("default")                                                 # doctest: +SKIP
    >>> reader.read("When did it open?", hits)[0].text                             # doctest: +SKIP
    '1889'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, MissingDependencyError
from rag.types import Hit

FEATURES = ("probability", "margin", "bias")
"""The calibrator's inputs: the span's probability, its score minus the best null score (clipped), a bias."""


@dataclass(frozen=True)
class Span:
    """One answer span: ``text`` is ``passage[start:end]`` of ``hits[hit]`` (document ``doc_id``)."""

    text: str
    hit: int
    doc_id: str
    start: int
    end: int
    score: float
    null_score: float
    probability: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class Window:
    """A tokenized (question, passage) window: which passage, and each token's character span in it (None for
    the question's and special tokens)."""

    passage: int
    offsets: tuple[tuple[int, int] | None, ...]


def calibrated(weights: Sequence[float] | None, probability: float, margin: float) -> float:
    """P(correct) from the calibrator ``weights`` over :data:`FEATURES`; ``probability`` when there are none."""
    if not weights:
        return probability
    z = weights[0] * probability + weights[1] * max(-10.0, min(10.0, margin)) + weights[2]
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class Reader:
    """An extractive QA reader (see the module docstring).

    Args:
        model: ``default`` (the reader registered as ``default`` in the collection or the model home), a registry
            name, a directory, or a Hugging Face id.
        collection: the collection whose ``models/reader`` is searched first.
        max_length: tokens per window (question + passage); a trained reader's own setting by default.
        stride: tokens shared by consecutive windows of a long passage.
        max_answer_tokens: the longest span considered.
        batch_size: windows per forward pass. device: ``cpu``, ``cuda``; default CUDA when available.
        int8: on CPU, quantize the linear layers to int8 (dynamic quantization): faster, slightly less exact
            (both measured in benchmarks/README.md).
    """

    def __init__(
        self,
        model: str | Path = "default",
        *,
        collection: str | Path | None = None,
        max_length: int | None = None,
        stride: int = 64,
        max_answer_tokens: int = 30,
        batch_size: int = 16,
        device: str | None = None,
        int8: bool = False,
    ) -> None:
        from rag.models.registry import resolve_model

        path, manifest = resolve_model(str(model), "reader", collection)
        if str(model) == "default" and not manifest:
            raise ConfigError(
                "no reader is trained yet: run `rag train reader` (about an hour on 2 CPU cores; minutes on a GPU), "
                "or name a Hugging Face extractive-QA model (id or directory)"
            )
        settings = manifest.get("settings", {})
        self.name, self.path = str(model), path
        self.max_length = max_length or int(settings.get("max_length", 256))
        self.stride, self.max_answer_tokens, self.batch_size = stride, max_answer_tokens, batch_size
        self.calibration: list[float] | None = settings.get("calibration")
        self.device, self.int8 = device, int8
        self._model: Any = None
        self._tok: Any = None

    def load(self) -> None:
        """Load the model now (otherwise on the first :meth:`read`)."""
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer
        except ImportError as e:  # pragma: no cover
            raise MissingDependencyError("transformers", purpose="the extractive reader") from e
        from rag.models.encoders import quiet_transformers

        quiet_transformers()
        try:
            self._tok = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForQuestionAnswering.from_pretrained(self.path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load reader {self.name!r} ({e}); pass a local model directory") from e
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device).eval()
        if self.int8 and device == "cpu":
            import warnings

            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():  # torch marks eager-mode quantization as deprecated; it still works
                warnings.simplefilter("ignore")
                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self._model = model

    def read(self, question: str, hits: Sequence[Hit | str], top: int = 1) -> list[Span]:
        """The ``top`` best spans over all ``hits`` (hits or plain passage texts), best first; [] without any."""
        texts = [h if isinstance(h, str) else h.doc.text for h in hits]
        ids = [str(i) if isinstance(h, str) else h.doc.id for i, h in enumerate(hits)]
        if not texts or not question.strip():
            return []
        candidates, nulls = self._candidates(question, texts)
        return self._spans(candidates, max(nulls), texts, ids, top)

    def read_each(self, question: str, hits: Sequence[Hit | str]) -> list[Span | None]:
        """The best span of each passage read on its own (probability and null score against that passage alone),
        in one forward pass over all of them; None for a passage without a span."""
        texts = [h if isinstance(h, str) else h.doc.text for h in hits]
        ids = [str(i) if isinstance(h, str) else h.doc.id for i, h in enumerate(hits)]
        if not texts or not question.strip():
            return [None] * len(texts)
        candidates, nulls = self._candidates(question, texts)
        out: list[Span | None] = []
        for p in range(len(texts)):
            best = self._spans([c for c in candidates if c[1] == p], nulls[p], texts, ids, 1)
            out.append(best[0] if best else None)
        return out

    def _candidates(self, question: str, texts: Sequence[str]) -> tuple[list[tuple[float, int, int, int]], list[float]]:
        """Every candidate (score, passage, char start, char end), and each passage's best null score."""
        self.load()
        windows, starts, ends = self._logits(question, texts)
        candidates: list[tuple[float, int, int, int]] = []
        nulls = [-math.inf] * len(texts)
        for w, s, e in zip(windows, starts, ends, strict=True):
            nulls[w.passage] = max(nulls[w.passage], float(s[0] + e[0]))
            found = best_spans(s, e, w.offsets, self.max_answer_tokens)
            candidates += [(score, w.passage, a, b) for score, a, b in found]
        return candidates, nulls

    def _spans(
        self,
        candidates: Sequence[tuple[float, int, int, int]],
        null: float,
        texts: Sequence[str],
        ids: Sequence[str],
        top: int,
    ) -> list[Span]:
        """The ``top`` best distinct spans of ``candidates``, with probabilities over them and the null."""
        if not candidates:
            return []
        ranked = sorted(candidates, key=lambda c: -c[0])
        peak = max(ranked[0][0], null)
        total = sum(math.exp(c[0] - peak) for c in ranked) + math.exp(null - peak)
        spans: list[Span] = []
        seen = set()
        for score, p, a0, b0 in ranked:
            raw = texts[p][a0:b0]
            text = raw.strip()
            if not text or (p, text) in seen:
                continue
            a = a0 + len(raw) - len(raw.lstrip())
            seen.add((p, text))
            prob = math.exp(score - peak) / total
            conf = calibrated(self.calibration, prob, score - null)
            spans.append(
                Span(text, p, ids[p], a, a + len(text), round(score, 4), round(null, 4), round(prob, 4), round(conf, 4))
            )
            if len(spans) == top:
                break
        return spans

    def _logits(self, question: str, texts: Sequence[str]) -> tuple[list[Window], list[Any], list[Any]]:
        """Every window of every passage, with its start and end logits (numpy, one per token)."""
        import torch

        enc = self._tok(
            [question] * len(texts),
            list(texts),
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        windows = []
        for i in range(len(enc["input_ids"])):
            seq = enc.sequence_ids(i)
            offsets = tuple(tuple(o) if seq[j] == 1 else None for j, o in enumerate(enc["offset_mapping"][i]))
            windows.append(Window(enc["overflow_to_sample_mapping"][i], offsets))  # type: ignore[arg-type]
        starts: list[Any] = []
        ends: list[Any] = []
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        with torch.inference_mode():
            for lo in range(0, len(windows), self.batch_size):
                rows = [{k: enc[k][i] for k in keys} for i in range(lo, min(len(windows), lo + self.batch_size))]
                batch = self._tok.pad(rows, return_tensors="pt").to(self._model.device)
                out = self._model(**batch)
                for j, row in enumerate(rows):
                    n = len(row["input_ids"])
                    starts.append(out.start_logits[j, :n].float().cpu().numpy())
                    ends.append(out.end_logits[j, :n].float().cpu().numpy())
        return windows, starts, ends


def best_spans(
    start: Any, end: Any, offsets: Sequence[tuple[int, int] | None], max_tokens: int, n: int = 20
) -> list[tuple[float, int, int]]:
    """The best (score, char start, char end) spans of one window: the ``n`` best start and end tokens inside the
    passage, paired when the end is not before the start and the span has at most ``max_tokens`` tokens."""
    import numpy as np

    inside = np.array([o is not None for o in offsets])
    if not inside.any():
        return []
    s = np.where(inside, start, -np.inf)
    e = np.where(inside, end, -np.inf)
    top_s = np.argsort(-s)[:n]
    top_e = np.argsort(-e)[:n]
    out = []
    for i in top_s:
        if not np.isfinite(s[i]):
            continue
        for j in top_e:
            if j < i or j - i + 1 > max_tokens or not np.isfinite(e[j]):
                continue
            a, b = offsets[i], offsets[j]
            assert a is not None and b is not None
            out.append((float(s[i] + e[j]), a[0], b[1]))
    out.sort(key=lambda x: -x[0])
    return out[:n]


QA_FEATURES = ("reader_agrees", "reader_disagrees")
"""Question-answering consistency, as verifier features: the reader's answer to the question from a passage,
weighted by its confidence, found in the claim (agrees) or not (disagrees); both 0 when the reader finds no answer
there."""


def qa_consistency(claim: str, span: Span | None) -> dict[str, float]:
    """:data:`QA_FEATURES` of ``claim`` against the reader's best ``span`` of one passage (see there)."""
    if span is None or span.score < span.null_score:
        return dict.fromkeys(QA_FEATURES, 0.0)
    words = [w for w in _words(span.text) if w not in _STOP] or _words(span.text)
    found = sum(w in set(_words(claim)) for w in words) / len(words) if words else 0.0
    return {"reader_agrees": span.confidence * found, "reader_disagrees": span.confidence * (1.0 - found)}


_STOP = frozenset({"a", "an", "the", "of", "in", "on", "at", "to", "and", "or", "for", "by", "with", "from"})


def _words(text: str) -> list[str]:
    import re

    return [w.replace(",", "") for w in re.findall(r"[a-z0-9]+(?:[.,'][a-z0-9]+)*", text.lower())]
