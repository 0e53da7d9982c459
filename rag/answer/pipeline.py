"""``RAG``: decompose → retrieve per sub-query → fuse → rerank → pack → generate → verify → policy.

The LLM is frozen; the small models around it (decomposer, reranker, verifier) are what you adapt. Every stage
is optional except retrieval and generation, and each is any object with the matching role
(:mod:`rag.protocols`). ``Answer.trace`` is a ledger with one entry per stage: what went in and came out, the
model, milliseconds and tokens. ``trace["flagged_injection"]`` lists the evidence (passages, table rows, SQL
results, tool outputs; first prompt and repair prompts) that reads like instructions planted for the model, and
``trace["question_injection"]`` says whether the question does (see :mod:`rag.text.injection`): both are quoted as
data under a fixed system prompt, never obeyed.

``Answer.text`` is the LLM's answer with ``[n]`` markers that point at ``Answer.hits[n-1]`` (the passages that
were in the prompt); each claim's ``citations`` are document ids, re-cited by the verifier to the passage that
supports the claim best.

Example:
    >>> kb = Collection.open("kb")                                              # doctest: +SKIP
    >>> rag = RAG.from_collection(kb, llm="local", verifier=None)                # doctest: +SKIP
    >>> rag.ask("How often are keys rotated?").text                             # doctest: +SKIP
    'Every 90 days [1].'
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.answer.policy import VerifyPolicy, abstain, apply_policy, evidence_overlap
from rag.answer.prompts import ABSTAIN, build_prompt, tidy_answer
from rag.answer.routing import about_question, check_routes, collection_routes, route
from rag.checks import check_query
from rag.errors import ConfigError
from rag.models.verify import split_claims
from rag.retrievers.hybrid import fuse
from rag.types import Answer, Claim, Hit, SubQuery


@dataclass(frozen=True)
class AskEvent:
    """One event of :meth:`RAG.stream`: ``hits`` (evidence chosen), ``token`` (a piece of the answer text), then
    one ``answer`` (the verified :class:`~rag.types.Answer`, after the policy)."""

    type: Literal["hits", "token", "answer"]
    text: str = ""
    hits: tuple[Hit, ...] = ()
    answer: Answer | None = None


@dataclass
class _Ledger:
    stages: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, stage: str, t: float, model: str | None = None, **info: Any) -> None:
        self.stages.append({"stage": stage, "ms": round((time.perf_counter() - t) * 1000, 2), "model": model, **info})


def _name(obj: Any) -> str | None:
    if obj is None:
        return None
    for attr in ("name", "model_name"):
        value = getattr(obj, attr, None)
        if isinstance(value, str):
            return value
    return type(obj).__name__


class RAG:
    """The question-answering pipeline.

    Args:
        retriever: any Retriever (a collection's hybrid retriever by default in :meth:`from_collection`).
        generator: the frozen LLM (``generate(messages)`` and ``stream(messages)``).
        reranker: reorders the fused candidates (``rerank(query, hits, k)``); None keeps retrieval order.
        decomposer: splits the question into sub-queries, each retrieved and fused; None retrieves the question.
        verifier: scores each claim against the evidence; None leaves claims ``unchecked``.
        policy: ``flag`` (mark unsupported claims), ``repair`` (drop unsupported claims, re-retrieve and
            regenerate them once), ``strict`` (abstain unless every claim is supported); see :mod:`rag.answer.policy`.
        k: passages put in the prompt. candidates: passages retrieved (per sub-query) and reranked.
        budget_tokens: prompt size limit, lowered to the generator's ``context_tokens`` minus ``max_new_tokens``
            when it reports its window (the packer drops or cuts evidence beyond it and says so in the trace).
        threshold: support probability at or above which a claim counts as supported.
        min_overlap: abstain without calling the LLM when no passage shares at least this share of the
            question's content words (0 turns the gate off).
        routes: retrievers for typed sub-queries, ``{"table": TableRetriever(...), "tool": ToolRetriever(...)}``;
            sub-queries of those kinds go there, the question always goes to ``retriever`` (see
            :mod:`rag.answer.routing`). Without a decomposer the question is typed by the rule typer.
    """

    def __init__(
        self,
        retriever: Any,
        generator: Any,
        *,
        reranker: Any = None,
        decomposer: Any = None,
        verifier: Any = None,
        policy: VerifyPolicy = "flag",
        k: int = 5,
        candidates: int = 20,
        budget_tokens: int = 1500,
        max_new_tokens: int = 256,
        threshold: float = 0.5,
        min_overlap: float = 0.2,
        routes: Mapping[str, Any] | None = None,
    ) -> None:
        if policy not in ("flag", "repair", "strict"):
            raise ConfigError(f"unknown verification policy {policy!r}; use flag, repair or strict")
        if k < 1 or candidates < k:
            raise ConfigError(f"need 1 <= k <= candidates, got k={k}, candidates={candidates}")
        self.retriever, self.generator = retriever, generator
        self.reranker, self.decomposer, self.verifier = reranker, decomposer, verifier
        self.policy: VerifyPolicy = policy
        self.k, self.candidates = k, candidates
        self.budget_tokens, self.max_new_tokens = budget_tokens, max_new_tokens
        self.threshold, self.min_overlap = threshold, min_overlap
        self.routes = check_routes(routes)

    @classmethod
    def from_collection(
        cls,
        collection: Any,
        *,
        llm: str | Any = "local",
        mode: str | None = None,
        reranker: str | Any | None = None,
        decomposer: str | Any | None = None,
        verifier: str | Any | None = "lexical",
        tables: str | None = "rows",
        tools: Sequence[Any] | None = None,
        **options: Any,
    ) -> RAG:
        """A pipeline over a collection (an open :class:`~rag.indexers.collection.Collection` or its path).

        ``llm``: ``local``, ``hf:<id>``, ``openai:<model>`` or a generator. ``mode``: ``bm25``, ``dense`` or
        ``hybrid`` (default; ``bm25`` for a collection without a dense index). ``reranker``: a model name/path or
        object. ``decomposer``: ``rules``, ``learned`` (a trained classifier name) or an object. ``verifier``:
        ``lexical`` (the model-free calibrated signal), a trained model name/path, an object, or None.
        ``tables``: how table questions are answered when the collection holds tables: ``rows``, ``sql`` (the
        LLM writes a validated query) or None. ``tools``: :class:`~rag.tools.base.Tool` objects for tool questions
        (e.g. ``rag.tools.builtin.BUILTIN_TOOLS``), selected with the collection's encoder.
        """
        from rag.indexers.collection import Collection
        from rag.models.generate import make_generator

        kb = collection if isinstance(collection, Collection) else Collection.open(collection, read_only=True)
        gen = make_generator(llm, max_new_tokens=options.get("max_new_tokens", 256)) if isinstance(llm, str) else llm
        rr: Any = reranker
        if isinstance(reranker, str):
            from rag.models.rerank import CrossEncoderReranker

            rr = CrossEncoderReranker(reranker, collection=kb.model_root)
        dec: Any = decomposer
        if decomposer == "rules":
            from rag.models.decompose.rules import RuleDecomposer

            dec = RuleDecomposer()
        elif isinstance(decomposer, str):
            from rag.models.decompose.learned import LearnedDecomposer

            dec = LearnedDecomposer(decomposer, collection=kb.model_root)
        ver: Any = verifier
        if isinstance(verifier, str):
            from rag.models.verify import NLIVerifier

            ver = NLIVerifier(None if verifier == "lexical" else verifier, collection=kb.model_root)
        routes = collection_routes(kb, gen, tables, tools, options.pop("routes", None))
        mode = mode or ("hybrid" if kb.has_dense else "bm25")
        return cls(kb.retriever(mode), gen, reranker=rr, decomposer=dec, verifier=ver, routes=routes, **options)

    # ------------------------------------------------------------------ stages
    def _subqueries(self, question: str, ledger: _Ledger) -> list[SubQuery]:
        if self.decomposer is None:
            if self.routes:
                from rag.models.decompose.rules import kind_of

                return [SubQuery(question, kind_of(question))]
            return [SubQuery(question)]
        t = time.perf_counter()
        subs = list(self.decomposer.decompose(question)) or [SubQuery(question)]
        ledger.add("decompose", t, _name(self.decomposer), output=[(s.text, s.kind) for s in subs])
        return subs

    def retrieve(self, question: str, filters: Mapping[str, Any] | None = None, ledger: Any = None) -> list[Hit]:
        """The evidence for ``question`` (best first, at most ``k``): decompose, retrieve, fuse, rerank."""
        ledger = ledger if ledger is not None else _Ledger()
        subs = self._subqueries(question, ledger)
        t = time.perf_counter()
        runs, records = route(question, subs, self.retriever, self.routes, self.candidates, filters)
        hits = runs[0] if len(runs) == 1 else fuse(runs, k=self.candidates, source="fused")
        ledger.add("retrieve", t, _name(self.retriever), routes=records, output=[h.doc.id for h in hits])
        if self.reranker is not None and hits:
            t = time.perf_counter()
            hits = list(self.reranker.rerank(question, hits, k=len(hits)))
            ledger.add("rerank", t, _name(self.reranker), candidates=len(hits), output=[h.doc.id for h in hits])
        return hits[: self.k]

    def pack(self, question: str, hits: Sequence[Hit]) -> Any:
        """The prompt for ``question`` over ``hits``: the budget is capped by the generator's context window
        (minus the answer's tokens) and counted with its tokenizer when it has them."""
        count = getattr(self.generator, "count_tokens", None)
        budget = self.budget_tokens
        context = getattr(self.generator, "context_tokens", None)
        if isinstance(context, int):  # the prompt and the answer must fit the model's window
            budget = max(64, min(budget, context - self.max_new_tokens))
        return build_prompt(question, hits, budget_tokens=budget, **({"count": count} if count else {}))

    def _prepare(self, question: str, filters: Mapping[str, Any] | None) -> tuple[_Ledger, Any]:
        check_query(question)
        ledger = _Ledger()
        if getattr(self.generator, "loaded", True) is False:  # a first question: load the LLM as its own stage
            t = time.perf_counter()
            self.generator.load()
            ledger.add("load", t, _name(self.generator))
        hits = self.retrieve(question, filters, ledger)
        t = time.perf_counter()
        packed = self.pack(question, hits)
        ledger.add(
            "pack",
            t,
            None,
            passages=[h.doc.id for h in packed.hits],
            prompt_tokens=packed.tokens,
            dropped=packed.dropped,
            truncated=packed.truncated,
            flagged_injection=packed.flagged,
            question_injection=packed.question_flagged,
        )
        return ledger, packed

    def _finish(self, question: str, raw: str, packed: Any, ledger: _Ledger, gen_t: float) -> Answer:
        count = getattr(self.generator, "count_tokens", None) or (lambda s: len(s.split()))
        text = tidy_answer(raw)
        ledger.add("generate", gen_t, _name(self.generator), completion_tokens=count(raw), output=raw)
        hits = list(packed.hits)
        if ABSTAIN.lower().rstrip(".") in text.lower():
            return abstain(question, hits, "the LLM found no answer in the evidence", self._trace(question, ledger))
        claims = self.verify(question, text, hits, ledger)
        return apply_policy(self, question, text, claims, hits, ledger, self._trace(question, ledger))

    def verify(self, question: str, text: str, hits: Sequence[Hit], ledger: Any = None) -> list[Claim]:
        """Claims of ``text`` with support and verdicts (``unchecked`` without a verifier)."""
        t = time.perf_counter()
        if self.verifier is None:
            claims = [
                Claim(c, tuple(hits[int(n) - 1].doc.id for n in cites if n.isdigit() and 0 < int(n) <= len(hits)))
                for c, cites in split_claims(text)
            ]
        else:
            claims = list(self.verifier.verify(question, text, hits))
        if ledger is not None:
            ledger.add("verify", t, _name(self.verifier), output=[(c.text, c.verdict, c.support) for c in claims])
        return claims

    def _trace(self, question: str, ledger: _Ledger) -> dict[str, Any]:
        stages = ledger.stages
        return {
            "question": question,
            "policy": self.policy,
            "stages": stages,
            "total_ms": round((time.perf_counter() - ledger.t0) * 1000, 2),
            "prompt_tokens": sum(s.get("prompt_tokens", 0) for s in stages),
            "completion_tokens": sum(s.get("completion_tokens", 0) for s in stages),
            "flagged_injection": sorted({d for s in stages for d in s.get("flagged_injection", [])}),
            "question_injection": any(s.get("question_injection") for s in stages),
        }

    def _gate(self, question: str, hits: list[Hit], ledger: _Ledger) -> Answer | None:
        """Abstain before generating when no passage is about the question."""
        if not hits:
            return abstain(question, hits, "no passage was retrieved", self._trace(question, ledger))
        if (
            self.min_overlap
            and not any(about_question(h) for h in hits)
            and (max(evidence_overlap(question, h) for h in hits) < self.min_overlap)
        ):
            return abstain(question, hits, "no retrieved passage is about the question", self._trace(question, ledger))
        return None

    # ------------------------------------------------------------------ public API
    def ask(self, question: str, filters: Mapping[str, Any] | None = None) -> Answer:
        """Answer ``question`` from the evidence; every claim carries citations and a support probability."""
        ledger, packed = self._prepare(question, filters)
        gated = self._gate(question, list(packed.hits), ledger)
        if gated is not None:
            return gated
        t = time.perf_counter()
        text = self.generator.generate(packed.messages, max_new_tokens=self.max_new_tokens)
        return self._finish(question, text, packed, ledger, t)

    def stream(self, question: str, filters: Mapping[str, Any] | None = None) -> Iterator[AskEvent]:
        """The evidence, then the answer's text as it is generated, then the verified answer."""
        ledger, packed = self._prepare(question, filters)
        yield AskEvent("hits", hits=tuple(packed.hits))
        gated = self._gate(question, list(packed.hits), ledger)
        if gated is not None:
            yield AskEvent("answer", text=gated.text, answer=gated)
            return
        t = time.perf_counter()
        pieces = []
        for piece in self.generator.stream(packed.messages, max_new_tokens=self.max_new_tokens):
            pieces.append(piece)
            yield AskEvent("token", text=piece)
        answer = self._finish(question, "".join(pieces).strip(), packed, ledger, t)
        yield AskEvent("answer", text=answer.text, answer=answer)

    def ask_many(
        self, questions: Sequence[str], filters: Mapping[str, Any] | None = None, workers: int = 1
    ) -> list[Answer]:
        """Answers in the order of ``questions`` (``workers`` > 1 overlaps retrieval with generation)."""
        if workers <= 1:
            return [self.ask(q, filters) for q in questions]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda q: self.ask(q, filters), questions))

    async def aask(self, question: str, filters: Mapping[str, Any] | None = None) -> Answer:
        return await asyncio.to_thread(self.ask, question, filters)

    async def aask_many(
        self, questions: Sequence[str], filters: Mapping[str, Any] | None = None, concurrency: int = 4
    ) -> list[Answer]:
        sem = asyncio.Semaphore(concurrency)

        async def one(q: str) -> Answer:
            async with sem:
                return await self.aask(q, filters)

        return list(await asyncio.gather(*(one(q) for q in questions)))

    async def astream(self, question: str, filters: Mapping[str, Any] | None = None) -> AsyncGenerator[AskEvent, None]:
        """:meth:`stream` without blocking the event loop (the pipeline runs in a worker thread); stopping early
        stops the generation."""
        from rag.answer.aio import iterate_in_thread

        async with contextlib.aclosing(iterate_in_thread(lambda: self.stream(question, filters))) as events:
            async for ev in events:
                yield ev
