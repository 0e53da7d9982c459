"""Routing typed sub-queries to the retriever of their kind: text, table or tool.

The decomposer (or, without one, the rule typer :func:`rag.models.decompose.rules.kind_of`) types each sub-query; a
``table`` sub-query goes to the table retriever, a ``tool`` one to the tool retriever, the rest (and the whole
question, always) to the text retriever. A text question whose best text hit is a table card (the card matched
best, so its table is what the question is about) is also sent to the table retriever. Each retriever's trace
events (tables found, SQL attempts and rejections, tool calls, timeouts and errors) are kept for the answer's
trace; a route that raises is recorded and skipped, so the answer continues on the other evidence.

Example:
    >>> runs, events = route("What is 12 * 7?", [SubQuery("What is 12 * 7?", "tool")], text, {"tool": tools})
    ... # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rag.errors import ConfigError, RagError
from rag.types import Hit, SubQuery

log = logging.getLogger(__name__)
KINDS = ("table", "tool")


def check_routes(routes: Mapping[str, Any] | None) -> dict[str, Any]:
    """``routes`` as a dict, checked: keys among ``table``/``tool``, values Retrievers."""
    out = dict(routes or {})
    for kind, r in out.items():
        if kind not in KINDS:
            raise ConfigError(f"unknown route {kind!r}; routes map 'table' and/or 'tool' to a retriever")
        if not callable(getattr(r, "retrieve", None)):
            raise ConfigError(f"the {kind} route needs a Retriever (an object with .retrieve), got {type(r).__name__}")
    return out


def _run(retriever: Any, query: str, k: int, filters: Mapping[str, Any] | None) -> tuple[list[Hit], list[Any]]:
    traced = getattr(retriever, "retrieve_traced", None)
    if traced is not None:
        hits, events = traced(query, k=k, filters=filters)
        return list(hits), list(events)
    return list(retriever.retrieve(query, k=k, filters=filters)), []


def route(
    question: str,
    subs: Sequence[SubQuery],
    text: Any,
    routes: Mapping[str, Any],
    k: int,
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[list[Hit]], list[dict[str, Any]]]:
    """One ranked run per (query, retriever) and one trace record per run, in order: the question on the text
    retriever first, then each sub-query on the retriever of its kind."""
    plan: list[tuple[str, str]] = [(question, "text")]
    for s in subs:
        step = (s.text, s.kind if s.kind in routes else "text")
        if step not in plan:
            plan.append(step)
    runs: list[list[Hit]] = []
    records: list[dict[str, Any]] = []
    i = 0
    while i < len(plan):
        query, kind = plan[i]
        i += 1
        retriever = routes[kind] if kind != "text" else text
        t = time.perf_counter()
        record: dict[str, Any] = {"query": query, "kind": kind, "retriever": getattr(retriever, "name", kind)}
        try:
            hits, events = _run(retriever, query, k, filters if kind == "text" else None)
        except RagError as e:  # a failing route must not sink the answer
            log.warning("the %s route failed for %r: %s", kind, query, e)
            hits, events = [], [{"status": "error", "error": str(e)}]
        record.update(ms=round((time.perf_counter() - t) * 1000, 2), output=[h.doc.id for h in hits])
        if events:
            record["events"] = events
        runs.append(hits)
        records.append(record)
        card = kind == "text" and "table" in routes and bool(hits) and hits[0].doc.meta.get("kind") == "table"
        if card and (query, "table") not in plan:
            plan.append((query, "table"))
    return runs, records
