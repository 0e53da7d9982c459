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
from dataclasses import dataclass
from typing import Any, Literal

from rag.answer import assemble
from rag.answer.aio import iterate_in_thread
from rag.answer.ledger import Ledger, model_name
from rag.answer.policy import POLICIES, Policy, VerifyPolicy, abstain
from rag.answer.prompts import PackedPrompt
from rag.answer.reply import says_abstain, tidy_answer
from rag.answer.routing import check_routes
from rag.answer.stages import Stages
from rag.checks import check_query
from rag.errors import ConfigError
from rag.protocols import Decomposer, Generator, Reader, Reranker, Retriever, Verifier
from rag.types import Answer, Claim, Hit


@dataclass(frozen=True)
class AskEvent:
    """One event of :meth:`RAG.stream`: ``hits`` (evidence chosen), ``token`` (a piece of the answer text), then
    one ``answer`` (the verified :class:`~rag.types.Answer`, after the policy)."""

    type: Literal["hits", "token", "answer"]
    text: str = ""
    hits: tuple[Hit, ...] = ()
    answer: Answer | None = None


class RAG:
    """The question-answering pipeline.

    Args:
        retriever: any Retriever (a collection's hybrid retriever by default in :meth:`from_collection`).
        generator: the frozen LLM (``generate(messages, max_new_tokens=)`` and ``stream(...)``); None answers
            with ``reader`` alone.
        reader: an extractive reader (:class:`~rag.models.reader.Reader`): with no LLM, the answer is its best
            span, cited, or an abstention when its no-answer score wins; also the cascade's cheapest level.
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
        retriever: Retriever,
        generator: Generator | None,
        *,
        reranker: Reranker | None = None,
        decomposer: Decomposer | None = None,
        verifier: Verifier | None = None,
        policy: VerifyPolicy = "flag",
        k: int = 5,
        candidates: int = 20,
        budget_tokens: int = 1500,
        max_new_tokens: int = 256,
        threshold: float = 0.5,
        min_overlap: float = 0.2,
        routes: Mapping[str, Retriever] | None = None,
        reader: Reader | None = None,
    ) -> None:
        if policy not in POLICIES:
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
        self.reader = reader

    @classmethod
    def from_collection(
        cls,
        collection: Any,
        *,
        llm: str | Generator | None = "local",
        mode: str | None = None,
        reranker: str | Reranker | None = "auto",
        decomposer: str | Decomposer | None = None,
        verifier: str | Verifier | None = "lexical",
        tables: str | None = "rows",
        tools: Sequence[Any] | None = None,
        adapted: bool = True,
        reader: str | Reader | None = "auto",
        **options: Any,
    ) -> RAG:
        """A pipeline over a collection (an open :class:`~rag.indexers.collection.Collection` or its path).

        ``llm``: ``local``, ``hf:<id>``, ``openai:<model>`` or a generator. ``mode``: ``bm25``, ``dense`` or
        ``hybrid`` (default; ``bm25`` for a collection without a dense index). ``reranker``: a model name/path, an
        object, None, or ``auto`` (default): the reranker the collection adopted (:mod:`rag.models.adoption`), if
        any; ``adapted=False`` uses no adopted model. ``decomposer``: ``rules``, ``learned`` (a trained classifier
        name) or an object. ``verifier``: ``lexical`` (the model-free calibrated signal), a trained model
        name/path, an object, or None (with a reader, the lexical verifier also weighs whether the reader's answer
        from each passage is in the claim). ``tables``: how table questions are answered when the collection holds
        tables: ``rows``, ``sql`` (rules, else the LLM, write a validated query) or None. ``tools``:
        :class:`~rag.tools.base.Tool` objects for tool questions (e.g. ``rag.tools.builtin.BUILTIN_TOOLS``),
        selected with the collection's encoder. ``reader``: a reader's name/path (``rag train reader``), an object,
        None, or ``auto`` (default): the reader registered as ``default`` in the collection or the model home, if
        any. ``llm=None`` answers with the reader alone. The parts are built by :mod:`rag.answer.assemble`.
        """
        from rag.indexers.collection import Collection  # DuckDB, FAISS, numba: loaded with the first collection

        kb = collection if isinstance(collection, Collection) else Collection.open(collection, read_only=True)
        gen = None if llm is None else assemble.generator(llm, options.get("max_new_tokens", 256))
        read = assemble.reader(reader, kb.model_root, required=gen is None)
        parts: dict[str, Any] = {
            "reader": read,
            "reranker": assemble.reranker(reranker, kb.model_root, adapted),
            "decomposer": assemble.decomposer(decomposer, kb.model_root),
            "verifier": assemble.verifier(verifier, kb.model_root, read),
            "routes": assemble.collection_routes(kb, gen, tables, tools, options.pop("routes", None)),
        }
        return cls(kb.retriever(mode or ("hybrid" if kb.has_dense else "bm25")), gen, **parts, **options)

    # ------------------------------------------------------------------ the stages of one question
    def stages(self, ledger: Ledger | None = None) -> Stages:
        """This pipeline's parts as the :class:`~rag.answer.stages.Stages` of one question, writing to ``ledger``."""
        return Stages(
            self.retriever,
            self.generator,
            reranker=self.reranker,
            decomposer=self.decomposer,
            verifier=self.verifier,
            routes=self.routes,
            k=self.k,
            candidates=self.candidates,
            budget_tokens=self.budget_tokens,
            max_new_tokens=self.max_new_tokens,
            ledger=ledger if ledger is not None else Ledger(),
            reader=self.reader,
        )

    def retrieve(self, question: str, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """The evidence for ``question`` (best first, at most ``k``): decompose, retrieve, fuse, rerank."""
        return self.stages().retrieve(question, filters)

    def pack(self, question: str, hits: Sequence[Hit]) -> PackedPrompt:
        """The prompt for ``question`` over ``hits`` (see :meth:`Stages.pack <rag.answer.stages.Stages.pack>`)."""
        return self.stages().pack(question, hits)

    def verify(self, question: str, text: str, hits: Sequence[Hit]) -> list[Claim]:
        """Claims of ``text`` with support and verdicts (``unchecked`` without a verifier)."""
        return self.stages().verify(question, text, hits)

    def _prepare(self, question: str, filters: Mapping[str, Any] | None) -> tuple[Stages, PackedPrompt]:
        """Check the question, load the LLM on first use, retrieve and pack: each a stage in the ledger."""
        check_query(question)
        stages = self.stages()
        if getattr(self.generator, "loaded", True) is False:  # a first question: load the LLM as its own stage
            t = time.perf_counter()
            self.generator.load()  # type: ignore[union-attr]
            stages.ledger.add("load", t, model_name(self.generator))
        hits = stages.retrieve(question, filters)
        t = time.perf_counter()
        packed = stages.pack(question, hits)
        stages.ledger.add(
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
        return stages, packed

    def _gate(self, question: str, stages: Stages, packed: PackedPrompt) -> Answer | None:
        """An abstention before generating, when no passage is about the question; else None."""
        reason = stages.gate(question, packed.hits, self.min_overlap)
        if reason is None:
            return None
        return abstain(question, packed.hits, reason, stages.ledger.trace(question, self.policy))

    def _finish(self, question: str, raw: str, packed: PackedPrompt, stages: Stages, gen_t: float) -> Answer:
        """Record the generation, verify its claims and apply the policy."""
        text = tidy_answer(raw)
        if self.generator is not None:  # the reader records its own stage
            tokens = stages.count_tokens(raw)
            stages.ledger.add("generate", gen_t, model_name(self.generator), completion_tokens=tokens, output=raw)
        hits = list(packed.hits)
        if says_abstain(text):
            trace = stages.ledger.trace(question, self.policy)
            who = "the LLM" if self.generator is not None else "the reader"
            return abstain(question, hits, f"{who} found no answer in the evidence", trace)
        claims = stages.verify(question, text, hits)
        return Policy(self.policy, self.threshold, self.k).apply(stages, question, text, claims, hits)

    # ------------------------------------------------------------------ public API
    def ask(self, question: str, filters: Mapping[str, Any] | None = None) -> Answer:
        """Answer ``question`` from the evidence; every claim carries citations and a support probability."""
        stages, packed = self._prepare(question, filters)
        gated = self._gate(question, stages, packed)
        if gated is not None:
            return gated
        t = time.perf_counter()
        return self._finish(question, stages.generate(question, packed), packed, stages, t)

    def stream(self, question: str, filters: Mapping[str, Any] | None = None) -> Iterator[AskEvent]:
        """The evidence, then the answer's text as it is generated, then the verified answer."""
        stages, packed = self._prepare(question, filters)
        yield AskEvent("hits", hits=tuple(packed.hits))
        gated = self._gate(question, stages, packed)
        if gated is not None:
            yield AskEvent("answer", text=gated.text, answer=gated)
            return
        t = time.perf_counter()
        pieces = []
        if self.generator is None:  # the reader's span comes whole
            stream: Iterator[str] = iter([stages.read(question, packed.hits)])
        else:
            stream = self.generator.stream(packed.messages, max_new_tokens=self.max_new_tokens)
        for piece in stream:
            pieces.append(piece)
            yield AskEvent("token", text=piece)
        answer = self._finish(question, "".join(pieces).strip(), packed, stages, t)
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
        """:meth:`ask` without blocking the event loop (it runs in a worker thread)."""
        return await asyncio.to_thread(self.ask, question, filters)

    async def aask_many(
        self, questions: Sequence[str], filters: Mapping[str, Any] | None = None, concurrency: int = 4
    ) -> list[Answer]:
        """:meth:`aask` for many questions, at most ``concurrency`` at a time; answers in order."""
        sem = asyncio.Semaphore(concurrency)

        async def one(q: str) -> Answer:
            async with sem:
                return await self.aask(q, filters)

        return list(await asyncio.gather(*(one(q) for q in questions)))

    async def astream(self, question: str, filters: Mapping[str, Any] | None = None) -> AsyncGenerator[AskEvent, None]:
        """:meth:`stream` without blocking the event loop (the pipeline runs in a worker thread); stopping early
        stops the generation."""
        async with contextlib.aclosing(iterate_in_thread(lambda: self.stream(question, filters))) as events:
            async for ev in events:
                yield ev
