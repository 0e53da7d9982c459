"""``train_reranker``: fit a cross-encoder on groups from :mod:`rag.train.reranker_data` and choose its blend.

A tenth of the queries (at least 20 when there are 100 or more) is held out: after training, the reranker is
evaluated on them (nDCG@10) for several blends with the first-stage order, and the best blend is stored in
the model's manifest with the scores. With fewer than 100 queries there is no held-out set and the blend is
0.5 (half the weight stays on the first stage).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.eval.retrieval import ndcg_at_k
from rag.models.registry import data_hash, write_model_manifest, writing_model
from rag.models.rerank import RRF_K, passage_text, score_pairs
from rag.train.loop import TrainConfig, fit, new_cross_encoder
from rag.train.reranker_data import mine, parent, read_pairs, read_qrels_source, synthesize
from rag.types import Hit

BLENDS = (0.0, 0.25, 0.5, 0.75)


def split_queries(queries: dict[str, str], seed: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """(train, held-out) queries: a tenth held out when there are at least 100 (min 20), else none."""
    ids = sorted(queries)
    if len(ids) < 100:
        return queries, {}
    random.Random(seed).shuffle(ids)
    n = max(20, len(ids) // 10)
    return {q: queries[q] for q in ids[n:]}, {q: queries[q] for q in ids[:n]}


def choose_blend(
    scorer: Callable[[str, Sequence[str]], Any],
    heldout: dict[str, str],
    candidates: dict[str, list[Hit]],
    qrels: dict[str, dict[str, int]],
    rerank_depth: int = 30,
) -> tuple[float, dict[str, float]]:
    """nDCG@10 on held-out queries for the first stage and each blend; returns (best blend, scores)."""
    runs: dict[str, dict[str, list[str]]] = {"first_stage": {}}
    for qid in heldout:
        hits = candidates.get(qid, [])[:rerank_depth]
        ids = [parent(h) for h in hits]
        runs["first_stage"][qid] = ids
        s = list(scorer(heldout[qid], [passage_text(h) for h in hits])) if hits else []
        order = sorted(range(len(hits)), key=lambda i: -s[i])
        rank = {i: r for r, i in enumerate(order)}
        for w in BLENDS:
            fused = sorted(range(len(hits)), key=lambda i: -((1 - w) / (RRF_K + rank[i] + 1) + w / (RRF_K + i + 1)))
            runs.setdefault(f"blend={w}", {})[qid] = [ids[i] for i in fused]
    scores = {
        name: round(sum(ndcg_at_k(run[q], qrels.get(q, {}), 10) for q in heldout) / max(1, len(heldout)), 4)
        for name, run in runs.items()
    }
    best = max(BLENDS, key=lambda w: (scores[f"blend={w}"], -w))
    return best, scores


def train_reranker(
    kb: Any,
    *,
    source: dict[str, Any],
    dest: str | Path,
    name: str,
    base: str = "default",
    force: bool = False,
    negatives: int = 3,
    config: TrainConfig | None = None,
    generator: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a reranker and save it (model + manifest) at ``dest``. ``source`` is one of
    ``{"pairs": FILE}``, ``{"qrels": DIR, "split": "train"}``, ``{"synthesize": N}``. Returns the manifest."""
    config = config or TrainConfig()
    queries, labels, texts, info = _source(kb, source, config.seed, generator, progress)
    train_q, held_q = split_queries(queries, config.seed)
    groups, candidates = mine(kb, queries, labels, texts, negatives=negatives, seed=config.seed, progress=progress)
    train_groups = [g for q in train_q for g in groups.get(q, [])]
    with writing_model(dest, force=force) as tmp:
        model = new_cross_encoder(base, num_labels=1, max_length=config.max_length)
        stats = fit(model, train_groups, "listwise", config)
        # no held-out queries (fewer than 100): keep half the weight on the first stage; a reranker trained
        # on a few dozen queries alone can be far worse than the first stage (SciFact, 36 queries: 0.17)
        settings: dict[str, Any] = {"blend": 0.5, "max_length": config.max_length}
        metrics: dict[str, Any] = {}
        if held_q:
            blend, scores = choose_blend(partial(score_pairs, model), held_q, candidates, labels)
            settings["blend"] = blend
            metrics = {"heldout_queries": len(held_q), "heldout_ndcg@10": scores}
        model.save(str(tmp))
        records = [g.pairs for q in sorted(groups) for g in groups[q]]
        return write_model_manifest(
            tmp,
            "reranker",
            name,
            base,
            settings=settings,
            training={
                **info,
                "data_sha256": data_hash(records),
                "queries": len(train_q),
                "groups": len(train_groups),
                "negatives_per_group": negatives,
                "steps": stats.steps,
                "epochs": config.epochs,
                "lr": config.lr,
                "seconds": stats.seconds,
                "final_loss": stats.final_loss,
                "collection": kb.location,
            },
            metrics=metrics,
        )


def _source(
    kb: Any, source: dict[str, Any], seed: int, generator: Any, progress: bool
) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, str], dict[str, Any]]:
    """(queries, labels, passage texts, what to record of the source) from ``{"pairs": FILE}``, ``{"qrels": DIR,
    "split": ...}`` or ``{"synthesize": N}`` (queries written by ``generator``, the local LLM by default)."""
    if "pairs" in source:
        queries, labels, texts = read_pairs(source["pairs"], kb)
        return queries, labels, texts, {"source": f"pairs:{source['pairs']}"}
    if "qrels" in source:
        split = source.get("split", "train")
        queries, labels = read_qrels_source(source["qrels"], kb, split)
        return queries, labels, {}, {"source": f"qrels:{source['qrels']}:{split}"}
    if "synthesize" not in source:
        raise ConfigError("give one training source: pairs, qrels or synthesize")
    if generator is None:
        from rag.models.generate import LocalGenerator  # torch & transformers: loaded only to synthesise

        generator = LocalGenerator()
    queries, labels, counts = synthesize(kb, int(source["synthesize"]), generator, seed=seed, progress=progress)
    if not queries:
        raise ConfigError(f"none of the {counts['generated']} synthesised queries passed the round-trip filter")
    llm = getattr(generator, "name", type(generator).__name__)
    return queries, labels, {}, {"source": "synthesize", "llm": llm, "synthesis": counts}
