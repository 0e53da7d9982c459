"""``train_reranker``: fit a cross-encoder on groups from :mod:`rag.train.reranker_data`, choose its blend, and
let the gate decide whether the collection adopts it.

A tenth of the queries (at least 20 when there are 100 or more) is held out: after training, the reranker is
evaluated on them (nDCG@10) for several blends with the first-stage order; the best blend is stored in the
model's manifest with the scores, and the gate (:mod:`rag.train.gate`: blends cross-fitted over two halves)
adopts the model only if it beats the first stage there (:mod:`rag.models.adoption`). With fewer than 100
queries there is no held-out set: the blend is 0.5 (half the weight stays on the first stage) and the model is
not adopted; it is used only where it is named.

Defaults (1.5 epochs, 160 tokens per pair) are the settings of the SciFact figure in benchmarks/README.md.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.models import adoption
from rag.models.registry import data_hash, model_dir, write_model_manifest, writing_model
from rag.models.rerank import score_pairs
from rag.train.gate import decide, per_query
from rag.train.loop import TrainConfig, fit, new_cross_encoder
from rag.train.reranker_data import mine, read_pairs, read_qrels_source, synthesize


def split_queries(queries: dict[str, str], seed: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """(train, held-out) queries: a tenth held out when there are at least 100 (min 20), else none."""
    ids = sorted(queries)
    if len(ids) < 100:
        return queries, {}
    random.Random(seed).shuffle(ids)
    n = max(20, len(ids) // 10)
    return {q: queries[q] for q in ids[n:]}, {q: queries[q] for q in ids[:n]}


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
    ``{"pairs": FILE}``, ``{"qrels": DIR, "split": "train"}``, ``{"synthesize": N}``. The gate
    (:mod:`rag.train.gate`) decides on held-out training queries whether the collection adopts it. Returns the
    manifest, with ``"adoption"``: the decision and its evidence."""
    config = config or TrainConfig(epochs=1.5, max_length=160)
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
        verdict: dict[str, Any] | None = None
        if held_q:
            verdict = decide(per_query(partial(score_pairs, model), held_q, candidates, labels))
            settings["blend"] = verdict["blend"]
        model.save(str(tmp))
        records = [g.pairs for q in sorted(groups) for g in groups[q]]
        training = {
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
        }
        metrics = _metrics(verdict)
        manifest = write_model_manifest(
            tmp, "reranker", name, base, settings=settings, training=training, metrics=metrics
        )
    return {**manifest, "adoption": _adopt(kb, dest, name, manifest, verdict)}


def _metrics(verdict: dict[str, Any] | None) -> dict[str, Any]:
    """What the manifest records of the held-out evaluation (nothing without held-out queries)."""
    if verdict is None:
        return {}
    gate = {k: verdict[k] for k in ("adopt", "before", "after", "difference_ci95", "queries")}
    return {"heldout_queries": verdict["queries"], "heldout_ndcg@10": verdict["scores"], "gate": gate}


def _adopt(kb: Any, dest: str | Path, name: str, manifest: dict[str, Any], verdict: dict[str, Any] | None) -> Any:
    """Record the gate's decision in the collection (see :mod:`rag.models.adoption`); returns the decision."""
    registered = (
        kb.model_root is not None and Path(dest).resolve() == model_dir("reranker", name, kb.model_root).resolve()
    )
    if verdict is None:
        adopt, reason = False, "fewer than 100 training queries: none held out to show it beats the first stage"
    elif verdict["adopt"]:
        adopt = True
        lo, hi = verdict["difference_ci95"]
        reason = (
            f"held-out nDCG@10 {verdict['after']} against {verdict['before']} for the first stage "
            f"(95% interval of the gain over {verdict['queries']} queries: {lo:+.4f} to {hi:+.4f})"
        )
    else:
        adopt = False
        lo, hi = verdict["difference_ci95"]
        reason = (
            f"held-out nDCG@10 {verdict['after']} against {verdict['before']} for the first stage: the 95% interval of "
            f"the gain over {verdict['queries']} queries, {lo:+.4f} to {hi:+.4f}, does not rule out no gain"
        )
    evidence = {k: v for k, v in (verdict or {}).items() if k != "adopt"}
    if not registered:
        return {
            "adopted": False,
            "reason": f"{reason}; saved outside the collection, so not adopted",
            "evidence": evidence,
        }
    return adoption.record(kb.model_root, "reranker", name, manifest, adopt, reason, evidence, by="rag train reranker")


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
