"""The routes of ``rag serve`` (see :mod:`rag.apps.server.app`): health, the chat page, search, ask (JSON or
server-sent events), feedback on answers and the documents of a collection.

Every answer carries an ``answer_id`` (a random hex id); ``POST /feedback`` stores a user's judgement of the answer
or of one cited document in the collection (:mod:`rag.models.feedback`), where ``rag adapt`` finds it. Feedback is
accepted from a read-only server too: it changes no document."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from rag.apps.server.catalog import Catalog, Served
from rag.apps.server.guard import error_body, status_of
from rag.checks import check_query
from rag.errors import RagError
from rag.models import feedback as store
from rag.types import Doc
from rag.version import __version__

log = logging.getLogger("rag.apps.server")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str | None = Field(None, description="served collection name (default: the first)")


class SearchBody(_Body):
    query: str
    k: int = Field(10, ge=1, le=1000)
    filters: dict[str, Any] | None = None
    mode: Literal["bm25", "dense", "hybrid"] | None = Field(None, description="default: the server's --mode")


class AskBody(_Body):
    question: str
    filters: dict[str, Any] | None = None
    stream: bool = False


class FeedbackBody(_Body):
    question: str = Field(min_length=1, max_length=4000)
    useful: bool
    answer_id: str | None = Field(None, max_length=64, description="the answer_id /ask returned")
    doc_id: str | None = Field(None, min_length=1, description="a cited document; none: the answer as a whole")


class DocIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, min_length=1, description="stable id (default: a hash of text and meta)")
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)


class DocsBody(_Body):
    documents: list[DocIn] = Field(min_length=1)


def add_routes(app: FastAPI, catalog: Catalog) -> None:
    """Health, the chat page, ``/search`` and ``/ask``."""

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "collections": {n: s.info() for n, s in catalog.served.items()}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files("rag.apps.server").joinpath("static/chat.html").read_text(encoding="utf-8"))

    @app.post("/search")
    def search(body: SearchBody) -> dict[str, Any]:
        s = catalog.pick(body.collection)
        t0 = time.perf_counter()
        hits = s.kb.retriever(body.mode or s.mode, k=body.k).retrieve(body.query, k=body.k, filters=body.filters)
        took = (time.perf_counter() - t0) * 1000
        return {"query": body.query, "hits": [h.to_dict() for h in hits], "took_ms": round(took, 2)}

    @app.post("/ask", response_model=None)
    def ask(body: AskBody) -> Any:
        s = catalog.pick(body.collection)
        rag = s.rag()
        answer_id = uuid.uuid4().hex
        if not body.stream:
            answer = {**rag.ask(body.question, body.filters).to_dict(), "answer_id": answer_id}
            return JSONResponse(json.loads(json.dumps(answer, default=str)))
        check_query(body.question)  # a bad question is a 400, not an error event
        return StreamingResponse(_sse(rag, body.question, body.filters, answer_id), media_type="text/event-stream")

    @app.post("/feedback")
    def feedback(body: FeedbackBody) -> dict[str, Any]:
        s = catalog.pick(body.collection)
        if s.kb.model_root is None:
            raise HTTPException(409, f"collection {s.name!r} keeps no models folder, so no feedback; serve a folder")
        if body.doc_id is not None and not s.kb.get([body.doc_id]):
            raise HTTPException(404, f"no document {body.doc_id!r} in collection {s.name!r}; send a cited doc id")
        with s.writing:
            entry = store.record(s.kb.model_root, body.question, body.useful, answer_id=body.answer_id,
                                 doc_id=body.doc_id)  # fmt: skip
            total = len(store.read(s.kb.model_root))
        return {"stored": entry, "collection": s.name, "judgements": total}


def _write(s: Served, action: str, arg: Any) -> dict[str, Any]:
    if s.kb.read_only:
        raise HTTPException(403, f"collection {s.name!r} is served read-only (rag serve --read-only)")
    with s.writing:
        result = getattr(s.kb, action)(arg)
    return {**result.__dict__, "collection": s.name, **s.info()}


def _docs(body: DocsBody) -> list[Doc]:
    return [Doc(d.text, id=d.id or "", meta=d.meta) for d in body.documents]


def add_document_routes(app: FastAPI, catalog: Catalog) -> None:
    """``GET``, ``POST``, ``PUT`` and ``DELETE`` of ``/documents``: the ids, a document's chunks, writes."""

    @app.get("/documents")
    def list_documents(collection: str | None = None, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        if offset < 0 or not 1 <= limit <= 10000:
            raise HTTPException(422, "need offset >= 0 and 1 <= limit <= 10000")
        ids = catalog.pick(collection).kb.ids()
        return {"total": len(ids), "offset": offset, "ids": ids[offset : offset + limit]}

    @app.get("/documents/{doc_id:path}")
    def get_document(doc_id: str, collection: str | None = None) -> dict[str, Any]:
        chunks = catalog.pick(collection).kb.get([doc_id])
        if not chunks:
            raise HTTPException(404, f"no document {doc_id!r} in this collection; GET /documents lists the ids")
        return {"id": doc_id, "chunks": [{"id": c.id, "text": c.text, "meta": c.meta} for c in chunks]}

    @app.post("/documents")
    def add_documents(body: DocsBody) -> dict[str, Any]:
        return _write(catalog.pick(body.collection), "add", _docs(body))

    @app.put("/documents")
    def update_documents(body: DocsBody) -> dict[str, Any]:
        return _write(catalog.pick(body.collection), "update", _docs(body))

    @app.delete("/documents/{doc_id:path}")
    def delete_document(doc_id: str, collection: str | None = None) -> dict[str, Any]:
        s = catalog.pick(collection)
        if not s.kb.get([doc_id]):
            raise HTTPException(404, f"no document {doc_id!r} in this collection; nothing deleted")
        return _write(s, "delete", [doc_id])


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


async def _sse(rag: Any, question: str, filters: Mapping[str, Any] | None, answer_id: str) -> AsyncIterator[str]:
    """Server-sent events of one answer; a client that disconnects stops the generation."""
    try:
        async with contextlib.aclosing(rag.astream(question, filters)) as events:  # closed at once on hang-up
            async for ev in events:
                if ev.type == "hits":
                    yield _event("hits", {"hits": [h.to_dict() for h in ev.hits]})
                elif ev.type == "token" and ev.text:
                    yield _event("token", {"text": ev.text})
                elif ev.answer is not None:
                    yield _event("answer", {**ev.answer.to_dict(), "answer_id": answer_id})
    except RagError as e:
        yield _event("error", error_body(status_of(e), str(e), type(e).__name__)["error"])
    except Exception as e:  # the response has started: the status cannot change, so say it in the stream
        log.exception("answering %r failed", question)
        yield _event("error", error_body(500, f"internal error: {type(e).__name__}: {e}")["error"])
