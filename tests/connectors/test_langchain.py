"""LangChain interop: the standard retriever suite, the pipeline as a Runnable, and adapters both ways."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from functools import cache
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.answer.pipeline import RAG
from rag.connectors.langchain import (
    ChatPilotfish,
    LangChainGenerator,
    LangChainRetriever,
    PilotfishRetriever,
    RerankCompressor,
    as_runnable,
    as_stream_runnable,
    docs_from_langchain,
)
from rag.indexers.collection import Collection
from rag.retrievers.hybrid import Hybrid
from rag.types import Doc
from tests.support.fakes import Scripted

KEYS = [
    "Rotate the API keys every 90 days.",
    "Old keys stop working 24 hours after you rotate the keys.",
    "Rotate the keys from the admin console: Settings, Keys, Rotate.",
    "Keys for the staging systems rotate every 30 days.",
    "Lost keys must be reported; the keys are then rotated at once.",
]


@cache
def keys_collection() -> Collection:
    """A real BM25 collection for the standard suite (built once; the suite's properties cannot take fixtures)."""
    kb = Collection.create(tempfile.mkdtemp(prefix="pilotfish-lc-") + "/kb", encoder=None)
    kb.add([Doc(t, id=f"k{i}", meta={"source": "keys.md"}) for i, t in enumerate(KEYS)])
    return kb


class TestPilotfishRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[PilotfishRetriever]:
        return PilotfishRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": keys_collection().retriever("bm25"), "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "how do I rotate the keys?"


def test_documents_carry_id_score_retriever_and_the_file_source():
    (doc,) = PilotfishRetriever(retriever=keys_collection().retriever("bm25"), k=1).invoke("staging keys")
    assert doc.id == "k3" and doc.metadata["id"] == "k3" and doc.metadata["retriever"] == "bm25"
    assert doc.metadata["source"] == "keys.md" and doc.metadata["score"] > 0
    lc = PilotfishRetriever(retriever=keys_collection().retriever("bm25"), filters={"source": "nope.md"})
    assert lc.invoke("keys") == []
    assert len(asyncio.run(PilotfishRetriever(retriever=keys_collection().retriever("bm25"), k=2).ainvoke("keys"))) == 2


def test_a_langchain_retriever_fuses_like_any_pilotfish_retriever():
    kb = keys_collection()
    wrapped = LangChainRetriever(PilotfishRetriever(retriever=kb.retriever("bm25"), k=5), name="lc")
    hits = wrapped.retrieve("staging keys", k=2)
    assert [h.source for h in hits] == ["lc", "lc"] and hits[0].doc.id == "k3"
    fused = Hybrid(wrapped, kb.retriever("bm25"), k=3).retrieve("staging keys")
    assert fused[0].doc.id == "k3" and len(fused) == 3


def test_langchain_documents_feed_a_collection(tmp_path):
    kb = Collection.create(tmp_path / "kb", encoder=None)
    docs = docs_from_langchain([Document(page_content="Lunch is at noon.", metadata={"source": "a.txt"}, id="a")])
    kb.add(docs + docs_from_langchain([Document(page_content="No id here.")]))
    assert len(kb) == 2 and kb.get(["a"])[0].meta["source"] == "a.txt"
    kb.close()


def test_the_pipeline_is_a_runnable_and_a_stream(docs_kb):
    rag = RAG(docs_kb.retriever("bm25"), Scripted("Keys rotate every 90 days [1]."), verifier=None)
    answer = as_runnable(rag).invoke("How often must API keys be rotated?")
    assert answer.text.startswith("Keys rotate every 90 days") and answer.hits[0].doc.id == "security.md"
    assert asyncio.run(as_runnable(rag).ainvoke({"question": "How often are keys rotated?"})).hits
    tokens = list(as_stream_runnable(rag).stream("How often must API keys be rotated?"))
    assert len(tokens) > 3 and "".join(tokens).startswith("Keys rotate every 90 days")


def test_a_langchain_chat_model_is_the_frozen_llm(docs_kb):
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="Every 90 days [1].")] * 2))
    rag = RAG(docs_kb.retriever("bm25"), LangChainGenerator(chat), verifier=None)
    assert rag.ask("How often must API keys be rotated?").text.startswith("Every 90 days")
    assert "".join(LangChainGenerator(chat).stream("q")) == "Every 90 days [1]."


def test_the_reranker_is_a_document_compressor():
    class Reverse:
        def rerank(self, query, hits, k):
            return [type(h)(h.doc, float(i), "rev") for i, h in enumerate(reversed(hits))][:k]

    docs = [Document(page_content=t, id=f"d{i}") for i, t in enumerate(["a", "b", "c"])]
    out = RerankCompressor(reranker=Reverse(), top_n=2).compress_documents(docs, "q")
    assert [d.id for d in out] == ["d2", "d1"] and out[1].metadata["relevance_score"] == 1.0


def test_import_rag_does_not_import_langchain():
    code = "import sys, rag; rag.Collection; assert 'langchain_core' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.llm
@pytest.mark.slow
def test_an_lcel_chain_runs_with_the_real_local_model():
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from rag.models.generate import LocalGenerator

    retriever = PilotfishRetriever(retriever=keys_collection().retriever("bm25"), k=2)
    prompt = ChatPromptTemplate.from_messages(
        [("human", "Context:\n{context}\n\nQuestion: {question}\nAnswer briefly.")]
    )
    chain = (
        {"context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)), "question": lambda q: q}
        | prompt
        | ChatPilotfish(generator=LocalGenerator(max_new_tokens=16, threads=1))
        | StrOutputParser()
    )
    out = chain.invoke("How often are the API keys rotated?")
    assert isinstance(out, str) and out.strip()
