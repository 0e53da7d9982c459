"""``rag serve``: pilotfish over HTTP (FastAPI; ``pip install 'pilotfish[server]'``).

Endpoints (JSON in and out; every error is ``{"error": {"message", "type", "code"}}`` with a 4xx/5xx status):

* ``POST /search`` ``{"query", "k", "filters", "mode", "collection"}`` → the JSON of ``rag search --json``.
* ``POST /ask`` ``{"question", "filters", "stream", "collection"}`` → the JSON of ``rag ask --json``; with
  ``"stream": true`` server-sent events: ``hits``, then ``token`` pieces as the LLM writes, then one ``answer``
  (claims with citations and verdicts, after the verification policy), or ``error``.
* ``GET /documents`` (ids), ``GET /documents/{id}`` (its chunks), ``POST /documents`` (add), ``PUT /documents``
  (update; ids must exist), ``DELETE /documents/{id}``. Document ids are keys in the store, never paths.
* ``GET /health``; ``GET /`` the web chat page; ``/docs`` and ``/openapi.json`` (OpenAPI).
* ``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI-compatible, answered with RAG (see
  :mod:`rag.apps.server.openai_compat`).

Several collections can be served; a request names one with ``collection`` (a body field, or a query parameter
for GET/DELETE), the first is the default. Searches and answers run in worker threads and go on while documents
are added: a write embeds first and then swaps its change in under the collection's read-write lock, so each
search sees the collection before or after a write, never half of it. Writes in one server run one at a time.

Example:
    >>> app = create_app({"kb": "./kb"}, llm="local", token="s3cret")   # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from rag.errors import MissingDependencyError, RagError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError("fastapi", extra="server", purpose="rag serve") from e

from rag.apps.server.guard import Guard, error_body, status_of

log = logging.getLogger("rag.apps.server.app")


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


class DocIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, min_length=1, description="stable id (default: a hash of text and meta)")
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)


class DocsBody(_Body):
    documents: list[DocIn] = Field(min_length=1)


class Served:
    """One served collection: the open collection, its pipeline (built on first use) and its write lock."""

    def __init__(self, name: str, kb: Any, make_rag: Any, mode: str | None = None) -> None:
        self.name, self.kb, self._make_rag = name, kb, make_rag
        self.mode = mode or ("hybrid" if kb.has_dense else "bm25")  # a BM25-only collection has no hybrid
        self._rag: Any = None
        self._build = threading.Lock()
        self.writing = threading.Lock()  # one write at a time in this process; the next one waits

    def rag(self) -> Any:
        with self._build:
            if self._rag is None:
                self._rag = self._make_rag(self.kb, self.mode)
            return self._rag

    def warm(self) -> None:
        """Load the indexes, the encoder, the pipeline and a local LLM now, so the first request is not slow."""
        self.kb.load()
        load = getattr(self.rag().generator, "load", None)
        if callable(load):
            load()

    def info(self) -> dict[str, Any]:
        kb = self.kb
        return {"documents": len(kb), "chunks": kb.num_chunks, "generation": kb.generation, "read_only": kb.read_only}


def open_collections(collections: Any, read_only: bool) -> dict[str, Any]:
    """``{name: Collection}`` from a path, a list of paths (named by folder) or a mapping of names to paths."""
    from rag.errors import ConfigError
    from rag.indexers.collection import Collection, collection_name

    if isinstance(collections, str | Path | Collection):
        collections = [collections]
    items = (
        list(collections.items())
        if isinstance(collections, Mapping)
        else [(c.name if isinstance(c, Collection) else collection_name(c), c) for c in collections]
    )
    if not items:
        raise ConfigError("no collection to serve; pass --collection DIR (repeat it to serve several)")
    out: dict[str, Any] = {}
    for name, c in items:
        if name in out:
            raise ConfigError(f"two collections are named {name!r}; serve them as NAME=DIR with distinct names")
        out[name] = c if isinstance(c, Collection) else Collection.open(c, read_only=read_only)
    return out


def create_app(
    collections: Any,
    *,
    llm: str | Any = "local",
    token: str | None = None,
    max_body: int = 1 << 20,
    cors_origins: Sequence[str] = (),
    read_only: bool = False,
    **rag_options: Any,
) -> FastAPI:
    """The FastAPI app serving ``collections`` (see :func:`open_collections`).

    Args:
        llm: the frozen LLM for ``/ask`` (``local``, ``hf:<id>``, ``openai:<model>`` or a generator), shared by
            all collections and loaded on the first question.
        token: require ``Authorization: Bearer <token>`` on every endpoint but ``/``, ``/health`` and the
            OpenAPI docs (the page asks for the token).
        max_body: largest request body in bytes (413 above it).
        cors_origins: origins allowed to call the API from a browser (none by default: same origin only).
        read_only: open the collections read-only (other processes can search them too); writes get 403.
        rag_options: passed to :meth:`rag.answer.pipeline.RAG.from_collection` (``verifier``, ``policy``, ``k`` ...).
    """
    from rag.answer.pipeline import RAG
    from rag.types import Doc
    from rag.version import __version__

    kbs = open_collections(collections, read_only)
    generator: dict[str, Any] = {}
    gen_lock = threading.Lock()

    mode = rag_options.pop("mode", None)

    def make_rag(kb: Any, mode: str) -> Any:
        with gen_lock:  # one LLM in memory for every collection
            if "llm" not in generator:
                if isinstance(llm, str):
                    from rag.models.generate import make_generator

                    generator["llm"] = make_generator(llm, max_new_tokens=rag_options.get("max_new_tokens", 256))
                else:
                    generator["llm"] = llm
        return RAG.from_collection(kb, llm=generator["llm"], mode=mode, **rag_options)

    served = {name: Served(name, kb, make_rag, mode) for name, kb in kbs.items()}
    default = next(iter(served))
    app = FastAPI(
        title="pilotfish",
        version=__version__,
        description="Search and verified question answering over pilotfish collections.",
    )
    app.state.served = served

    def pick(name: str | None) -> Served:
        s = served.get(name or default)
        if s is None:
            raise HTTPException(404, f"unknown collection {name!r}; served: {sorted(served)}")
        return s

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

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "collections": {n: s.info() for n, s in served.items()}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files("rag.apps.server").joinpath("static/chat.html").read_text(encoding="utf-8"))

    @app.post("/search")
    def search(body: SearchBody) -> dict[str, Any]:
        s = pick(body.collection)
        t0 = time.perf_counter()
        hits = s.kb.retriever(body.mode or s.mode, k=body.k).retrieve(body.query, k=body.k, filters=body.filters)
        took = (time.perf_counter() - t0) * 1000
        return {"query": body.query, "hits": [h.to_dict() for h in hits], "took_ms": round(took, 2)}

    @app.post("/ask", response_model=None)
    def ask(body: AskBody) -> Any:
        s = pick(body.collection)
        rag = s.rag()
        if not body.stream:
            return JSONResponse(json.loads(json.dumps(rag.ask(body.question, body.filters).to_dict(), default=str)))
        from rag.checks import check_query

        check_query(body.question)  # a bad question is a 400, not an error event
        return StreamingResponse(_sse(rag, body.question, body.filters), media_type="text/event-stream")

    @app.get("/documents")
    def list_documents(collection: str | None = None, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        if offset < 0 or not 1 <= limit <= 10000:
            raise HTTPException(422, "need offset >= 0 and 1 <= limit <= 10000")
        ids = pick(collection).kb.ids()
        return {"total": len(ids), "offset": offset, "ids": ids[offset : offset + limit]}

    @app.get("/documents/{doc_id:path}")
    def get_document(doc_id: str, collection: str | None = None) -> dict[str, Any]:
        chunks = pick(collection).kb.get([doc_id])
        if not chunks:
            raise HTTPException(404, f"no document {doc_id!r} in this collection; GET /documents lists the ids")
        return {"id": doc_id, "chunks": [{"id": c.id, "text": c.text, "meta": c.meta} for c in chunks]}

    def write(s: Served, action: str, arg: Any) -> dict[str, Any]:
        if s.kb.read_only:
            raise HTTPException(403, f"collection {s.name!r} is served read-only (rag serve --read-only)")
        with s.writing:
            result = getattr(s.kb, action)(arg)
        return {**result.__dict__, "collection": s.name, **s.info()}

    def docs(body: DocsBody) -> list[Doc]:
        return [Doc(d.text, id=d.id or "", meta=d.meta) for d in body.documents]

    @app.post("/documents")
    def add_documents(body: DocsBody) -> dict[str, Any]:
        return write(pick(body.collection), "add", docs(body))

    @app.put("/documents")
    def update_documents(body: DocsBody) -> dict[str, Any]:
        return write(pick(body.collection), "update", docs(body))

    @app.delete("/documents/{doc_id:path}")
    def delete_document(doc_id: str, collection: str | None = None) -> dict[str, Any]:
        s = pick(collection)
        if not s.kb.get([doc_id]):
            raise HTTPException(404, f"no document {doc_id!r} in this collection; nothing deleted")
        return write(s, "delete", [doc_id])

    from rag.apps.server.openai_compat import add_openai_routes

    add_openai_routes(app, pick, served)
    app.add_middleware(Guard, token=token, max_body=max_body)
    if cors_origins:  # outermost, so preflights and error responses carry the CORS headers
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"], allow_headers=["*"], max_age=600
        )
    return app


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


async def _sse(rag: Any, question: str, filters: Mapping[str, Any] | None) -> AsyncIterator[str]:
    """Server-sent events of one answer; a client that disconnects stops the generation."""
    try:
        async with contextlib.aclosing(rag.astream(question, filters)) as events:  # closed at once on hang-up
            async for ev in events:
                if ev.type == "hits":
                    yield _event("hits", {"hits": [h.to_dict() for h in ev.hits]})
                elif ev.type == "token" and ev.text:
                    yield _event("token", {"text": ev.text})
                elif ev.answer is not None:
                    yield _event("answer", ev.answer.to_dict())
    except RagError as e:
        yield _event("error", error_body(status_of(e), str(e), type(e).__name__)["error"])
    except Exception as e:  # the response has started: the status cannot change, so say it in the stream
        log.exception("answering %r failed", question)
        yield _event("error", error_body(500, f"internal error: {type(e).__name__}: {e}")["error"])
