"""The stages of one question, in pipeline order: decompose → retrieve → fuse → rerank, pack, gate, generate (or
read: the extractive reader's span, when there is no LLM), verify.
The policy (:mod:`rag.answer.policy`) gets these and nothing else of the pipeline.

:class:`Stages` holds a pipeline's parts for one question and the :class:`~rag.answer.ledger.Ledger` each stage
writes to; :class:`~rag.answer.pipeline.RAG` builds one per question, runs the stages in order and hands them to
the policy, which may run retrieve → pack → generate → verify again to repair a claim.

Example:
    >>> stages = Stages(kb.retriever("bm25"), llm)                     # doctest: +SKIP
    >>> hits = stages.retrieve("How often are keys rotated?")        # doctest: +SKIP
    >>> stages.ledger.stages[0]["stage"]                              # doctest: +SKIP
    'retrieve'
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.answer.ledger import Ledger, model_name
from rag.answer.prompts import ABSTAIN, PackedPrompt, build_prompt, passage_label
from rag.answer.routing import route
from rag.models.decompose.rules import kind_of
from rag.models.verify import split_claims
from rag.protocols import Decomposer, Generator, Reader, Reranker, Retriever, Verifier
from rag.retrievers.hybrid import fuse
from rag.text.terms import overlap
from rag.types import Claim, Hit, SubQuery

COMPUTED = ("sql", "tool")
"""Kinds of hit computed for the question (a SQL result, a tool's output): the gate never calls them off-topic."""


def evidence_overlap(question: str, hit: Hit) -> float:
    """Share of the question's content terms that occur in the passage (title included)."""
    return overlap(question, f"{passage_label(hit)} {hit.doc.text}")


@dataclass
class Stages:
    """A pipeline's parts for one question (see :class:`~rag.answer.pipeline.RAG` for each), and its ledger."""

    retriever: Retriever
    generator: Generator | None
    reranker: Reranker | None = None
    decomposer: Decomposer | None = None
    verifier: Verifier | None = None
    routes: Mapping[str, Retriever] = field(default_factory=dict)
    k: int = 5
    candidates: int = 20
    budget_tokens: int = 1500
    max_new_tokens: int = 256
    ledger: Ledger = field(default_factory=Ledger)
    reader: Reader | None = None

    # ------------------------------------------------------------------ retrieve: decompose → route → fuse → rerank
    def retrieve(self, question: str, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """The evidence for ``question``, best first, at most ``k``."""
        subs = self._subqueries(question)
        t = time.perf_counter()
        runs, records = route(question, subs, self.retriever, self.routes, self.candidates, filters)
        hits = runs[0] if len(runs) == 1 else fuse(runs, k=self.candidates, source="fused")
        self.ledger.add("retrieve", t, model_name(self.retriever), routes=records, output=[h.doc.id for h in hits])
        if self.reranker is not None and hits:
            t = time.perf_counter()
            hits = list(self.reranker.rerank(question, hits, k=len(hits)))
            self.ledger.add(
                "rerank", t, model_name(self.reranker), candidates=len(hits), output=[h.doc.id for h in hits]
            )
        return hits[: self.k]

    def _subqueries(self, question: str) -> list[SubQuery]:
        if self.decomposer is None:  # with routes, the rule typer sends the question where it belongs
            return [SubQuery(question, kind_of(question))] if self.routes else [SubQuery(question)]
        t = time.perf_counter()
        subs = list(self.decomposer.decompose(question)) or [SubQuery(question)]
        self.ledger.add("decompose", t, model_name(self.decomposer), output=[(s.text, s.kind) for s in subs])
        return subs

    # ------------------------------------------------------------------ pack, gate
    def pack(self, question: str, hits: Sequence[Hit]) -> PackedPrompt:
        """The prompt for ``question`` over ``hits``: the budget is capped by the generator's context window (minus
        the answer's tokens) and counted with its tokenizer when it has them."""
        budget = self.budget_tokens
        context = getattr(self.generator, "context_tokens", None)
        if isinstance(context, int):  # the prompt and the answer must fit the model's window
            budget = max(64, min(budget, context - self.max_new_tokens))
        count = getattr(self.generator, "count_tokens", None)
        return build_prompt(question, hits, budget_tokens=budget, **({"count": count} if count else {}))

    def gate(self, question: str, hits: Sequence[Hit], min_overlap: float) -> str | None:
        """Why to abstain before generating (no passage, or none about the question), or None to go on."""
        if not hits:
            return "no passage was retrieved"
        if min_overlap and not any(h.doc.meta.get("kind") in COMPUTED for h in hits):
            if max(evidence_overlap(question, h) for h in hits) < min_overlap:
                return "no retrieved passage is about the question"
        return None

    # ------------------------------------------------------------------ generate (or read), verify
    def generate(self, question: str, packed: PackedPrompt) -> str:
        """The LLM's raw reply to the packed prompt; without an LLM, the reader's answer (:meth:`read`)."""
        if self.generator is None:
            return self.read(question, packed.hits)
        return self.generator.generate(packed.messages, max_new_tokens=self.max_new_tokens)

    def read(self, question: str, hits: Sequence[Hit]) -> str:
        """The extractive reader's best span over ``hits`` with its ``[n]`` citation, or the abstention text when
        it finds none or its no-answer score beats every span; recorded as the ``read`` stage."""
        if self.reader is None:
            from rag.errors import ConfigError

            raise ConfigError("this pipeline has neither an LLM nor a reader to answer with; give it one of them")
        t = time.perf_counter()
        spans = self.reader.read(question, hits)
        span = spans[0] if spans else None
        answered = span is not None and span.score >= span.null_score
        text = f"{span.text} [{span.hit + 1}]" if answered and span is not None else ABSTAIN
        self.ledger.add("read", t, model_name(self.reader), span=span.to_dict() if span else None, output=text)
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the generator's tokenizer (words when it has none)."""
        count = getattr(self.generator, "count_tokens", None)
        return int(count(text)) if count else len(text.split())

    def verify(self, question: str, text: str, hits: Sequence[Hit], record: bool = True) -> list[Claim]:
        """Claims of ``text`` with support and verdicts (``unchecked`` without a verifier)."""
        t = time.perf_counter()
        if self.verifier is None:
            claims = [
                Claim(c, tuple(hits[int(n) - 1].doc.id for n in cites if n.isdigit() and 0 < int(n) <= len(hits)))
                for c, cites in split_claims(text)
            ]
        else:
            claims = list(self.verifier.verify(question, text, hits))
        if record:
            out = [(c.text, c.verdict, c.support) for c in claims]
            self.ledger.add("verify", t, model_name(self.verifier), output=out)
        return claims
