"""A quality-gated cascade: escalate to a costlier answerer only when the cheaper answer is not good enough.

Levels run cheapest first, e.g. an extractive answer from the small models alone (no LLM) → the small local
LLM → a large LLM (``openai:<model>``) → abstain. After each level a calibrated confidence decides: answer now,
or escalate. The confidence is a logistic model over signals every level has:

- ``support_mean`` / ``support_min``: the verifier's support of the answer's claims;
- ``overlap``: the share of the question's content terms found in the best passage (retrieval relevance);
- ``agreement``: token F1 between this level's answer and the previous level's (0 at the first level);
- ``abstained``: the level itself abstained.

Without fitted weights the confidence is the mean claim support (0 when the level abstained). ``rag eval
cascade`` runs every level on labelled questions, fits the weights (label: token F1 >= 0.5), and prints the
cost/quality curve: for each threshold, how many questions each level answers, the quality, and the cost.

Example:
    >>> levels = [("extractive", Extractive(rag), 0.0), ("small LLM", rag, 1.0)]  # doctest: +SKIP
    >>> Cascade(levels, threshold=0.6).ask("Who wrote it?").trace["cascade"]     # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.answer.policy import abstain, closest_sentence
from rag.answer.reply import says_abstain
from rag.answer.stages import evidence_overlap
from rag.eval.qa import token_f1
from rag.types import Answer

SIGNALS = ("support_mean", "support_min", "overlap", "agreement", "abstained", "bias")


class Extractive:
    """An answerer with no LLM: the span the pipeline's extractive reader finds (``rag train reader``), or, when it
    has none, the sentence of the evidence closest to the question; verified.

    Uses a pipeline's retrieval stages (decompose, retrieve, fuse, rerank), reader and verifier; the generator is
    never called. Cheap, and often enough for factoid questions whose answer is in one passage.
    """

    name = "extractive"

    def __init__(self, rag: Any) -> None:
        self.rag = rag

    def ask(self, question: str, filters: Mapping[str, Any] | None = None) -> Answer:
        t0 = time.perf_counter()
        hits = self.rag.retrieve(question, filters)
        trace = {"question": question, "total_ms": 0.0, "stages": []}
        if getattr(self.rag, "reader", None) is not None:
            stages = self.rag.stages()
            text = stages.read(question, hits)
            trace["stages"] = stages.ledger.stages
            if says_abstain(text):
                return abstain(question, hits, "the reader found no answer in the evidence", trace)
            claims = self.rag.verify(question, text, hits)
            trace["total_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            return Answer(text=text, claims=tuple(claims), hits=tuple(hits), trace=trace)
        found = closest_sentence(question, "", hits)
        if found is None:
            return abstain(question, hits, "no evidence sentence shares a term with the question", trace)
        sentence, hit = found
        claims = self.rag.verify(question, sentence, [hit])
        trace["total_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        text = sentence.rstrip() + " [1]"
        return Answer(text=text, claims=tuple(claims), hits=(hit, *[h for h in hits if h is not hit]), trace=trace)


COSTS = {"extractive": 0.0, "local": 1.0, "hf": 1.0, "openai": 10.0}


def levels_from(base: Any, specs: str, **llm_options: Any) -> list[tuple[str, Any, float]]:
    """Cascade levels from a comma-separated spec, cheapest first: ``extractive`` (``base``'s retrieval and
    verifier, no LLM; cost 0), ``local`` / ``hf:<id>`` (cost 1) and ``openai:<model>`` (cost 10) — each a copy
    of the ``base`` pipeline with that LLM. ``llm_options`` go to the generators (``base_url`` only to
    ``openai:`` ones)."""
    import copy

    from rag.models.generate import make_generator

    levels: list[tuple[str, Any, float]] = []
    for spec in (x.strip() for x in specs.split(",") if x.strip()):
        if spec == "extractive":
            levels.append((spec, Extractive(base), COSTS[spec]))
            continue
        kind = spec.split(":", 1)[0] if ":" in spec else "local"
        if kind not in COSTS:
            from rag.errors import ConfigError

            raise ConfigError(f"unknown cascade level {spec!r}; use extractive, local, hf:<id> or openai:<model>")
        options = dict(llm_options)
        if kind != "openai":
            options.pop("base_url", None)
            options.pop("timeout", None)
        else:
            options.pop("threads", None)
        level = copy.copy(base)
        level.generator = make_generator(spec, **options)
        levels.append((spec, level, COSTS[kind]))
    return levels


def signals(question: str, answer: Answer, previous: Answer | None) -> dict[str, float]:
    """The confidence signals of ``answer`` (see the module docstring)."""
    supports = [c.support for c in answer.claims]
    prev = previous.text if previous is not None and not previous.abstained else ""
    return {
        "support_mean": sum(supports) / len(supports) if supports else 0.0,
        "support_min": min(supports) if supports else 0.0,
        "overlap": evidence_overlap(question, answer.hits[0]) if answer.hits else 0.0,
        "agreement": token_f1(answer.text, [prev]) if prev and not answer.abstained else 0.0,
        "abstained": float(answer.abstained),
        "bias": 1.0,
    }


@dataclass
class Confidence:
    """P(answer is good) from :data:`SIGNALS`; per-level weights, or the mean support when a level has none."""

    weights: dict[str, list[float]] = field(default_factory=dict)

    def __call__(self, level: str, s: Mapping[str, float]) -> float:
        w = self.weights.get(level)
        if w is None:
            return 0.0 if s["abstained"] else s["support_mean"]
        z = sum(wi * s[k] for wi, k in zip(w, SIGNALS, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def fit(cls, rows: Mapping[str, Sequence[tuple[Mapping[str, float], bool]]]) -> Confidence:
        """Fit one logistic model per level from (signals, answer was good) rows. A level whose answers were
        all good (or all bad) gets a constant: that rate, kept within [0.01, 0.99]."""
        from rag.models.verify_signals import Calibrator

        weights = {}
        for level, data in rows.items():
            if not data:
                continue
            if len({good for _, good in data}) == 2:
                cal = Calibrator.fit([dict(s) for s, _ in data], [float(g) for _, g in data], SIGNALS, steps=3000)
                weights[level] = cal.weights
            else:
                rate = min(0.99, max(0.01, sum(g for _, g in data) / len(data)))
                weights[level] = [0.0] * (len(SIGNALS) - 1) + [round(math.log(rate / (1 - rate)), 4)]
        return cls(weights)


class Cascade:
    """Answer with the cheapest level whose confidence reaches ``threshold``; abstain when none does.

    Args:
        levels: ``(name, answerer, cost)`` cheapest first; an answerer has ``ask(question, filters) -> Answer``
            (a :class:`~rag.answer.pipeline.RAG`, an :class:`Extractive`, another cascade).
        threshold: confidence needed to answer. confidence: fitted weights (``rag eval cascade``) or defaults.
        budget: the most cost a question may spend; levels beyond it are skipped.
    """

    def __init__(
        self,
        levels: Sequence[tuple[str, Any, float]],
        *,
        threshold: float = 0.5,
        confidence: Confidence | None = None,
        budget: float = math.inf,
    ) -> None:
        if not levels:
            from rag.errors import ConfigError

            raise ConfigError("a cascade needs at least one level, e.g. [('small LLM', rag, 1.0)]")
        self.levels = list(levels)
        self.threshold = threshold
        self.confidence = confidence or Confidence()
        self.budget = budget

    def ask(self, question: str, filters: Mapping[str, Any] | None = None) -> Answer:
        spent, previous, steps = 0.0, None, []
        best: Answer | None = None
        for name, answerer, cost in self.levels:
            if spent + cost > self.budget:
                break
            spent += cost
            answer = answerer.ask(question, filters)
            conf = self.confidence(name, signals(question, answer, previous))
            steps.append({"level": name, "confidence": round(conf, 4), "cost": cost, "abstained": answer.abstained})
            if conf >= self.threshold and not answer.abstained:
                trace = {**answer.trace, "cascade": steps, "cost": spent}
                return Answer(answer.text, answer.claims, answer.hits, False, trace)
            previous, best = answer, answer
        hits = best.hits if best is not None else ()
        reason = (
            f"no level reached confidence {self.threshold} (best: {max((s['confidence'] for s in steps), default=0)})"
        )
        return abstain(question, hits, reason, {"question": question, "cascade": steps, "cost": spent})


def evaluate_cascade(
    levels: Sequence[tuple[str, Any, float]],
    questions: Mapping[str, str],
    answers: Mapping[str, Sequence[str]],
    *,
    thresholds: Sequence[float] = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9),
    progress: bool = False,
) -> dict[str, Any]:
    """Run every level on every question and report the cost/quality curve.

    Confidence weights are cross-fitted (questions split in two halves; each half is scored by the model fitted
    on the other), so the curve is not measured on the data the weights were fitted to; ``confidence`` in the
    result holds the weights fitted on all questions, for use in a :class:`Cascade`.
    """
    from tqdm import tqdm

    qids = [q for q in questions if q in answers]
    runs: dict[str, list[tuple[dict[str, float], float]]] = {}
    for qid in tqdm(qids, desc="cascade", unit="question", disable=not progress):
        previous, rows = None, []
        for _, answerer, _ in levels:
            a = answerer.ask(questions[qid])
            f1 = 0.0 if a.abstained else token_f1(a.text, answers[qid])
            rows.append((signals(questions[qid], a, previous), f1))
            previous = a
        runs[qid] = rows
    names = [name for name, _, _ in levels]

    def data(ids: Sequence[str]) -> dict[str, list[tuple[dict[str, float], bool]]]:
        return {n: [(runs[q][i][0], runs[q][i][1] >= 0.5) for q in ids] for i, n in enumerate(names)}

    half = {q: i % 2 for i, q in enumerate(qids)}
    fitted = [Confidence.fit(data([q for q in qids if half[q] != f])) for f in (0, 1)]
    conf = {q: [fitted[half[q]](n, runs[q][i][0]) for i, n in enumerate(names)] for q in qids}
    alone = {
        n: {"f1": sum(runs[q][i][1] for q in qids) / max(1, len(qids)), "cost": levels[i][2]}
        for i, n in enumerate(names)
    }
    curve = [_curve_point(t, levels, runs, conf) for t in thresholds]
    return {
        "questions": len(qids),
        "levels": names,
        "alone": alone,
        "curve": curve,
        "confidence": Confidence.fit(data(qids)).weights,
    }


def _curve_point(
    t: float,
    levels: Sequence[tuple[str, Any, float]],
    runs: Mapping[str, list[tuple[dict[str, float], float]]],
    conf: Mapping[str, list[float]],
) -> dict[str, Any]:
    """What the cascade does at threshold ``t``: the questions each level answers, abstentions, F1 and cost."""
    names = [name for name, _, _ in levels]
    by_level = dict.fromkeys(names, 0)
    f1_sum, cost_sum, answered = 0.0, 0.0, 0
    for q in runs:
        for i, n in enumerate(names):
            cost_sum += levels[i][2]
            if conf[q][i] >= t and runs[q][i][0]["abstained"] == 0.0:
                by_level[n] += 1
                f1_sum += runs[q][i][1]
                answered += 1
                break
    return {
        "threshold": t,
        "answered_by": by_level,
        "abstained": len(runs) - answered,
        "f1": f1_sum / max(1, len(runs)),
        "f1_answered": f1_sum / max(1, answered),
        "cost_per_question": cost_sum / max(1, len(runs)),
    }
