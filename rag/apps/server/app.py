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

from collections.abc import Sequence
from typing import Any

from rag.errors import MissingDependencyError

try:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError("fastapi", extra="server", purpose="rag serve") from e

from rag.apps.server.catalog import Catalog, Served, SharedLLM, open_collections
from rag.apps.server.guard import Guard, add_error_handlers
from rag.apps.server.openai_compat import add_openai_routes
from rag.apps.server.routes import add_document_routes, add_routes
from rag.version import __version__


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
    from rag.answer.pipeline import RAG  # the pipeline's models load with the first collection

    shared = SharedLLM(llm, rag_options.get("max_new_tokens", 256))
    mode = rag_options.pop("mode", None)

    def make_rag(kb: Any, mode: str) -> Any:
        return RAG.from_collection(kb, llm=shared.get(), mode=mode, **rag_options)

    catalog = Catalog({n: Served(n, kb, make_rag, mode) for n, kb in open_collections(collections, read_only).items()})
    app = FastAPI(
        title="pilotfish",
        version=__version__,
        description="Search and verified question answering over pilotfish collections.",
    )
    app.state.served = catalog.served
    add_error_handlers(app)
    add_routes(app, catalog)
    add_document_routes(app, catalog)
    add_openai_routes(app, catalog.pick, catalog.served)
    app.add_middleware(Guard, token=token, max_body=max_body)
    if cors_origins:  # outermost, so preflights and error responses carry the CORS headers
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"], allow_headers=["*"], max_age=600
        )
    return app
