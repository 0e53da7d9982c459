"""Retrieval evaluation (the data: :mod:`rag.datasets`): nDCG@k, recall@k, MRR@k, MAP@k.

Definitions follow trec_eval / pytrec_eval as BEIR uses them: nDCG with linear gains and
log2(rank + 1) discounts against the ideal ordering of all judged documents; recall@k over the
documents judged relevant (grade > 0); MRR@k the reciprocal rank of the first relevant document;
MAP@k sums precision at each relevant rank up to k, divided by the number of relevant documents.
Queries with judgments but no results count as 0. Hits are mapped to their parent document (chunks
of one document count once, at the rank of the first).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from rag.datasets import Qrels
from rag.errors import ConfigError
from rag.protocols import Retriever
from rag.types import Hit


def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def map_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    n_rel = sum(1 for r in rels.values() if r > 0)
    hits, total = 0, 0.0
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_rel if n_rel else 0.0


METRICS: dict[str, Callable[[Sequence[str], Mapping[str, int], int], float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": mrr_at_k,
    "map": map_at_k,
}
DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map@10")


def evaluate_run(
    run: Mapping[str, Sequence[str]], qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, float]:
    """Mean of each metric (names like ``"ndcg@10"``) over the judged queries."""
    out = {}
    for name in metrics:
        kind, _, kk = name.partition("@")
        if kind not in METRICS or not kk.isdigit():
            raise ConfigError(f"unknown metric {name!r}; use e.g. ndcg@10, recall@100, mrr@10, map@10")
        fn, k = METRICS[kind], int(kk)
        vals = [fn(list(run.get(q, [])), rels, k) for q, rels in qrels.items()]
        out[name] = sum(vals) / len(vals) if vals else 0.0
    return out


def parent_id(hit: Hit) -> str:
    """The id of the document a hit belongs to (a chunk's parent, or the hit's own id)."""
    return str(hit.doc.meta.get("parent", hit.doc.id))


def parent_ids(hits: Sequence[Hit]) -> list[str]:
    """Document ids of hits, each once, in first-seen order (chunks map to their parent)."""
    return list(dict.fromkeys(parent_id(h) for h in hits))


def evaluate_retriever(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Qrels,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Run every query through ``retriever`` and score the runs (``k`` defaults to the largest cutoff)."""
    depth = k or max(int(m.partition("@")[2]) for m in metrics)
    items: Iterable[tuple[str, str]] = queries.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="queries", unit="q", disable=None, total=len(queries))
    run = {qid: parent_ids(retriever.retrieve(text, depth)) for qid, text in items}
    return evaluate_run(run, qrels, metrics)
