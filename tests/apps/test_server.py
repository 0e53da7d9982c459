"""``rag serve``: the real FastAPI app under uvicorn on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx

from rag.apps.server.app import create_app
from rag.connectors.files import load_path
from rag.indexers.collection import Collection
from rag.indexers.tables import add_tables
from rag.testing.live import live_server
from tests.support import DATA
from tests.support.fakes import Scripted, Slow

ANSWER = "API keys must be rotated every 90 days [1]. The moon is made of green cheese [1]."
JSON = {"Content-Type": "application/json"}


def make_kb(path: Path) -> Collection:
    kb = Collection.create(path, encoder=None)
    report = load_path(DATA / "docs")
    kb.add(report.docs)
    add_tables(kb, report.tables, root=DATA / "docs")
    return kb


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    kb = make_kb(tmp_path_factory.mktemp("serve") / "kb")
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def server(kb: Collection) -> Iterator[str]:
    app = create_app({"kb": kb}, llm=Scripted(ANSWER), mode="bm25", token="s3cret", max_body=4096,
                     cors_origins=["http://app.example"])  # fmt: skip
    with live_server(app) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers={"Authorization": "Bearer s3cret"}, timeout=30) as c:
        yield c


def events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_health_and_page_need_no_token(server: str) -> None:
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["collections"]["kb"]["documents"] >= 6
    assert httpx.get(f"{server}/openapi.json").json()["paths"]["/ask"]


def test_search_is_rag_search_json(client: httpx.Client, kb: Collection) -> None:
    r = client.post("/search", json={"query": "rotate API keys", "k": 3, "mode": "bm25"})
    assert r.status_code == 200
    body = r.json()
    expected = [h.to_dict() for h in kb.retriever("bm25").retrieve("rotate API keys", k=3)]
    assert body["query"] == "rotate API keys" and body["hits"] == json.loads(json.dumps(expected))
    assert body["hits"][0]["id"] == "security.md" and "took_ms" in body
    r = client.post("/search", json={"query": "holiday", "filters": {"team": "hr"}, "mode": "bm25"})
    assert {h["meta"]["team"] for h in r.json()["hits"]} == {"hr"}


def test_ask_json_has_claims_with_citations_and_verdicts(client: httpx.Client) -> None:
    answer = client.post("/ask", json={"question": "How often must API keys be rotated?"}).json()
    verdicts = {c["text"]: c["verdict"] for c in answer["claims"]}
    assert verdicts["API keys must be rotated every 90 days."] == "supported"
    assert verdicts["The moon is made of green cheese."] == "unsupported"
    assert answer["claims"][0]["citations"] == ["security.md"] and not answer["abstained"]


def test_ask_streams_hits_tokens_then_the_answer(client: httpx.Client) -> None:
    r = client.post("/ask", json={"question": "How often must API keys be rotated?", "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    assert evs[0][0] == "hits" and evs[0][1]["hits"][0]["id"] == "security.md"
    tokens = [d["text"] for name, d in evs if name == "token"]
    assert len(tokens) > 5 and "".join(tokens) == ANSWER
    assert evs[-1][0] == "answer" and {c["verdict"] for c in evs[-1][1]["claims"]} == {"supported", "unsupported"}


def test_feedback_on_an_answer_and_its_citations_is_stored_in_the_collection(client: httpx.Client, kb) -> None:
    from rag.models import feedback

    question = "How often must API keys be rotated?"
    answer = client.post("/ask", json={"question": question}).json()
    streamed = events(client.post("/ask", json={"question": question, "stream": True}).text)[-1][1]
    assert len(answer["answer_id"]) == 32 and streamed["answer_id"] not in ("", answer["answer_id"])
    before = len(feedback.read(kb.model_root))
    for body in (
        {"question": question, "answer_id": answer["answer_id"], "doc_id": "security.md", "useful": True},
        {"question": question, "answer_id": answer["answer_id"], "doc_id": "cafeteria.txt", "useful": False},
        {"question": question, "answer_id": answer["answer_id"], "useful": True},  # the answer as a whole
    ):
        r = client.post("/feedback", json=body)
        assert r.status_code == 200 and r.json()["stored"]["useful"] is body["useful"], r.text
    assert r.json()["judgements"] == before + 3
    stored = feedback.read(kb.model_root)[-3:]
    assert [e["doc_id"] for e in stored] == ["security.md", "cafeteria.txt", None]
    questions, labels = feedback.labels(kb.model_root)
    (qid,) = [q for q, text in questions.items() if text == question]
    assert labels[qid] == {"security.md": 1, "cafeteria.txt": 0}  # the whole-answer judgement labels no document
    unknown = client.post("/feedback", json={"question": question, "doc_id": "nope.md", "useful": True})
    assert unknown.status_code == 404 and "nope.md" in unknown.json()["error"]["message"]
    assert client.post("/feedback", json={"question": question}).status_code == 422  # useful is required
    assert len(feedback.read(kb.model_root)) == before + 3  # refused judgements store nothing


def test_off_topic_question_abstains(client: httpx.Client) -> None:
    answer = client.post("/ask", json={"question": "Who won the 1954 football world cup?"}).json()
    assert answer["abstained"] and answer["trace"]["abstain_reason"]


def test_documents_add_get_update_delete(client: httpx.Client) -> None:
    text = "Visitors sign in at the front desk with photo ID."
    doc = {"id": "notes/visitors.md", "text": text, "meta": {"team": "it"}}
    r = client.post("/documents", json={"documents": [doc]})
    assert r.status_code == 200 and r.json()["added"] == 1
    hits = client.post("/search", json={"query": "visitors front desk", "k": 1, "mode": "bm25"}).json()["hits"]
    assert hits[0]["id"] == "notes/visitors.md"
    got = client.get("/documents/notes/visitors.md").json()
    assert got["chunks"][0]["text"] == doc["text"] and got["chunks"][0]["meta"]["team"] == "it"
    assert "notes/visitors.md" in client.get("/documents", params={"limit": 10000}).json()["ids"]
    r = client.put("/documents", json={"documents": [{**doc, "text": "Visitors sign in at reception."}]})
    assert r.json()["updated"] == 1
    assert client.get("/documents/notes/visitors.md").json()["chunks"][0]["text"] == "Visitors sign in at reception."
    r = client.put("/documents", json={"documents": [{"id": "nope", "text": "x"}]})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    assert client.delete("/documents/notes/visitors.md").json()["deleted"] == 1
    assert client.get("/documents/notes/visitors.md").status_code == 404
    assert client.delete("/documents/notes/visitors.md").status_code == 404


@pytest.mark.parametrize(
    "path", ["/documents/..%2F..%2F..%2Fetc%2Fpasswd", "/documents/%2Fetc%2Fpasswd", "/documents/..%2Fmanifest.json"]
)
def test_path_parameters_never_reach_the_filesystem(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert "root:" not in r.text and '"generation"' not in r.text


def test_auth(server: str) -> None:
    r = httpx.post(f"{server}/search", json={"query": "keys"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/search", json={"query": "keys"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "wrong" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "keys?"}]})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b'{"query": "keys",', JSON, 400, "not valid JSON"),
        (b'{"query": "keys"}', {"Content-Type": "text/plain"}, 415, "application/json"),
        (b'{"quer": "keys"}', JSON, 422, "body.query"),
        (b'{"query": "keys", "k": 0}', JSON, 422, "body.k"),
        (b'{"query": "   "}', JSON, 400, "empty"),
        (b'{"query": "keys", "collection": "other"}', JSON, 404, "unknown collection 'other'"),
        (b'{"query": "keys", "filters": {"nofield": 1}}', JSON, 400, "nofield"),
        (b"[1, 2]", JSON, 422, "body"),
    ],
)
def test_bad_requests_get_4xx_json(client: httpx.Client, body: bytes, headers: dict, status: int, says: str) -> None:
    r = client.post("/search", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"] and r.json()["error"]["code"] == status


def test_oversize_bodies_are_refused(client: httpx.Client) -> None:
    big = {"documents": [{"text": "x" * 5000}]}
    r = client.post("/documents", json=big)
    assert r.status_code == 413 and "4096" in r.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield json.dumps(big).encode()

    r = client.post("/documents", content=chunked(), headers=JSON)
    assert r.status_code == 413
    assert client.get("/health").json()["status"] == "ok"


def test_cors(server: str) -> None:
    pre = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    r = httpx.options(f"{server}/ask", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
    r = httpx.options(f"{server}/ask", headers={**pre, "Origin": "http://evil.example"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    r = httpx.post(f"{server}/search", json={"query": "keys"}, headers={"Origin": "http://app.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"


def test_openai_compatible_chat(server: str, client: httpx.Client) -> None:
    from rag.models.llm_openai import OpenAIGenerator

    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["kb"]
    chat = OpenAIGenerator("kb", base_url=f"{server}/v1", api_key="s3cret")  # an existing chat client
    text = chat.generate([{"role": "user", "content": "How often must API keys be rotated?"}])
    assert text.startswith(ANSWER) and "Sources:\n[1] security.md" in text
    assert "Not supported by the sources: The moon" in text
    streamed = "".join(chat.stream([{"role": "user", "content": "How often must API keys be rotated?"}]))
    assert streamed == text
    turns = [("user", "Hi"), ("assistant", "?"), ("user", "How often must API keys be rotated?")]
    messages = [{"role": role, "content": text} for role, text in turns]
    r = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": messages})
    body = r.json()
    assert body["object"] == "chat.completion" and body["pilotfish"]["claims"] and body["usage"]["total_tokens"] > 0
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "be brief"}]})
    assert r.status_code == 400 and "user message" in r.json()["error"]["message"]


def test_client_disconnect_mid_stream_stops_generation(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb")
    slow = Slow(" ".join(["API keys must be rotated every 90 days [1]."] * 20), delay=0.02)
    with live_server(create_app(kb, llm=slow, mode="bm25")) as url:
        q = {"question": "How often must API keys be rotated?", "stream": True}
        with httpx.Client(base_url=url, timeout=30) as c, c.stream("POST", "/ask", json=q) as r:
            for line in r.iter_lines():
                if line.startswith("event: token"):
                    break  # hang up after the first token
        assert slow.closed.wait(10), "the LLM stream was not closed after the client left"
        assert len(slow.prompts) == 1
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/health").status_code == 200
            evs = events(c.post("/ask", json=q).text)
            assert evs[-1][0] == "answer"
    kb.close()


def test_read_only_server_refuses_writes(kb: Collection, tmp_path: Path) -> None:
    path = tmp_path / "ro"
    make_kb(path).close()
    with live_server(create_app({"ro": path}, llm=Scripted(ANSWER), mode="bm25", read_only=True)) as url:
        r = httpx.post(f"{url}/documents", json={"documents": [{"text": "new"}]})
        assert r.status_code == 403 and "read-only" in r.json()["error"]["message"]
        assert httpx.post(f"{url}/search", json={"query": "keys", "mode": "bm25"}).status_code == 200
        fb = httpx.post(f"{url}/feedback", json={"question": "keys?", "doc_id": "security.md", "useful": True})
        assert fb.status_code == 200  # feedback changes no document: a read-only server takes it


def test_searches_are_served_and_consistent_while_documents_are_added(tmp_path: Path) -> None:
    """Each batch shares a marker word; a search for it sees none or all of the batch, never a part."""
    kb = make_kb(tmp_path / "kb")
    batches, size = 4, 400
    seen: list[tuple[int, int]] = []
    errors: list[str] = []
    writing = threading.Event()
    done = threading.Event()
    with live_server(create_app(kb, llm=Scripted(ANSWER), mode="bm25")) as url:

        def reader() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                while not done.is_set():
                    for b in range(batches):
                        r = c.post("/search", json={"query": f"marker{b}", "k": 1000, "mode": "bm25"})
                        if r.status_code != 200:
                            errors.append(r.text)
                        else:
                            seen.append((len(r.json()["hits"]), int(writing.is_set())))

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=url, timeout=120) as c:
            for b in range(batches):
                docs = [{"id": f"b{b}-{i}", "text": f"marker{b} note {i} about parking and lunch"} for i in range(size)]
                writing.set()
                r = c.post("/documents", json={"documents": docs})
                writing.clear()
                assert r.status_code == 200, r.text
        done.set()
        for t in threads:
            t.join()
    kb.close()
    assert not errors
    assert {n for n, _ in seen} <= {0, size}, "a search saw part of a write"
    assert sum(w for _, w in seen) > 0, "no search was answered while a write was in flight"


@pytest.mark.slow
@pytest.mark.llm
def test_rag_serve_command_end_to_end(tmp_path: Path) -> None:
    """The real `rag serve` process with the shipped local LLM: ask over HTTP, then stop it cleanly."""
    import os
    import signal
    import subprocess
    import sys

    make_kb(tmp_path / "kb").close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "rag", "serve", "--collection", str(tmp_path / "kb"), "--port", str(port),
           "--mode", "bm25", "--max-new-tokens", "48", "--threads", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read() if proc.stdout else "rag serve did not start") from None
                time.sleep(0.2)
        r = httpx.post(f"{url}/ask", json={"question": "How often must API keys be rotated?"}, timeout=120)
        answer = r.json()
        assert r.status_code == 200 and answer["hits"][0]["id"] == "security.md"
        assert answer["abstained"] or answer["claims"]
        assert "text/html" in httpx.get(url).headers["content-type"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"serving kb at http://127.0.0.1:{port}" in out


def test_an_unexpected_error_is_a_json_500_and_the_server_goes_on(tmp_path: Path) -> None:
    class Broken(Scripted):
        def generate(self, prompt: Any, max_new_tokens: int | None = None) -> str:
            raise ZeroDivisionError("planted bug")

    kb = make_kb(tmp_path / "kb")
    with live_server(create_app(kb, llm=Broken(), mode="bm25")) as url:
        r = httpx.post(f"{url}/ask", json={"question": "How often must API keys be rotated?"})
        assert r.status_code == 500 and "ZeroDivisionError: planted bug" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200
    kb.close()
