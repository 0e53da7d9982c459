"""How ``rag serve`` runs uvicorn: an HTTP/1.1 protocol with a request deadline against slow clients.

uvicorn bounds the idle time between requests on a kept-alive connection (``timeout_keep_alive``), but not the
time a client takes to send a request: a connection that dribbles its headers a byte every few seconds, or
announces a body and never finishes it (slowloris), is held open for as long as the client likes, and enough of
them exhaust the server's connections and file descriptors. :class:`DeadlineProtocol` is uvicorn's own h11
protocol with one addition: every request, head and body, must arrive complete within ``request_timeout``
seconds of the connection opening or of the previous response. A client that is too slow gets
``408 Request Timeout`` (the JSON error shape) when it had started a request, and the connection is closed; an
application waiting for the rest of the body sees ``http.disconnect``. The clock stops while the application
works on a complete request (a long answer is never cut) and restarts when the response is sent.

Example:
    >>> config = server_config(app, port=8000, request_timeout=30)   # doctest: +SKIP
    >>> run(config)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from rag.apps.server.guard import error_body

log = logging.getLogger("rag.apps.server.app")

DEFAULT_REQUEST_TIMEOUT = 30.0
# Idle seconds before a kept-alive connection is closed: longer than the idle expiry of common client pools
# (httpx and Node.js 5 s, aiohttp 15 s), so the client drops an idle connection first. With uvicorn's 5 s
# against httpx's 5 s, a request sent just as the server closes fails (7 of 300 reuses after ~5 s idle).
DEFAULT_KEEP_ALIVE = 20


def _timeout_response(seconds: float) -> bytes:
    msg = f"the request was not received in full within {seconds:g} s (rag serve --request-timeout)"
    body = json.dumps(error_body(408, msg)).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with each request (head and body) due within :attr:`request_timeout` seconds.

    Use :func:`deadline_protocol` to get a subclass with another timeout (uvicorn builds the protocol itself).
    """

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._deadline is None and self.request_timeout > 0:
            self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _waiting(self) -> bool:
        """Whether the connection waits for (the rest of) a request from the client."""
        cycle = self.cycle
        return cycle is None or cycle.response_complete or cycle.more_body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # the deadline is not moved by the bytes: only a complete request stops it
        if not self._waiting():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request already received
        self._disarm()
        if not self.transport.is_closing() and self._waiting():
            self._arm()  # a fresh deadline for the next request

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            return  # answered before its body came in: on_response_complete re-arms when the answer is out
        theirs, ours = self.conn.their_state, self.conn.our_state
        started = (theirs is h11.IDLE and bool(self.conn.trailing_data[0])) or (
            theirs is h11.SEND_BODY and ours is h11.SEND_RESPONSE
        )
        if started:  # a request was begun and nothing answered it: say why the connection closes
            self.transport.write(_timeout_response(self.request_timeout))
        log.info("closed a connection from %s: no complete request within %g s", self.client, self.request_timeout)
        self.transport.close()  # connection_lost marks a waiting application's cycle disconnected


def deadline_protocol(request_timeout: float) -> type[DeadlineProtocol]:
    """A :class:`DeadlineProtocol` subclass with this timeout in seconds (0 or less: no deadline)."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_timeout": float(request_timeout)})


def server_config(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    keep_alive: int = DEFAULT_KEEP_ALIVE,
    log_level: str = "warning",
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration ``rag serve`` runs with: :class:`DeadlineProtocol`, ``keep_alive`` idle seconds
    on a kept-alive connection (at most ``request_timeout``: the deadline runs while it idles), no websockets,
    and ``options`` passed on to :class:`uvicorn.Config` (``limit_concurrency``, ``backlog`` ...)."""
    return uvicorn.Config(app, host=host, port=port, http=deadline_protocol(request_timeout), ws="none",
                          timeout_keep_alive=keep_alive, log_level=log_level, **options)  # fmt: skip


def run(config: uvicorn.Config) -> bool:
    """Serve until Ctrl-C or SIGTERM (a graceful stop, as :func:`uvicorn.run`); False when it could not start
    (the port is taken: uvicorn has said why)."""
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the signal it stopped on
        server.run()
    return bool(server.started)
