"""Fusion of several retrievers' runs: reciprocal rank fusion (optionally weighted) and convex
combination of min-max normalised scores. :class:`Hybrid` is itself a Retriever.

* ``rrf``: score(d) = sum_i w_i / (rrf_k + rank_i(d)), ranks from 1 (Cormack et al., 2009).
* ``convex``: score(d) = sum_i w_i * (s_i(d) - min_i) / (max_i - min_i); a run whose scores are all
  equal contributes w_i to each of its documents. Documents a run did not return get 0 from it.

Inside each run a document id counts once (its best rank). A run with weight 0 is ignored. Ties are
broken by the best rank any run gave, then by run order. The fused hit keeps the document from the
first run that returned it; metadata keys only later runs carry are added, and a key whose value
differs between runs keeps the first value and lists the others under ``meta["conflicts"][key]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from rag.checks import check_k, check_query
from rag.errors import ConfigError
from rag.protocols import Retriever
from rag.types import Doc, Hit

METHODS = ("rrf", "convex")


def _dedup(run: Sequence[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for h in run:
        if h.doc.id not in seen:
            seen.add(h.doc.id)
            out.append(h)
    return out


def _merge_meta(first: Doc, others: list[Doc]) -> Doc:
    meta = dict(first.meta)
    conflicts: dict[str, list[Any]] = {}
    for d in others:
        for key, val in d.meta.items():
            if key not in meta:
                meta[key] = val
            elif meta[key] != val and key != "conflicts":
                conflicts.setdefault(key, [])
                if val not in conflicts[key]:
                    conflicts[key].append(val)
    if not conflicts and not any(d.meta.keys() - first.meta.keys() for d in others):
        return first
    if conflicts:
        meta["conflicts"] = conflicts
    return Doc(text=first.text, id=first.id, meta=meta)


def fuse(
    runs: Sequence[Sequence[Hit]],
    k: int,
    method: str = "rrf",
    weights: Sequence[float] | None = None,
    rrf_k: float = 60.0,
    source: str = "hybrid",
) -> list[Hit]:
    """Fuse ranked runs into one list of at most ``k`` hits, best first."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; use one of {METHODS}")
    w = [1.0] * len(runs) if weights is None else [float(x) for x in weights]
    if len(w) != len(runs):
        raise ConfigError(f"got {len(w)} weights for {len(runs)} retrievers; give one weight per retriever")
    if any(x < 0 for x in w) or (runs and not any(w)):
        raise ConfigError(f"weights must be >= 0 and not all zero, got {list(w)}")
    if rrf_k < 0:
        raise ConfigError(f"rrf_k must be >= 0, got {rrf_k}")
    score: dict[str, float] = {}
    best_rank: dict[str, tuple[int, int]] = {}
    docs: dict[str, list[Doc]] = {}
    for i, (run, wi) in enumerate(zip(runs, w, strict=True)):
        if wi == 0:
            continue
        run = _dedup(run)
        if method == "convex" and run:
            vals = [h.score for h in run]
            lo, hi = min(vals), max(vals)
        for rank, h in enumerate(run, 1):
            did = h.doc.id
            if method == "rrf":
                part = wi / (rrf_k + rank)
            else:
                part = wi * ((h.score - lo) / (hi - lo) if hi > lo else 1.0)
            score[did] = score.get(did, 0.0) + part
            best_rank[did] = min(best_rank.get(did, (rank, i)), (rank, i))
            docs.setdefault(did, []).append(h.doc)
    order = sorted(score, key=lambda d: (-score[d], best_rank[d]))[:k]
    return [Hit(doc=_merge_meta(docs[d][0], docs[d][1:]), score=score[d], source=source) for d in order]


class Hybrid:
    """A Retriever fusing other retrievers' results.

    Args:
        retrievers: the retrievers to fuse (each asked for ``candidates`` hits).
        method: ``"rrf"`` (default) or ``"convex"``.
        weights: one weight per retriever (default all 1; with rrf this is weighted RRF).
        rrf_k: RRF's rank constant.
        candidates: hits asked of each retriever (default max(100, k)).
        k: default number of hits returned.

    Example:
        >>> Hybrid(kb.retriever("bm25"), kb.retriever("dense"), weights=[1, 2]).retrieve("q")  # doctest: +SKIP
    """

    name = "hybrid"

    def __init__(
        self,
        *retrievers: Retriever,
        method: str = "rrf",
        weights: Sequence[float] | None = None,
        rrf_k: float = 60.0,
        candidates: int | None = None,
        k: int = 10,
    ) -> None:
        if not retrievers:
            raise ConfigError("Hybrid needs at least one retriever")
        self.retrievers = retrievers
        self.method, self.weights, self.rrf_k = method, weights, rrf_k
        self.candidates = candidates
        self.k = check_k(k)
        fuse([[] for _ in retrievers], 1, method, weights, rrf_k)  # validate the settings now

    def retrieve(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        check_query(query)
        k = check_k(self.k if k is None else k)
        n = max(self.candidates or 100, k)
        kbs: dict[int, Any] = {}
        for r in self.retrievers:
            kb = getattr(r, "collection", None)
            if hasattr(kb, "reading"):
                kbs[id(kb)] = kb
        with contextlib.ExitStack() as views:  # the runs over one collection all see the same generation
            for kb in kbs.values():
                views.enter_context(kb.reading())
            runs = [r.retrieve(query, n, filters) for r in self.retrievers]
        return fuse(runs, k, self.method, self.weights, self.rrf_k, self.name)
