"""The server's front door: bearer-token auth, request size limits, and the JSON error shape.

:class:`Guard` is plain ASGI middleware, so it holds for every route (the OpenAI-compatible ones too) and costs
nothing per request beyond a header lookup. A body is refused with 413 before it is read when its
``Content-Length`` is too large, and while it is read when a chunked body grows past the limit.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rag.errors import (
    CollectionLockedError,
    ConfigError,
    DocumentNotFoundError,
    GenerationError,
    QueryError,
    RagError,
    SourceError,
    UnsafeQueryError,
)

log = logging.getLogger("rag.apps.server")
OPEN_PATHS = frozenset({"/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_STATUS: list[tuple[type[Exception], int]] = [
    (DocumentNotFoundError, 404),
    (CollectionLockedError, 409),
    (GenerationError, 502),
    ((QueryError, ConfigError, UnsafeQueryError, SourceError), 400),  # type: ignore[list-item]
]

_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          408: "request_timeout", 409: "conflict", 413: "request_too_large", 422: "invalid_request"}  # fmt: skip


def status_of(exc: Exception) -> int:
    """The HTTP status for a pilotfish error: bad input 400, missing document 404, locked 409, LLM down 502."""
    for kinds, status in _STATUS:
        if isinstance(exc, kinds):
            return status
    return 500


def error_body(status: int, message: str, type_: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "code"}}`` — the OpenAI error shape, so chat clients show the message."""
    kind = type_ or _KINDS.get(status, "error")
    return {"error": {"message": message, "type": kind, "code": status}}


async def send_error(send: Any, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error_body(status, message)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: ``Authorization: Bearer <token>`` when ``token`` is set (except on :data:`OPEN_PATHS`
    and CORS preflights), and bodies of at most ``max_body`` bytes."""

    def __init__(self, app: Any, token: str | None = None, max_body: int = 1 << 20) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token and scope["method"] != "OPTIONS" and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token.encode()):
                what = "a wrong" if given else "no"
                msg = f"{what} bearer token; send the header 'Authorization: Bearer <token>' (rag serve --token)"
                await send_error(send, 401, msg, [(b"www-authenticate", b"Bearer")])
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await send_error(send, 413, self._too_large(length.decode("latin-1")))
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413, self._too_large(f"more than {received}"))
            return message

        await self.app(scope, limited, send)

    def _too_large(self, size: str) -> str:
        return f"request body of {size} bytes is over the limit of {self.max_body} bytes (rag serve --max-body)"


def add_error_handlers(app: FastAPI) -> None:
    """Every error as :func:`error_body`: pilotfish errors by :func:`status_of`, HTTP errors as raised, invalid
    requests as 400 (not JSON), 415 (not sent as JSON) or 422, and anything else (a bug) as 500."""

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        return JSONResponse(error_body(status_of(exc), str(exc), type(exc).__name__), status_of(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # a bug: still a JSON body
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}: {exc}"), 500)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        ctype = request.headers.get("content-type", "")
        if ctype and "json" not in ctype and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
            msg = f"the request body must be JSON with Content-Type: application/json (got {ctype!r})"
            return JSONResponse(error_body(415, msg, "unsupported_media_type"), 415)
        if any(e.get("type") == "json_invalid" for e in errors):
            msg = "the request body is not valid JSON; send a JSON object with Content-Type: application/json"
            return JSONResponse(error_body(400, msg, "invalid_json"), 400)
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors]
        return JSONResponse(error_body(422, "; ".join(parts), "invalid_request"), 422)
