"""Run a real uvicorn server on 127.0.0.1 (a free port) in a background thread, or the real ``rag serve`` command
in a subprocess, for tests that talk HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def live_server(app: Any, **options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn until the block ends; yields the base URL (``http://127.0.0.1:PORT``).
    ``options`` go to :func:`rag.apps.server.http.server_config` (``request_timeout`` ...)."""
    import uvicorn

    from rag.apps.server.http import server_config

    server = uvicorn.Server(server_config(app, "127.0.0.1", 0, lifespan="off", **options))  # what `rag serve` runs
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class ServeProcess:
    url: str
    proc: subprocess.Popen[str]
    output: str = ""  # what it printed, once stopped


@contextlib.contextmanager
def server_process(cmd: list[str], port: int, start_timeout: float = 90, **popen: Any) -> Iterator[ServeProcess]:
    """Run ``cmd`` (a server that will listen on 127.0.0.1:``port``) in its own process; yield it once /health
    answers, and stop it with Ctrl-C (SIGINT) at the end of the block (its output is then in ``output``)."""
    import httpx

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    served, deadline = ServeProcess(f"http://127.0.0.1:{port}", proc), time.monotonic() + start_timeout
    try:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{served.url}/health", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        served.output = out


@contextlib.contextmanager
def rag_serve(*args: str, start_timeout: float = 90) -> Iterator[ServeProcess]:
    """``rag serve ARGS --port P`` on a free port in its own process (see :func:`server_process`)."""
    port = free_port()
    cmd = [sys.executable, "-m", "rag", "serve", *args, "--port", str(port)]
    with server_process(cmd, port, start_timeout, env={**os.environ}) as served:
        yield served
