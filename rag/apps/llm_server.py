"""Serve any generator (by default the local SmolLM2) as an OpenAI-compatible chat-completions endpoint.

``POST /v1/chat/completions`` (plain JSON, or server-sent events with ``"stream": true``), ``GET /v1/models``
and ``GET /health``, on the standard library's threading HTTP server. Requests are answered one at a time per
model (the local model is not thread-safe), other requests wait. Tests use it as a real LLM server on
127.0.0.1; users can point any OpenAI client (or another pilotfish) at it with ``rag llm-serve``.

Example:
    >>> server = LLMServer(LocalGenerator(), port=0).start()      # doctest: +SKIP
    >>> OpenAIGenerator("local", base_url=server.url).generate("Hi")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rag.answer.prompts import approx_tokens

MAX_BODY = 1 << 20


class LLMServer:
    """An OpenAI-compatible HTTP server in a background thread.

    Args:
        generator: any :class:`~rag.protocols.Generator` (``generate(prompt, max_new_tokens)`` and ``stream``).
        host: bind address (127.0.0.1 by default). port: 0 picks a free port.
        model_name: the name reported by ``/v1/models`` and in completions.
    """

    def __init__(self, generator: Any, *, host: str = "127.0.0.1", port: int = 0, model_name: str = "") -> None:
        self.generator = generator
        self.model_name = model_name or str(getattr(generator, "name", "pilotfish"))
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.llm = self  # type: ignore[attr-defined]  # the handler's way back to this server
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> LLMServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _completion(cid: str, model: str, messages: list[dict[str, str]], text: str) -> dict[str, Any]:
    """A ``chat.completion`` object for ``text``, with token counts estimated from the text."""
    prompt_tokens = sum(approx_tokens(m["content"]) for m in messages)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": approx_tokens(text),
            "total_tokens": prompt_tokens + approx_tokens(text),
        },
    }


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request to an :class:`LLMServer` (the standard library's server makes one per request)."""

    protocol_version = "HTTP/1.1"

    @property
    def llm(self) -> LLMServer:
        return self.server.llm  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": self.llm.model_name, "object": "model"}]})
        elif self.path.rstrip("/") == "/health":
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def _request(self) -> dict[str, Any] | None:
        """The chat-completions request body, checked; None after answering an error."""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return None
        size = int(self.headers.get("Content-Length") or 0)
        if size > MAX_BODY:
            self._error(413, f"request body of {size} bytes is over the {MAX_BODY} byte limit")
            return None
        try:
            body = json.loads(self.rfile.read(size) or b"null")
            messages = body["messages"]
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
            ):
                raise TypeError("messages must be a list of {role, content} objects")
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            self._error(400, f"malformed chat-completions request: {e}")
            return None
        return dict(body)

    def do_POST(self) -> None:
        body = self._request()
        if body is None:
            return
        messages = body["messages"]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        cid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        if body.get("stream"):
            self._stream(cid, messages, max_tokens)
            return
        with self.llm._lock:
            text = self.llm.generator.generate(messages, max_new_tokens=max_tokens)
        self._json(200, _completion(cid, self.llm.model_name, messages, text))

    def _event(self, cid: str, delta: dict[str, str], finish: str | None = None) -> None:
        chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.llm.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def _stream(self, cid: str, messages: list[dict[str, str]], max_tokens: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with self.llm._lock:
            self._event(cid, {"role": "assistant"})
            for piece in self.llm.generator.stream(messages, max_new_tokens=max_tokens):
                if piece:
                    self._event(cid, {"content": piece})
        self._event(cid, {}, "stop")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
