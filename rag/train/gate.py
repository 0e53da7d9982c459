"""The gate: a trained reranker is adopted only if it beats the unadapted first stage on queries it never saw.

A reranker is used blended with the first-stage order (weight ``blend`` on the first stage; 0 is the cross-encoder
alone). Choosing the blend on the same queries that judge the model would flatter it, so the held-out queries are
split in two halves: the blend chosen on each half is scored on the other (cross-fitting). The model is adopted when
that score beats the first stage's on the same queries *surely*: the 95% bootstrap interval of the per-query gain
lies above zero. A mean gain alone is not enough: on SciFact, a reranker trained on the train qrels gained 3 points
on 80 held-out train queries (interval -2.6 to +8.3) and lost 1.1 on the 300 test queries. The evidence records the
scores, the interval and the number of queries, so a user can see how sure the decision is.

Example:
    >>> per = {"first_stage": {"q1": 0.5, "q2": 0.4}, "blend=0.5": {"q1": 0.9, "q2": 0.6}}
    >>> decide(per)["adopt"]
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rag.eval.retrieval import ndcg_at_k, parent_id
from rag.models.rerank import RRF_K, passage_text
from rag.types import Hit

BLENDS = (0.0, 0.25, 0.5, 0.75)
FIRST = "first_stage"


def per_query(
    scorer: Callable[[str, Sequence[str]], Any],
    queries: Mapping[str, str],
    candidates: Mapping[str, list[Hit]],
    qrels: Mapping[str, Mapping[str, int]],
    depth: int = 30,
    blends: Sequence[float] = BLENDS,
) -> dict[str, dict[str, float]]:
    """nDCG@10 of every query, for the first stage and for the reranker at each blend: ``{run: {query id: nDCG}}``."""
    out: dict[str, dict[str, float]] = {FIRST: {}, **{f"blend={w}": {} for w in blends}}
    for qid, text in queries.items():
        hits = list(candidates.get(qid, []))[:depth]
        ids = [parent_id(h) for h in hits]
        rels = qrels.get(qid, {})
        out[FIRST][qid] = ndcg_at_k(ids, rels, 10)
        s = list(scorer(text, [passage_text(h) for h in hits])) if hits else []
        rank = {i: r for r, i in enumerate(sorted(range(len(hits)), key=lambda i: -s[i]))}
        for w in blends:
            fused = sorted(range(len(hits)), key=lambda i: -((1 - w) / (RRF_K + rank[i] + 1) + w / (RRF_K + i + 1)))
            out[f"blend={w}"][qid] = ndcg_at_k([ids[i] for i in fused], rels, 10)
    return out


def mean(values: Mapping[str, float], ids: Sequence[str]) -> float:
    return sum(values[q] for q in ids) / max(1, len(ids))


def best_blend(per: Mapping[str, Mapping[str, float]], ids: Sequence[str]) -> float:
    """The blend with the best mean nDCG@10 over ``ids`` (ties: the smaller blend)."""
    blends = [float(k.split("=", 1)[1]) for k in per if k != FIRST]
    return max(blends, key=lambda w: (mean(per[f"blend={w}"], ids), -w))


def bootstrap_ci(diffs: Sequence[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``diffs``."""
    if not diffs:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return (round(means[int(0.025 * rounds)], 4), round(means[int(0.975 * rounds) - 1], 4))


def decide(per: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The gate's decision and its evidence from per-query scores (see the module docstring)."""
    ids = sorted(per[FIRST])
    halves = (ids[0::2], ids[1::2])
    after: dict[str, float] = {}
    for i, half in enumerate(halves):
        chosen = best_blend(per, halves[1 - i]) if halves[1 - i] else best_blend(per, half)
        after.update({q: per[f"blend={chosen}"][q] for q in half})
    before = mean(per[FIRST], ids)
    crossed = mean(after, ids)
    diffs = [after[q] - per[FIRST][q] for q in ids]
    ci = bootstrap_ci(diffs)
    return {
        "adopt": len(ids) >= 2 and crossed > before and ci[0] > 0,
        "metric": "ndcg@10",
        "queries": len(ids),
        "before": round(before, 4),
        "after": round(crossed, 4),
        "difference_ci95": ci,
        "blend": best_blend(per, ids),
        "scores": {run: round(mean(v, ids), 4) for run, v in per.items()},
    }
