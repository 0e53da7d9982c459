"""``rag serve`` against hostile and slow clients: the real command in its own process on 127.0.0.1, raw sockets.

Slow clients (slowloris: a request head dribbled a byte at a time; a body slower than announced) are cut off with
408 after ``--request-timeout``, while other clients are served; a burst of bad requests leaves no open files or
threads behind. Auth, oversize bodies, path traversal and CORS answers are checked in tests/test_server.py.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
import httpx

from rag.apps.server.app import create_app
from rag.connectors.files import load_path
from rag.indexers.collection import Collection
from rag.testing.live import ServeProcess, live_server, rag_serve
from tests.support import DATA
from tests.support.fakes import Slow

TIMEOUT = 2.0  # the server's --request-timeout in these tests
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
AUTH_LINE = f"Authorization: Bearer {TOKEN}\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    path = tmp_path_factory.mktemp("secure") / "kb"
    kb = Collection.create(path, encoder=None)
    kb.add(load_path(DATA / "docs").docs)
    kb.close()
    args = ["--collection", str(path), "--mode", "bm25", "--token", TOKEN, "--max-body", "4096", "--request-timeout",
            str(TIMEOUT), "--llm", "openai:none", "--base-url", "http://127.0.0.1:9/v1"]  # fmt: skip
    with rag_serve(*args) as served:
        yield served
    assert served.proc.returncode == 0, served.output
    assert "Traceback" not in served.output, served.output


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(s: socket.socket, limit: float = TIMEOUT + 8) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (monotonic)."""
    data, deadline = b"", time.monotonic() + limit
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic()
        data += chunk
    raise AssertionError(f"the server kept the connection open for {limit} s; got {data[:200]!r}")


def read_response(s: socket.socket) -> bytes:
    """One response with a Content-Length, read off a kept-alive connection."""
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(x.split(b":")[1] for x in head.split(b"\r\n") if x.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def status_and_json(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def proc_counts(pid: int) -> tuple[int, int]:
    """(open file descriptors, threads) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return len(list(Path(f"/proc/{pid}/fd").iterdir())), threads


def slowloris(url: str, n: int, stop: float) -> dict[socket.socket, list]:
    """Open ``n`` connections that send a request head one byte every 0.2 s and never finish it; returns, per
    socket, [bytes received, time closed by the server (or None)] once all are closed or at ``stop``."""
    socks = {connect(url): [b"", None] for _ in range(n)}
    for s in socks:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        s.setblocking(False)
    drip = time.monotonic()
    while time.monotonic() < stop and any(v[1] is None for v in socks.values()):
        live = [s for s, v in socks.items() if v[1] is None]
        if time.monotonic() >= drip:
            drip += 0.2
            for s in live:
                try:
                    s.send(b"X")  # "XXXX..." : a header name that never ends
                except OSError:
                    pass  # closed by the server: the read below sees it
        for s in select.select(live, [], [], 0.05)[0]:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                chunk = b""
            if chunk:
                socks[s][0] += chunk
            else:
                socks[s][1] = time.monotonic()
    return socks


def test_slowloris_connections_are_closed_with_408_while_others_are_served(server: ServeProcess) -> None:
    opened = time.monotonic()
    served: list[tuple[int, float]] = []

    def normal_client() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
            for _ in range(3):
                r = c.post("/search", json={"query": "rotate API keys", "k": 3})
                served.append((r.status_code, time.monotonic()))
            served.append((c.get("/health").status_code, time.monotonic()))

    client = threading.Thread(target=normal_client)
    timer = threading.Timer(0.3, client.start)  # once the 50 slow connections are open and dribbling
    timer.start()
    socks = slowloris(server.url, 50, stop=opened + TIMEOUT + 10)
    client.join(30)
    for s in socks:
        s.close()
    closed = [v[1] for v in socks.values()]
    assert all(t is not None for t in closed), f"{closed.count(None)} of 50 slow connections are still open"
    assert all(v[0].startswith(b"HTTP/1.1 408 ") for v in socks.values()), {v[0][:40] for v in socks.values()}
    code, body = status_and_json(next(iter(socks.values()))[0])
    assert (
        code == 408 and body["error"]["type"] == "request_timeout" and "--request-timeout" in body["error"]["message"]
    )
    assert min(closed) - opened >= TIMEOUT * 0.8, "closed before the timeout: not by the deadline"
    assert [code for code, _ in served] == [200, 200, 200, 200]
    assert max(t for _, t in served) < min(closed), "the normal client was only served after the slow ones left"


@pytest.mark.parametrize("dribble", [False, True], ids=["stalled", "dribbled"])
def test_a_body_slower_than_announced_gets_408(server: ServeProcess, dribble: bool) -> None:
    s = connect(server.url)
    t0 = time.monotonic()
    head = (f"POST /search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")  # fmt: skip
    s.sendall(head.encode() + b'{"query": ')
    if dribble:  # bytes keep coming, a few a second: the deadline is not moved by them
        while time.monotonic() - t0 < TIMEOUT + 3:
            try:
                s.sendall(b" ")
            except OSError:
                break
            time.sleep(0.25)
    data, closed = read_all(s)
    s.close()
    code, body = status_and_json(data)
    assert code == 408 and body["error"]["code"] == 408, data
    assert TIMEOUT * 0.8 <= closed - t0 < TIMEOUT + 5


def test_the_deadline_restarts_per_request_and_spares_slow_answers(server: ServeProcess, tmp_path: Path) -> None:
    """A kept-alive connection gets a fresh deadline after each response; a request sent in pieces within the
    deadline is answered."""
    s = connect(server.url)
    req = f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    for _ in range(2):  # 2 requests over more than TIMEOUT seconds on one connection
        time.sleep(TIMEOUT * 0.4)
        s.sendall(req[:10])
        time.sleep(TIMEOUT * 0.3)
        s.sendall(req[10:])
        assert read_response(s).startswith(b"HTTP/1.1 200 ")
    s.close()

    kb = Collection.create(tmp_path / "kb", encoder=None)
    kb.add(load_path(DATA / "docs").docs)
    slow = Slow(" ".join(["API keys must be rotated every 90 days [1]."] * 5), delay=0.03)  # 1.35 s of tokens
    with live_server(create_app(kb, llm=slow, mode="bm25"), request_timeout=0.3) as url:
        q = {"question": "How often must API keys be rotated?", "stream": True}
        r = httpx.post(f"{url}/ask", json=q, timeout=30)
        assert r.status_code == 200 and "event: answer" in r.text, r.text[-300:]
    kb.close()


def test_idle_connections_outlast_client_pools() -> None:
    """The server closes an idle kept-alive connection after client pools drop theirs (httpx: 5 s), or a request
    sent as the server closes fails (uvicorn's own 5 s against httpx: 7 of 300 reuses after ~5 s idle)."""
    from rag.apps.cli.main import build_parser
    from rag.apps.server.http import server_config

    default = build_parser().parse_args(["serve", "--collection", "kb"]).keep_alive
    assert server_config(None, keep_alive=default).timeout_keep_alive == default
    assert default > httpx.Limits(max_connections=1).keepalive_expiry


def aborted(url: str, payload: bytes) -> None:
    """Send part of a request, then reset the connection (SO_LINGER 0: an RST, not a FIN)."""
    s = connect(url)
    s.sendall(payload)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def burst(url: str) -> list[int]:
    """Bad requests of every kind at once: slowloris, oversize, traversal, bad or no token, broken JSON, and
    connections reset mid-head, mid-body and before reading the answer. Returns the statuses answered."""

    def hold() -> None:
        for s in slowloris(url, 20, time.monotonic() + TIMEOUT + 8):
            s.close()

    slow = threading.Thread(target=hold)
    slow.start()
    statuses: list[int] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(10):
            statuses.append(c.post("/documents", content=b"x" * 5000, headers={**AUTH, **JSON}).status_code)
            statuses.append(c.get("/documents/..%2F..%2F..%2Fetc%2Fpasswd", headers=AUTH).status_code)
            statuses.append(c.get(f"/documents/%2Fetc%2Fpasswd{i}", headers=AUTH).status_code)
            statuses.append(
                c.post("/search", json={"query": "keys"}, headers={"Authorization": "Bearer no"}).status_code
            )
            statuses.append(c.post("/search", json={"query": "keys"}).status_code)
            statuses.append(c.post("/search", content=b'{"query": ', headers={**AUTH, **JSON}).status_code)
    body = (f"POST /search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")  # fmt: skip
    for i in range(10):
        aborted(url, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Le")  # mid-head
        aborted(url, body.encode())  # mid-body, the application waiting for the rest
        aborted(url, f"GET /documents/security.md?{i} HTTP/1.1\r\nHost: x\r\n{AUTH_LINE}\r\n".encode())  # answer unread
    slow.join()
    return statuses


def settled(pid: int, fds0: int) -> tuple[int, int]:
    """(open files, threads) once the open files are back to ``fds0`` (at most 10 s later)."""
    deadline = time.monotonic() + 10
    while (counts := proc_counts(pid))[0] > fds0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return counts


def test_bad_requests_leave_no_open_files_or_threads(server: ServeProcess) -> None:
    """Open files return to what they were; threads grow at most by the worker threads one burst keeps busy at
    once (the 10 answers nobody reads run together) however many bursts come: a pool, not a leak (which would
    add threads per bad request: 110 of them in each burst)."""
    pid = server.proc.pid
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:  # warm: a worker thread, the kernels
        for _ in range(3):
            assert c.post("/search", json={"query": "keys"}).status_code == 200
            assert c.get("/documents/security.md").status_code == 200
    time.sleep(0.5)
    fds0, threads0 = proc_counts(pid)
    assert sorted(set(burst(server.url))) == [400, 401, 404, 413]
    fds1, threads1 = settled(pid, fds0)
    assert sorted(set(burst(server.url))) == [400, 401, 404, 413]
    fds2, threads2 = settled(pid, fds0)
    print(f"open files {fds0} -> {fds1} -> {fds2}; threads {threads0} -> {threads1} -> {threads2}")
    assert fds1 <= fds0 and fds2 <= fds0, f"open files: {fds0} before, {fds1} and {fds2} after two bursts"
    assert max(threads1, threads2) <= threads0 + 10 + 2, f"threads: {threads0} -> {threads1} -> {threads2}"
    r = httpx.post(f"{server.url}/search", json={"query": "rotate API keys"}, headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.json()["hits"][0]["id"] == "security.md"
