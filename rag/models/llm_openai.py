"""A generator for any OpenAI-compatible chat-completions server: vLLM, llama.cpp server, Ollama, OpenAI.

Base URL and key come from the arguments or from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (a key is optional:
local servers rarely need one). Requests time out after ``timeout`` seconds; connection errors, timeouts, 429
and 5xx answers are retried ``retries`` times with exponential back-off; then, and on any other error status or
a malformed body, :class:`~rag.errors.GenerationError` says what happened. A stream that breaks off raises
too, so a partial answer is never presented as complete.

Standard library only (``urllib``), so it adds no dependency.

Example:
    >>> llm = OpenAIGenerator("qwen2.5-7b-instruct", base_url="http://127.0.0.1:8001/v1")   # doctest: +SKIP
    >>> llm.generate("Say hi.")                                                             # doctest: +SKIP
    'Hi!'
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from rag.errors import ConfigError, GenerationError
from rag.protocols import Prompt

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIGenerator:
    """A :class:`~rag.protocols.Generator` over HTTP (``POST {base_url}/chat/completions``).

    Args:
        model: the model name the server knows.
        base_url: e.g. ``http://127.0.0.1:8000/v1``; default ``$OPENAI_BASE_URL`` or OpenAI's.
        api_key: bearer token; default ``$OPENAI_API_KEY`` (none sent when empty).
        max_new_tokens, temperature: sampling settings sent with each request.
        timeout: seconds per request (connect and each read). retries: extra tries on transient failures.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIGenerator needs a model name, e.g. openai:gpt-4o-mini")
        self.model = model
        self.name = f"openai:{model}"
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM base URL {url!r} must start with http:// or https://")
        self.base_url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _body(self, prompt: Prompt, max_new_tokens: int | None, stream: bool) -> bytes:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_new_tokens or self.max_new_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }
        return json.dumps(body).encode()

    def _open(self, body: bytes) -> Any:
        """POST with retries; returns the open response."""
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return urllib.request.urlopen(  # the URL scheme is checked in __init__
                    urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=self.timeout
                )
            except urllib.error.HTTPError as e:
                detail = e.read(500).decode("utf-8", "replace").strip()
                last = f"HTTP {e.code}: {detail or e.reason}"
                if e.code not in _RETRY_STATUS:
                    raise GenerationError(f"LLM server {url} answered {last}") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = str(getattr(e, "reason", e))
        raise GenerationError(f"LLM server {url} failed after {self.retries + 1} tries: {last}")

    def generate(self, prompt: Prompt, max_new_tokens: int | None = None) -> str:
        with self._open(self._body(prompt, max_new_tokens, stream=False)) as resp:
            raw = resp.read()
        try:
            obj = json.loads(raw)
            text = obj["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise GenerationError(f"LLM server {self.base_url} sent a malformed completion ({e}): {raw[:200]!r}") from e
        return str(text or "").strip()

    def stream(self, prompt: Prompt, max_new_tokens: int | None = None) -> Iterator[str]:
        """Yield text pieces from a server-sent-event stream; raises if the stream breaks off before ``[DONE]``."""
        with self._open(self._body(prompt, max_new_tokens, stream=True)) as resp:
            done = False
            try:
                for raw in resp:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        choice = json.loads(data)["choices"][0]
                    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                        bad = data[:200]
                        raise GenerationError(f"LLM server {self.base_url} sent a malformed event: {bad!r}") from e
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
                    if choice.get("finish_reason"):
                        done = True
            except (TimeoutError, ConnectionError, OSError) as e:
                raise GenerationError(f"LLM server {self.base_url} stream broke off: {e}") from e
            if not done:
                raise GenerationError(f"LLM server {self.base_url} ended the stream before it finished")
