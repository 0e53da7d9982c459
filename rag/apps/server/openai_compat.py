"""OpenAI-compatible chat completions answered with RAG, so existing chat clients can talk to a pilotfish bot.

``POST /v1/chat/completions``: the last user message is the question; it is answered from a served collection
(the request's ``model`` names one; any other model name means the default collection), with no memory of
earlier turns. The reply's content is the answer with its ``[n]`` markers, then a "Sources" list and the claims
the verifier could not support; the full answer (claims, verdicts, hits, trace) is in the extra field
``pilotfish``. Sampling options (``temperature`` ...) are accepted and ignored: the pipeline's settings hold.

With ``"stream": true`` the answer's tokens stream as ``chat.completion.chunk`` events as the LLM writes them,
then one chunk with the sources and flags (and, when the policy changed the text, the verified answer), then
``data: [DONE]``. ``GET /v1/models`` lists the served collections as models.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from rag.apps.server.guard import error_body, status_of
from rag.errors import RagError
from rag.types import Answer


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p, max_tokens ... are accepted and ignored
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


def question_of(messages: list[ChatMessage]) -> str:
    """The text of the last user message (string content, or the text parts of a content list)."""
    for m in reversed(messages):
        if m.role == "user":
            if isinstance(m.content, str):
                text = m.content
            else:
                text = " ".join(str(p.get("text", "")) for p in m.content or [] if p.get("type") == "text")
            if text.strip():
                return text
    raise HTTPException(400, "no user message with text in 'messages'; the last user message is the question")


def footer(answer: Answer, shown: str) -> str:
    """What a chat client shows after the answer's text: the verified text if it differs, sources, flags."""
    parts = []
    if answer.text.strip() != shown.strip():
        parts.append(("Withheld" if answer.abstained else "Verified answer") + f": {answer.text}")
    if answer.hits and not answer.abstained:
        lines = []
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
        for i, h in enumerate(answer.hits, 1):
            if cited and i not in cited:
                continue
            title = h.doc.meta.get("title") or h.doc.meta.get("source") or ""
            lines.append(f"[{i}] {h.doc.id}" + (f" ({title})" if title and title != h.doc.id else ""))
        parts.append("Sources:\n" + "\n".join(lines))
    flagged = [c.text for c in answer.claims if c.verdict in ("unsupported", "contradicted")]
    if flagged and not answer.abstained:
        parts.append("Not supported by the sources: " + " | ".join(flagged))
    return "".join(f"\n\n{p}" for p in parts)


def _usage(answer: Answer) -> dict[str, int]:
    p, c = int(answer.trace.get("prompt_tokens", 0)), int(answer.trace.get("completion_tokens", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def add_openai_routes(app: FastAPI, pick: Any, served: dict[str, Any]) -> None:
    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "pilotfish"} for name in served],
        }

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatBody) -> Any:
        s = served[body.model] if body.model in served else pick(None)
        question = question_of(body.messages)
        rag = s.rag()
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.stream:
            return StreamingResponse(_chunks(rag, question, cid, created, s.name), media_type="text/event-stream")
        answer = rag.ask(question)
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": s.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text + footer(answer, answer.text)},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(answer),
            "pilotfish": json.loads(json.dumps(answer.to_dict(), default=str)),
        }


async def _chunks(rag: Any, question: str, cid: str, created: int, model: str) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
        return f"data: {json.dumps(obj, ensure_ascii=False, default=str)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    shown: list[str] = []
    try:
        async with contextlib.aclosing(rag.astream(question)) as events:  # closed at once on hang-up
            async for ev in events:
                if ev.type == "token" and ev.text:
                    shown.append(ev.text)
                    yield chunk({"content": ev.text})
                elif ev.answer is not None:
                    answer = ev.answer
                    tail = footer(answer, "".join(shown)) if shown else answer.text + footer(answer, answer.text)
                    yield chunk({"content": tail}, "stop", usage=_usage(answer))
    except Exception as e:  # the response has started: report the error in the stream, as OpenAI does
        status = status_of(e) if isinstance(e, RagError) else 500
        yield f"data: {json.dumps(error_body(status, str(e), type(e).__name__))}\n\n"
    yield "data: [DONE]\n\n"
