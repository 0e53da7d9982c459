"""What happens to a verified answer: ``flag``, ``repair`` or ``strict``, and abstaining.

- ``flag``: the answer is shown as generated; each claim carries its verdict and support, so a caller (the CLI,
  the web page) can mark the unsupported ones.
- ``repair``: supported claims are kept; each unsupported claim (at most ``MAX_REPAIRS``) is re-retrieved for on
  its own (question + claim), the LLM answers again from that evidence, and the new claims are verified; those
  supported replace it. When none is, the claim is rewritten as a quote of that evidence: the extractive reader's
  span when the pipeline has a reader, else the evidence sentence closest to it (question + claim terms); kept
  only if the verifier supports the quote too; otherwise it is dropped. The repaired text
  is rebuilt from the surviving claims with ``[n]`` markers renumbered to the answer's hits. Nothing left →
  abstain.
- ``strict``: abstain unless every claim's support reaches the threshold.

The policy sees the pipeline only through :class:`~rag.answer.stages.Stages` (retrieve, pack, generate, verify,
and the ledger they write to). Abstaining returns an :class:`~rag.types.Answer` with ``abstained=True``, a text
that says why and shows the best evidence found, and the reason in ``trace["abstain_reason"]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rag.answer.prompts import ABSTAIN, passage_label
from rag.answer.reply import says_abstain, tidy_answer
from rag.answer.stages import Stages
from rag.text.sentences import split_sentences
from rag.text.terms import terms
from rag.types import Answer, Claim, Hit

VerifyPolicy = Literal["flag", "repair", "strict"]
POLICIES: tuple[VerifyPolicy, ...] = ("flag", "repair", "strict")
MAX_REPAIRS = 2


def abstain(question: str, hits: Sequence[Hit], reason: str, trace: dict[str, Any]) -> Answer:
    """An abstention that says why and shows the best evidence found (the top passage, shortened)."""
    text = f"{ABSTAIN} ({reason})"
    if hits:
        best = hits[0]
        label = passage_label(best)
        snippet = " ".join(best.doc.text.split()[:40])
        text += f"\nClosest evidence [1]{f' ({label})' if label else ''}: {snippet}"
    return Answer(text=text, claims=(), hits=tuple(hits), abstained=True, trace={**trace, "abstain_reason": reason})


def closest_sentence(question: str, claim: str, hits: Sequence[Hit]) -> tuple[str, Hit] | None:
    """The evidence sentence sharing most terms with the question (then with ``claim``; earlier hits first),
    and its passage; None when no sentence shares a term with the question."""
    q, c = terms(question), terms(claim)
    best = max(
        (
            (len(q & t), len(c & t), -i, -j, s, h)
            for i, h in enumerate(hits)
            for j, s in enumerate(split_sentences(h.doc.text))
            for t in [terms(s)]
        ),
        default=None,
        key=lambda x: x[:4],
    )
    if best is None or best[0] == 0:
        return None
    return best[4], best[5]


def _render(claims: Sequence[Claim], hits: Sequence[Hit]) -> str:
    index = {h.doc.id: i for i, h in enumerate(hits, 1)}
    parts = []
    for c in claims:
        marks = sorted({index[d] for d in c.citations if d in index})
        text = c.text.rstrip()
        end = text[-1] if text and text[-1] in ".!?" else "."
        body = text.rstrip(".!?")
        parts.append(f"{body} [{', '.join(map(str, marks))}]{end}" if marks else f"{body}{end}")
    return " ".join(parts)


@dataclass(frozen=True)
class Policy:
    """What to do with the unsupported claims of an answer (see the module docstring).

    Args:
        name: ``flag``, ``repair`` or ``strict``.
        threshold: support at or above which a claim counts as supported.
        k: passages an answer keeps when no claim cites one.
    """

    name: VerifyPolicy = "flag"
    threshold: float = 0.5
    k: int = 5

    def apply(self, stages: Stages, question: str, text: str, claims: list[Claim], hits: list[Hit]) -> Answer:
        """The final answer (see the module docstring)."""
        trace = stages.ledger.trace(question, self.name)
        bad = [c for c in claims if c.verdict != "unchecked" and c.support < self.threshold]
        if not claims:
            return abstain(question, hits, "the LLM gave no answer", trace)
        if self.name == "flag" or not bad:
            return Answer(text=text, claims=tuple(claims), hits=tuple(hits), trace=trace)
        if self.name == "strict":
            worst = min(bad, key=lambda c: c.support)
            reason = f"claim {worst.text!r} has support {worst.support:.2f} < {self.threshold}"
            return abstain(question, hits, reason, {**trace, "claims": [vars(c) for c in claims]})
        return self._repair_all(stages, question, claims, bad, hits)

    def _repair_all(
        self, stages: Stages, question: str, claims: list[Claim], bad: list[Claim], hits: list[Hit]
    ) -> Answer:
        kept: list[Claim] = []
        all_hits = list(hits)
        for c in claims:
            if c not in bad:
                kept.append(c)
            elif bad.index(c) < MAX_REPAIRS:
                new, new_hits = self._repair(stages, question, c)
                kept += [n for n in new if n.text not in {k.text for k in kept}]
                all_hits += [h for h in new_hits if h.doc.id not in {x.doc.id for x in all_hits}]
        trace = stages.ledger.trace(question, self.name)
        trace["repaired"] = [c.text for c in bad]
        if not kept:
            return abstain(question, hits, "no claim of the answer is supported by the evidence", trace)
        used = {d for c in kept for d in c.citations}
        final_hits = [h for h in all_hits if h.doc.id in used] or all_hits[: self.k]
        return Answer(text=_render(kept, final_hits), claims=tuple(kept), hits=tuple(final_hits), trace=trace)

    def _repair(self, stages: Stages, question: str, claim: Claim) -> tuple[list[Claim], list[Hit]]:
        """Re-retrieve for one unsupported claim, regenerate, verify; the supported new claims and their evidence."""
        packed = stages.pack(question, stages.retrieve(f"{question} {claim.text}"))
        t = time.perf_counter()
        raw = stages.generate(question, packed)
        stages.ledger.add(
            "repair-generate",
            t,
            None,
            claim=claim.text,
            prompt_tokens=packed.tokens,
            output=raw,
            flagged_injection=packed.flagged,
        )
        text = tidy_answer(raw)
        new = [] if says_abstain(text) else stages.verify(question, text, packed.hits)
        good = [c for c in new if c.verdict == "supported"]
        if not good:  # the reader's span, or the evidence sentence closest to the question, if verified
            good = [c for c in self._quote(stages, question, claim, packed.hits) if c.verdict == "supported"]
        return good, list(packed.hits)

    @staticmethod
    def _quote(stages: Stages, question: str, claim: Claim, hits: Sequence[Hit]) -> list[Claim]:
        """The claims of a quote from the evidence that answers ``question``: the reader's span when the pipeline
        has a reader (none when its no-answer score wins), else the sentence closest to the question (then to the
        claim); verified."""
        if stages.reader is not None:
            if stages.generator is None:  # the reader answered already: its span would only come back
                return []
            text = stages.read(question, hits)
            return [] if says_abstain(text) else stages.verify(question, text, hits, record=False)
        found = closest_sentence(question, claim.text, hits)
        return [] if found is None else stages.verify(question, found[0], hits, record=False)
