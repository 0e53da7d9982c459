"""Routing typed sub-queries to the table and tool retrievers inside ``RAG``."""

from __future__ import annotations

import pytest

from rag.answer.pipeline import RAG
from rag.errors import ConfigError, GenerationError
from rag.indexers.tables import table_cards
from rag.retrievers.table import TableRetriever
from rag.types import Doc, SubQuery
from tests.support.fakes import Scripted


def _routes(trace):
    (stage,) = [s for s in trace["stages"] if s["stage"] == "retrieve"]
    return stage["routes"]


def test_a_table_question_is_answered_from_a_sql_result(docs_kb):
    t = table_cards(docs_kb)["offices.csv"]["table"]
    writer = Scripted(f"SELECT count(*) AS offices FROM {t} WHERE opened > 2010")
    llm = Scripted("There are 2 offices in total [1].")
    rag = RAG(
        docs_kb.retriever("bm25"),
        llm,
        routes={"table": TableRetriever(docs_kb, mode="sql", generator=writer, rules=False)},
    )
    a = rag.ask("How many offices are there in total?")
    routes = _routes(a.trace)
    assert [(r["kind"], r["retriever"]) for r in routes] == [("text", "bm25"), ("table", "table")]
    sql_event = routes[1]["events"][-1]
    assert sql_event["status"] == "ok" and sql_event["sql"].startswith("SELECT count(*)")
    sql_hits = [h for h in a.hits if h.doc.meta.get("kind") == "sql"]
    assert sql_hits and "offices\n2" in sql_hits[0].doc.text
    assert "SELECT count(*)" in llm.prompts[0][-1]["content"]  # the result (with its SQL) is evidence
    assert not a.abstained


def test_a_text_question_that_finds_a_table_card_also_reads_its_rows(docs_kb):
    llm = Scripted("The Lisbon office opened in 2019 [1].")
    rag = RAG(docs_kb.retriever("bm25"), llm, routes={"table": TableRetriever(docs_kb)})
    a = rag.ask("When did the Lisbon office open?")
    kinds = [r["kind"] for r in _routes(a.trace)]
    assert kinds == ["text", "table"]
    rows = [h for h in a.hits if h.doc.meta.get("kind") == "table_row"]
    assert rows and rows[0].doc.id == "offices.csv#row2" and "opened: 2019" in rows[0].doc.text


def test_a_text_question_about_other_things_does_not_read_tables(docs_kb):
    rag = RAG(docs_kb.retriever("bm25"), Scripted("Every 90 days [1]."), routes={"table": TableRetriever(docs_kb)})
    a = rag.ask("How often must API keys be rotated?")
    assert [r["kind"] for r in _routes(a.trace)] == ["text"]
    assert not any(h.doc.meta.get("kind") == "table_row" for h in a.hits)


def test_a_failing_route_is_recorded_and_the_answer_continues(docs_kb):
    class Broken:
        name = "broken"

        def retrieve(self, query, k=10, filters=None):
            raise GenerationError("the SQL writer is down")

    rag = RAG(docs_kb.retriever("bm25"), Scripted("Keys rotate every 90 days [1]."), routes={"table": Broken()})
    a = rag.ask("How many API keys must be rotated in total?")
    (table,) = [r for r in _routes(a.trace) if r["kind"] == "table"]
    assert table["events"] == [{"status": "error", "error": "the SQL writer is down"}] and table["output"] == []
    assert a.hits and not a.abstained


def test_sub_queries_go_to_the_retriever_of_their_kind(docs_kb):
    class Dec:
        def decompose(self, q):
            return [SubQuery("rotate API keys", "text"), SubQuery("offices opened list all", "table")]

    rag = RAG(docs_kb.retriever("bm25"), Scripted("x"), decomposer=Dec(), routes={"table": TableRetriever(docs_kb)})
    hits = rag.retrieve("keys and offices")
    assert any(h.doc.meta.get("kind") == "table_row" for h in hits)


def test_routes_are_checked():
    with pytest.raises(ConfigError, match="unknown route 'sql'"):
        RAG(object(), Scripted("x"), routes={"sql": object()})
    with pytest.raises(ConfigError, match="needs a Retriever"):
        RAG(object(), Scripted("x"), routes={"table": object()})


def test_a_tool_question_calls_the_tool_and_cites_its_result(docs_kb):
    from rag.retrievers.tool import ToolRetriever
    from rag.tools.builtin import BUILTIN_TOOLS

    llm = Scripted("17 times 23 is 391 [1].")
    rag = RAG(docs_kb.retriever("bm25"), llm, routes={"tool": ToolRetriever(BUILTIN_TOOLS, encoder=None)})
    a = rag.ask("What is 17 * 23?")
    assert [r["kind"] for r in _routes(a.trace)] == ["text", "tool"]
    (hit,) = [h for h in a.hits if h.doc.meta.get("kind") == "tool"]
    assert hit.doc.meta["tool"] == "calculator" and "391" in hit.doc.text
    assert "391" in llm.prompts[0][-1]["content"] and not a.abstained


def test_a_hanging_tool_times_out_in_the_trace_and_the_answer_continues(docs_kb):
    import threading

    from rag.retrievers.tool import ToolRetriever
    from rag.tools.base import tool

    release = threading.Event()

    @tool(timeout=0.2)
    def multiply(expression: str) -> float:
        """Multiply numbers: what is 12 times 7, products of numbers.

        Args:
            expression: the product to compute, e.g. 12 * 7.
        """
        release.wait(5)
        return 0.0

    rag = RAG(
        docs_kb.retriever("bm25"),
        Scripted("Keys rotate every 90 days [1]."),
        routes={"tool": ToolRetriever([multiply], encoder=None)},
    )
    a = rag.ask("How often are API keys rotated, and what is 12 * 7?")
    release.set()
    (tool_route,) = [r for r in _routes(a.trace) if r["kind"] == "tool"]
    assert [e["status"] for e in tool_route["events"]] == ["timeout"] and tool_route["output"] == []
    assert a.hits and not a.abstained


def test_from_collection_routes_tables_when_the_collection_has_them(docs_kb, tmp_path):
    from rag.indexers.collection import Collection
    from rag.retrievers.tool import ToolRetriever
    from rag.tools.builtin import BUILTIN_TOOLS

    rag = RAG.from_collection(docs_kb, llm=Scripted("x"), mode="bm25", verifier=None, tools=BUILTIN_TOOLS, tables="sql")
    assert isinstance(rag.routes["table"], TableRetriever) and rag.routes["table"].mode == "sql"
    assert isinstance(rag.routes["tool"], ToolRetriever)
    assert set(RAG.from_collection(docs_kb, llm=Scripted("x"), mode="bm25", verifier=None, tables=None).routes) == set()
    plain = Collection.create(tmp_path / "plain", encoder=None)
    plain.add([Doc("No tables here.", id="d")])
    assert RAG.from_collection(plain, llm=Scripted("x"), mode="bm25", verifier=None).routes == {}
    plain.close()
