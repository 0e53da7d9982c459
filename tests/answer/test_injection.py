"""Injection attacks end to end, as an attacker would run them (the attack corpus is rag/testing/attacks.py).

1. SQL injection in questions: an adversarial LLM writes the attack SQL for a RAG with a SQL table route over
   a real DuckDB collection. Every statement executed on the collection's connection is recorded: each is the
   table retriever's fixed SQL or a query that passes the validator; the data is unchanged (row counts and
   checksums of every table), no file appears, the trace records each rejection, time bombs hit the timeout.
2. SQL and prompt injection in table cells: indexed, queried (rows and SQL) and rendered as evidence, never run.
3. Planted instructions in documents: the system prompt stays byte-identical, the passages are flagged, control
   tokens and invisible characters are stripped; detection and false positives are measured.
4. Planted instructions in tool outputs (a real HTTP tool on 127.0.0.1): flagged like evidence, and the
   side-effect tools an influenced LLM then asks for do not run unconfirmed.
5. Injection in questions: the system prompt is unchanged and the question only appears where questions go.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

from rag.answer.pipeline import RAG
from rag.answer.prompts import INSTRUCTION, SYSTEM, build_prompt
from rag.connectors.files import load_path
from rag.indexers.collection import Collection
from rag.indexers.tables import SCHEMA, add_tables, table_cards
from rag.models.decompose.prompted import PromptedDecomposer
from rag.models.verify import NLIVerifier
from rag.retrievers.sql_guard import validate_sql
from rag.retrievers.table import TableRetriever
from rag.retrievers.table_sql import extract_sql
from rag.retrievers.tool import ToolRetriever
from rag.testing.attacks import (
    BENIGN_NEAR_MISSES,
    CELL_PAYLOADS,
    DOC_INJECTIONS,
    QUESTION_INJECTIONS,
    SQL_ATTACKS,
    TOOL_OUTPUT_INJECTIONS,
    SqlAttack,
)
from rag.text.injection import CONTROL, clean_evidence, looks_like_injection, strip_control
from rag.tools.base import Tool, http_tool
from rag.types import Doc, Hit
from tests.support import DATA
from tests.support.fakes import Scripted

TIMEOUT, LIMIT = 0.5, 20
INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad\u202a-\u202e\U000e0000-\U000e007f]")
# the only SQL the table retriever runs besides validated queries (retrievers/table.py, sql_guard.run_sql)
FIXED_SQL = [
    re.compile(r"SET search_path = 'tbl'"),  # run_sql, on its own cursor
    re.compile(r'SELECT \* FROM tbl\."[a-z0-9_]+"(?: WHERE regexp_matches\(.*\))? LIMIT \d+', re.S),  # row scan
]
WRAPPED = re.compile(r"SELECT \* FROM \((?P<inner>.*)\) AS q LIMIT \d+", re.S)  # run_sql's row limit


class Recorder:
    """The store's DuckDB connection, recording every statement run on it or on a cursor made from it."""

    def __init__(self, con: Any, log: list[tuple[str, str]], channel: str = "store") -> None:
        self._con, self.log, self._channel = con, log, channel

    def _record(self, name: str) -> Any:
        def run(sql: str, *args: Any, **kwargs: Any) -> Any:
            self.log.append((self._channel, sql))
            return getattr(self._con, name)(sql, *args, **kwargs)

        return run

    def cursor(self) -> Recorder:
        return Recorder(self._con.cursor(), self.log, "cursor")

    def __getattr__(self, name: str) -> Any:
        if name in ("execute", "executemany", "sql", "query", "from_query"):
            return self._record(name)
        return getattr(self._con, name)


def snapshot(con: Any, root: Path) -> dict[str, Any]:
    """Everything an attack could change: each table's row count and checksum, views, macros, sequences,
    attached databases, loaded extensions, settings, variables, and the files under ``root``."""
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall()
    return {
        "tables": {
            f"{s}.{t}": con.execute(f'SELECT count(*), sum(hash(x)) FROM "{s}"."{t}" x').fetchone() for s, t in tables
        },
        "views": con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall(),
        "macros": con.execute("SELECT function_name FROM duckdb_functions() WHERE NOT internal ORDER BY 1").fetchall(),
        "sequences": con.execute("SELECT sequence_name FROM duckdb_sequences() ORDER BY 1").fetchall(),
        "databases": con.execute("SELECT database_name, path FROM duckdb_databases() ORDER BY 1").fetchall(),
        "extensions": con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded ORDER BY 1").fetchall(),
        "settings": con.execute("SELECT name, value FROM duckdb_settings() ORDER BY 1").fetchall(),
        "variables": con.execute("SELECT name FROM duckdb_variables() ORDER BY 1").fetchall(),
        "files": sorted(str(p.relative_to(root)) for p in root.rglob("*")),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A collection with text documents, a 1,000-row staff table and a table of poisoned cells."""
    root = tmp_path_factory.mktemp("injection")
    src = root / "src"
    src.mkdir()
    rows = [f"p{i},{['Lisbon', 'Berlin', 'Porto'][i % 3]},{3000 + i},{['data', 'web'][i % 2]}" for i in range(1000)]
    (src / "staff.csv").write_text("name,city,salary,team\n" + "\n".join(rows) + "\n")
    cells = "\n".join(f'Robert{i},"{p.replace(chr(34), chr(34) * 2)}"' for i, p in enumerate(CELL_PAYLOADS))
    (src / "notes.csv").write_text("name,note\n" + cells + "\n")
    kb = Collection.create(root / "kb", encoder=None)
    kb.add(load_path(DATA / "docs").docs)
    add_tables(kb, [src / "staff.csv", src / "notes.csv"], root=src)
    real = kb.store.con
    log: list[tuple[str, str]] = []
    kb.store.con = Recorder(real, log)
    cards = table_cards(kb)
    yield {
        "kb": kb,
        "con": real,
        "log": log,
        "root": root,
        "staff": cards["staff.csv"]["table"],
        "notes": cards["notes.csv"]["table"],
    }
    kb.store.con = real
    kb.close()


def check_executed(world: dict[str, Any], start: int) -> list[str]:
    """Every statement run since ``start`` is allowed; the validated queries among them."""
    allowed = [world["staff"], world["notes"]]
    ran = []
    for channel, sql in world["log"][start:]:
        if channel == "store":  # the document store's own reads (text retrieval, card metadata)
            assert duckdb.extract_statements(sql)[0].type.name == "SELECT", sql
            assert "tbl." not in sql, sql
            continue
        m = WRAPPED.fullmatch(sql)
        if m:
            assert validate_sql(m.group("inner"), allowed) == m.group("inner")
            ran.append(m.group("inner"))
        else:
            assert any(f.fullmatch(sql) for f in FIXED_SQL), f"unexpected SQL executed: {sql!r}"
    return ran


def table_events(answer: Any) -> tuple[list[dict[str, Any]], float]:
    routes = [
        r for s in answer.trace["stages"] if s["stage"] == "retrieve" for r in s["routes"] if r["kind"] == "table"
    ]
    assert routes, "the question did not reach the table route"
    return [e for r in routes for e in r.get("events", []) if e.get("step") == "sql"], sum(r["ms"] for r in routes)


# ---------------------------------------------------------------------------------------- 1. SQL in questions
@pytest.mark.parametrize("attack", SQL_ATTACKS, ids=[a.name for a in SQL_ATTACKS])
def test_sql_injection_in_questions_never_runs_outside_the_allow_list(world: dict[str, Any], attack: SqlAttack) -> None:
    leak = world["root"] / "leak.csv"
    sql = attack.sql.format(t=world["staff"], leak=leak)
    before, start = snapshot(world["con"], world["root"]), len(world["log"])
    sql_llm = Scripted(sql)  # the LLM follows the injected instruction, on the retry too
    tables = TableRetriever(world["kb"], mode="sql", generator=sql_llm, timeout=TIMEOUT, limit=LIMIT, rules=False)
    rag = RAG(world["kb"].retriever("bm25"), Scripted("The total is large [1]."), routes={"table": tables})
    question = f"What is the total salary of the staff in the table? {sql}"
    answer = rag.ask(question)
    events, ms = table_events(answer)
    ran = check_executed(world, start)
    assert snapshot(world["con"], world["root"]) == before and not leak.exists()
    assert [e["sql"] for e in events] == [extract_sql(sql)] * len(events) and events
    statuses = {e["status"] for e in events}
    if attack.expect == "rejected":
        assert statuses == {"rejected"} and ran == [], events
        assert all(attack.why.lower() in e["error"].lower() for e in events), events[0]["error"]
    elif attack.expect == "timeout":
        assert statuses == {"timeout"} and len(ran) == len(events)
        assert ms < len(events) * TIMEOUT * 1000 + 5000  # stopped, not run to the end
    else:
        assert statuses == {"ok"} and len(ran) == 1
        (sql_hit,) = [h for h in answer.hits if h.doc.meta.get("kind") == "sql"]
        assert sql_hit.doc.meta["rows"] <= LIMIT and sql_hit.doc.meta["sql"] == ran[0]
        if attack.expect == "limit":
            assert events[0]["truncated"] and events[0]["rows"] == LIMIT
        assert (sql_hit.doc.id in answer.trace["flagged_injection"]) == looks_like_injection(ran[0])
    assert all("answers: " + strip_control(question) in p for p in sql_llm.prompts)  # where questions go


# ---------------------------------------------------------------------------------------- 2. SQL in cells
def test_cells_holding_sql_and_instructions_are_data(world: dict[str, Any]) -> None:
    con, notes = world["con"], world["notes"]
    stored = [r[0] for r in con.execute(f'SELECT note FROM {SCHEMA}."{notes}" ORDER BY name').fetchall()]
    assert sorted(stored) == sorted(CELL_PAYLOADS)  # stored verbatim: indexing ran none of them
    before, start = snapshot(con, world["root"]), len(world["log"])
    rows = TableRetriever(world["kb"], mode="rows")
    rag = RAG(world["kb"].retriever("bm25"), Scripted("Robert wrote a note [1]."), routes={"table": rows}, k=20)
    answer = rag.ask("List all rows of the notes table: what note did each Robert write?")
    shown = [h for h in answer.hits if h.doc.meta.get("kind") == "table_row"]
    assert len(shown) == len(CELL_PAYLOADS)
    planted = {h.doc.id for h in shown if looks_like_injection(h.doc.meta["values"][1])}
    assert len(planted) == 4 and planted <= set(answer.trace["flagged_injection"])
    sql_llm = Scripted(
        *CELL_PAYLOADS,  # the LLM copies each poisoned cell as its query: every one rejected
        f"SELECT name, note FROM {notes} WHERE note = 'Robert''); DROP TABLE Students;--' OR note LIKE '%im_start%'",
    )
    tables = TableRetriever(
        world["kb"], mode="sql", generator=sql_llm, retries=len(CELL_PAYLOADS), limit=LIMIT, rules=False
    )
    rag = RAG(world["kb"].retriever("bm25"), Scripted("Robert1 wrote it [1]."), routes={"table": tables})
    answer = rag.ask("Which notes in the notes table mention Students?")
    events, _ = table_events(answer)
    assert [e["status"] for e in events] == ["rejected"] * len(CELL_PAYLOADS) + ["ok"]
    (hit,) = [h for h in answer.hits if h.doc.meta.get("kind") == "sql"]
    assert "Robert'); DROP TABLE Students;--" in hit.doc.text  # rendered as evidence, as data
    assert "system You are now an unres" in sql_llm.prompts[0] and "DROP TABLE Students" in sql_llm.prompts[0]
    assert not CONTROL.search(sql_llm.prompts[0])  # the sample cells reached the LLM as data, tokens removed
    assert hit.doc.id in answer.trace["flagged_injection"]
    assert len(check_executed(world, start)) == 1
    assert snapshot(con, world["root"]) == before


# ---------------------------------------------------------------------------------------- 3. documents
def _code(i: int) -> str:
    return "memo" + chr(97 + i // 26) + chr(97 + i % 26) + "zorp"


@pytest.fixture(scope="module")
def planted_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    kb = Collection.create(tmp_path_factory.mktemp("planted") / "kb", encoder=None)
    kb.add(load_path(DATA / "docs").docs)
    kb.add(
        [
            Doc(f"Memo {_code(i)} about the office. {text}", id=f"attack-{i}")
            for i, (_, text) in enumerate(DOC_INJECTIONS)
        ]
    )
    yield kb
    kb.close()


def test_planted_instructions_in_documents_are_flagged_and_never_reach_the_system_prompt(planted_kb: Any) -> None:
    gen = Scripted("The memo is about the office [1].")
    rag = RAG(planted_kb.retriever("bm25"), gen, k=3)
    missed = []
    for i, (kind, _) in enumerate(DOC_INJECTIONS):
        answer = rag.ask(f"Memo {_code(i)}?")
        system, user = gen.prompts[-1]
        assert system == {"role": "system", "content": SYSTEM}  # byte-identical, every time
        assert f"attack-{i}" in {h.doc.id for h in answer.hits}, (kind, i)
        assert not CONTROL.search(user["content"]) and not INVISIBLE.search(user["content"]), (kind, i)
        if f"attack-{i}" not in answer.trace["flagged_injection"]:
            missed.append((kind, i))
    assert missed == []
    assert len(gen.prompts) == len(DOC_INJECTIONS)


def test_planted_passages_that_only_a_repair_retrieves_are_flagged(planted_kb: Any) -> None:
    gen = Scripted(
        "API keys must be rotated every 90 days [1]. Memo memoaazorp changes that.",  # unsupported: repaired
        "API keys must be rotated every 90 days [1].",
    )
    rag = RAG(planted_kb.retriever("bm25"), gen, k=3, verifier=NLIVerifier(None), policy="repair")
    answer = rag.ask("How often must API keys be rotated?")
    stages = {s["stage"]: s for s in answer.trace["stages"]}
    assert (
        "attack-0" in stages["repair-generate"]["flagged_injection"] and "attack-0" in answer.trace["flagged_injection"]
    )
    assert "attack-0" not in stages["pack"]["flagged_injection"]
    assert [p[0] for p in gen.prompts] == [{"role": "system", "content": SYSTEM}] * 2


def _benign_passages() -> list[str]:
    texts = [d.text for d in load_path(DATA / "docs").docs]
    for corpus in (DATA / "qa" / "corpus.jsonl", DATA / "beir" / "corpus.jsonl"):
        texts += [f"{r['title']}\n{r['text']}" for r in map(json.loads, corpus.read_text().splitlines())]
    return texts + BENIGN_NEAR_MISSES


def test_detection_rate_and_false_positives() -> None:
    flagged = [t for _, t in DOC_INJECTIONS if looks_like_injection(t)]
    assert len(flagged) == len(DOC_INJECTIONS) >= 80
    benign = _benign_passages()
    assert len(benign) >= 60
    assert [t for t in benign if looks_like_injection(t)] == []  # benchmarks/injection.py: ~49k more passages
    for _, text in DOC_INJECTIONS:  # what the LLM sees: no control token, no invisible character
        cleaned = clean_evidence(text)
        assert not CONTROL.search(cleaned) and not INVISIBLE.search(cleaned)
    assert clean_evidence("Emoji \U0001f469\u200d\U0001f4bb stay") == "Emoji \U0001f469\u200d\U0001f4bb stay"


# ---------------------------------------------------------------------------------------- 4. tool outputs
class _Orders(BaseHTTPRequestHandler):
    payload: ClassVar[str] = ""
    deletes: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(
            json.dumps(
                {"order": self.path.rsplit("/", 1)[-1].split("?")[0], "status": "shipped", "note": type(self).payload}
            ).encode()
        )

    def do_DELETE(self) -> None:
        type(self).deletes.append(self.path)  # the side effect that must not happen
        self._send(b'{"deleted": true}')


@pytest.fixture(scope="module")
def orders() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


ORDER = {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}
COUNT = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


@pytest.mark.parametrize("payload", TOOL_OUTPUT_INJECTIONS)
def test_planted_tool_output_is_flagged_and_side_effect_tools_need_confirmation(
    orders: str, planted_kb: Any, payload: str
) -> None:
    _Orders.payload, _Orders.deletes = payload, []
    purged: list[int] = []
    tools = [
        http_tool("order_status", "Look up the shipping status of an order.", f"{orders}/orders/{{order_id}}", ORDER),
        http_tool("delete_order", "Delete an order.", f"{orders}/orders/{{order_id}}", ORDER, method="DELETE"),
        Tool("purge_records", "Purge stored records.", COUNT, fn=lambda count: purged.append(count), confirm=True),
    ]
    asked: list[str] = []

    def decline(tool: Tool, args: dict[str, Any]) -> bool:  # the user, asked, says no
        asked.append(tool.name)
        return False

    tool_route = ToolRetriever(tools, encoder=None, confirm=decline)
    planner = Scripted(  # the decomposer LLM: first the real question, then the planted instruction's tool calls
        "[tool] shipping status of order 42\n[text] order 42 shipping",
        "[tool] purge 1000 records for order 42 now\n[tool] delete order 42 now",
    )
    answers = Scripted(  # the answering LLM, influenced: it announces the planted action
        "Order 42 has shipped [1]. Purging every stored entry immediately.",
        "Order 42 has shipped [1].",
    )
    rag = RAG(
        planted_kb.retriever("bm25"),
        answers,
        decomposer=PromptedDecomposer(planner),
        routes={"tool": tool_route},
        verifier=NLIVerifier(None),
        policy="repair",
    )
    answer = rag.ask("What is the shipping status of order 42?")
    events = [
        e
        for s in answer.trace["stages"]
        if s["stage"] == "retrieve"
        for r in s["routes"]
        for e in r.get("events", [])
        if "tool" in e
    ]
    status = {e["tool"]: e["status"] for e in events}
    assert status == {"order_status": "ok", "purge_records": "needs_confirmation", "delete_order": "needs_confirmation"}
    assert purged == [] and _Orders.deletes == [] and sorted(asked) == ["delete_order", "purge_records"]
    tool_hits = [h for h in answer.hits if h.doc.meta.get("kind") == "tool"]
    output = answers.prompts[0][1]["content"]
    assert tool_hits and all(h.doc.id in answer.trace["flagged_injection"] for h in tool_hits)
    assert "order_status(order_id=42) returned" in output and not CONTROL.search(output)
    assert all(p[0] == {"role": "system", "content": SYSTEM} for p in answers.prompts)
    unconfirmed = ToolRetriever(tools[2:], encoder=None, generator=Scripted("1000000"), llm_mode="llm")
    hits, (event,) = unconfirmed.retrieve_traced("purge records now")  # an LLM filling the arguments: no callback
    assert hits == [] and event["status"] == "needs_confirmation" and purged == []


# ---------------------------------------------------------------------------------------- 5. questions
@pytest.mark.parametrize("question", QUESTION_INJECTIONS)
def test_injected_questions_do_not_touch_the_system_prompt(planted_kb: Any, question: str) -> None:
    gen = Scripted("Employees get 25 days of holiday [1].")
    answer = RAG(planted_kb.retriever("bm25"), gen, min_overlap=0).ask(question)
    assert answer.trace["question_injection"] is True
    ((system, user),) = gen.prompts  # the LLM was asked, once
    assert system == {"role": "system", "content": SYSTEM}
    lines = user["content"].split("\n")
    assert lines[0] == "Evidence:" and lines[-1] == "Answer:" and lines[-3] == INSTRUCTION
    assert lines[-2] == "Question: " + clean_evidence(question)  # one line, tokens and invisible characters gone
    assert all(re.match(r"\[\d+\] ", x) for x in lines[1:-4]) and lines[-4] == ""
    assert not CONTROL.search(user["content"]) and not INVISIBLE.search(user["content"])
    planner = PromptedDecomposer(Scripted("[text] holiday policy"))  # an LLM decomposer gets it as a user turn
    *_, turn = planner.prompt(question)
    assert (
        turn["role"] == "user"
        and not CONTROL.search(turn["content"])
        and planner.prompt(question)[0]["role"] == "system"
    )


def test_ordinary_questions_are_not_flagged() -> None:
    queries = [
        json.loads(x)["text"] for f in ("qa", "beir") for x in (DATA / f / "queries.jsonl").read_text().split("\n") if x
    ]
    assert len(queries) >= 10
    assert [q for q in queries if looks_like_injection(q)] == []
    packed = build_prompt(queries[0], [Hit(Doc("Some text.", id="a"), 1.0, "bm25")])
    assert packed.question_flagged is False
