"""LangChain interop (the only module that imports ``langchain_core``; ``pip install 'pilotfish[langchain]'``).

Both directions, so pilotfish drops into a LangChain app and LangChain parts drop into pilotfish:

* :class:`PilotfishRetriever` — any pilotfish Retriever (bm25, dense, hybrid, table, tool, a collection) as a
  LangChain ``BaseRetriever``, sync and async. Each Document's metadata is the hit's metadata plus ``id``,
  ``score`` and ``retriever`` (the pilotfish source; ``source`` stays the file it came from).
* :func:`as_runnable` / :func:`as_stream_runnable` — the whole ``RAG`` pipeline as a Runnable: a question in,
  an :class:`~rag.types.Answer` out; or the answer's tokens as they come.
* :class:`LangChainRetriever` — a LangChain retriever as a pilotfish Retriever (fuse it, rerank it).
* :func:`docs_from_langchain` / :func:`load_langchain` — LangChain Documents or a document loader into
  ``Collection.add``.
* :class:`LangChainGenerator` — any LangChain chat model as the frozen LLM; :class:`ChatPilotfish` — a pilotfish
  generator (the local SmolLM2, an OpenAI-compatible server) as a LangChain chat model.
* :class:`RerankCompressor` — a pilotfish reranker as a ``BaseDocumentCompressor``.

Example:
    >>> from rag.connectors.langchain import PilotfishRetriever               # doctest: +SKIP
    >>> lc = PilotfishRetriever(retriever=Collection.open("kb").retriever(), k=4)  # doctest: +SKIP
    >>> lc.invoke("how often do keys rotate?")[0].metadata["score"]          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from rag.errors import MissingDependencyError
from rag.types import Doc, Hit

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
    from pydantic import ConfigDict
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError("langchain-core", extra="langchain", purpose="the LangChain adapters") from e

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def to_document(hit: Hit) -> Document:
    """A hit as a LangChain Document (metadata: the hit's, plus ``id``, ``score``, ``retriever``)."""
    meta = {**hit.doc.meta, "id": hit.doc.id, "score": float(hit.score), "retriever": hit.source}
    return Document(page_content=hit.doc.text, metadata=meta, id=hit.doc.id)


def docs_from_langchain(documents: Iterable[Document]) -> list[Doc]:
    """LangChain Documents as pilotfish Docs (id: the Document's, else a content hash) for ``Collection.add``."""
    return [Doc(text=d.page_content, id=d.id or "", meta=dict(d.metadata)) for d in documents]


def load_langchain(loader: Any) -> list[Doc]:
    """Everything a LangChain document loader yields, as pilotfish Docs."""
    return docs_from_langchain(loader.lazy_load())


class PilotfishRetriever(BaseRetriever):
    """A pilotfish Retriever as a LangChain retriever.

    Example:
        >>> PilotfishRetriever(retriever=kb.retriever("hybrid"), k=3).invoke("rotate keys")  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    retriever: Any
    k: int = 4
    filters: dict[str, Any] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        filters = kwargs.get("filters", self.filters)
        return [to_document(h) for h in self.retriever.retrieve(query, k=k, filters=filters)]

    async def _aget_relevant_documents(self, query: str, *, run_manager: Any, **kwargs: Any) -> list[Document]:
        return await asyncio.to_thread(self._get_relevant_documents, query, run_manager=run_manager, **kwargs)


class LangChainRetriever:
    """A LangChain retriever as a pilotfish Retriever: scores from ``metadata["score"]`` when present, else
    the reciprocal of the rank; ``filters`` are not supported (LangChain retrievers take their own)."""

    def __init__(self, retriever: Any, name: str = "langchain") -> None:
        self.lc, self.name = retriever, name

    def retrieve(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        from rag.checks import check_k, check_query
        from rag.errors import ConfigError

        check_query(query)
        check_k(k)
        if filters:
            raise ConfigError("a wrapped LangChain retriever takes no pilotfish filters; configure them on it")
        docs = self.lc.invoke(query)[:k]
        return [
            Hit(
                doc=Doc(text=d.page_content, id=d.id or "", meta=dict(d.metadata)),
                score=float(d.metadata.get("score", 1.0 / (i + 1))),
                source=self.name,
            )
            for i, d in enumerate(docs)
        ]


def _messages(prompt: Any) -> list[tuple[str, str]]:
    if isinstance(prompt, str):
        return [("human", prompt)]
    return [("ai" if m["role"] == "assistant" else "human" if m["role"] == "user" else m["role"], m["content"])
            for m in prompt]  # fmt: skip


class LangChainGenerator:
    """Any LangChain chat model as the frozen LLM of ``RAG`` (``generate`` and ``stream``). The chat model's own
    settings decide the answer's length: ``max_new_tokens`` is accepted for the pipeline's sake and not used."""

    def __init__(self, chat_model: Any) -> None:
        self.chat = chat_model
        self.name = getattr(chat_model, "model_name", None) or type(chat_model).__name__

    def generate(self, prompt: Any, max_new_tokens: int | None = None) -> str:
        return str(self.chat.invoke(_messages(prompt)).content)

    def stream(self, prompt: Any, max_new_tokens: int | None = None) -> Iterator[str]:
        for chunk in self.chat.stream(_messages(prompt)):
            if chunk.content:
                yield str(chunk.content)


class ChatPilotfish(BaseChatModel):
    """A pilotfish generator (``LocalGenerator``, ``OpenAIGenerator``, ...) as a LangChain chat model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    generator: Any

    @property
    def _llm_type(self) -> str:
        return "pilotfish"

    def _prompt(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = str(self.generator.generate(self._prompt(messages)))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self.generator.stream(self._prompt(messages)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))


def _question(value: Any) -> str:
    return str(value["question"] if isinstance(value, Mapping) else value)


def as_runnable(rag: Any) -> Runnable[Any, Any]:
    """The ``RAG`` pipeline as a Runnable: a question (or ``{"question": ...}``) in, an ``Answer`` out."""

    async def ainvoke(value: Any) -> Any:
        return await rag.aask(_question(value))

    return RunnableLambda(lambda value: rag.ask(_question(value)), afunc=ainvoke, name="pilotfish_rag")


def as_stream_runnable(rag: Any) -> Runnable[Any, str]:
    """The ``RAG`` pipeline as a streaming Runnable: the answer's tokens as they come (``stream``/``astream``)."""

    def tokens(values: Iterator[Any]) -> Iterator[str]:
        for value in values:
            for ev in rag.stream(_question(value)):
                if ev.type == "token":
                    yield ev.text

    async def atokens(values: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for value in values:
            async for ev in rag.astream(_question(value)):
                if ev.type == "token":
                    yield ev.text

    return RunnableGenerator(tokens, atokens, name="pilotfish_rag_stream")


class RerankCompressor(BaseDocumentCompressor):
    """A pilotfish reranker (``rerank(query, hits, k)``) as a LangChain document compressor; keeps ``top_n``
    and sets ``metadata["relevance_score"]``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    reranker: Any
    top_n: int = 4

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Any = None
    ) -> Sequence[Document]:
        hits = [
            Hit(Doc(text=d.page_content, id=d.id or str(i), meta={"_i": i}), float(d.metadata.get("score", 0.0)), "lc")
            for i, d in enumerate(documents)
        ]
        out = []
        for h in self.reranker.rerank(query, hits, self.top_n):
            d = documents[h.doc.meta["_i"]]
            out.append(
                Document(page_content=d.page_content, metadata={**d.metadata, "relevance_score": h.score}, id=d.id)
            )
        return out
