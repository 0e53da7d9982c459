"""``adapt``: fit a collection's reranker to its documents without labels, within a time budget, and adopt it
only if it beats the unadapted first stage on held-out pseudo-queries.

Four stages, each saved in ``<collection>/models/.adapt/`` when done, so a run that is interrupted resumes where
it stopped when started again with the same settings (training itself restarts from its beginning):

1. ``data``: pseudo-queries from the documents (:mod:`rag.train.pseudo`: a sentence or the title, cut out of its
   document), split by document into training and held-out ones; the :class:`~rag.train.pseudo.Shadow` first
   stage; hard negatives mined from it (:func:`rag.train.reranker_data.mine`) and the held-out queries'
   candidates.
2. ``training``: the listwise loop of ``rag train reranker`` from the shipped MiniLM, stopped when the budget,
   less the time the gate will need (measured before training), is spent.
3. ``gate``: :func:`rag.train.gate.decide` on the held-out pseudo-queries, against the shadow's hybrid.
4. ``adopt``: an adopted model replaces ``models/reranker/<name>`` and :mod:`rag.models.adoption` records it; a
   rejected one is deleted, its scores kept in the decision, and a model adopted before stays adopted.

A GPU is used when torch sees one. The budget counts from the start of each run.

Example:
    >>> report = adapt(Collection.open("./kb"), AdaptConfig(minutes=20))   # doctest: +SKIP
    >>> report["adopted"], report["rejected"]                               # doctest: +SKIP
    (['reranker'], [])
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.models import adoption, feedback
from rag.models.registry import data_hash, model_dir, write_model_manifest, writing_model
from rag.models.rerank import passage_text, score_pairs
from rag.train.gate import decide, per_query
from rag.train.loop import Group, TrainConfig, fit, new_cross_encoder
from rag.train.pseudo import SOURCES, Shadow, by_document, pseudo_queries
from rag.train.reranker_data import mine, synthesize
from rag.types import Doc, Hit

WORK = ".adapt"
MIN_HELDOUT = 20
FEEDBACK_WEIGHT = 4  # a judged question's groups are seen this many times per pass: real labels count for more


@dataclass
class AdaptConfig:
    """Settings of one ``adapt`` run (``rag adapt`` flags of the same names)."""

    minutes: float = 20.0
    sources: tuple[str, ...] = SOURCES
    train_queries: int = 2000
    heldout_queries: int = 200
    negatives: int = 3
    depth: int = 30
    base: str = "default"
    llm: str | None = None  # also train on queries this LLM writes (local, hf:..., openai:...): InPars style
    llm_queries: int = 200
    max_length: int = 160
    lr: float = 7e-5
    max_steps: int = 0
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    keep_rejected: bool = False  # save a rejected candidate as ``<name>-rejected`` (registered, never adopted)
    started: float = field(default_factory=time.monotonic)

    def plan(self, kb: Any) -> dict[str, Any]:
        """What decides the saved stages: a run resumes only from stages made with the same plan."""
        keep = ("sources", "train_queries", "heldout_queries", "negatives", "depth", "base", "max_length", "seed",
                "llm", "llm_queries")  # fmt: skip
        plan = {k: v for k, v in asdict(self).items() if k in keep}
        judged = len(feedback.read(kb.model_root))
        return json.loads(json.dumps({**plan, "generation": kb.generation, "feedback": judged}))  # tuples -> lists

    def left(self) -> float:
        return self.minutes * 60 - (time.monotonic() - self.started)


def _say(config: AdaptConfig, stage: int, what: str) -> None:
    if config.progress:
        used = time.monotonic() - config.started
        print(
            f"[{stage}/4] {what} ({used / 60:.1f} min used, {max(0.0, config.left()) / 60:.1f} left)", file=sys.stderr
        )


class _Work:
    """The folder of a run's finished stages (``<collection>/models/.adapt``)."""

    def __init__(self, root: Path, plan: dict[str, Any], restart: bool) -> None:
        self.path = root / "models" / WORK
        saved = self.read("plan")
        if restart or saved != plan:
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self.write("plan", plan)

    def read(self, stage: str) -> Any:
        f = self.path / f"{stage}.json"
        try:
            return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
        except ValueError:
            return None  # a stage cut off while written is done again

    def write(self, stage: str, value: Any) -> None:
        tmp = self.path / f".{stage}.json.tmp"
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.path / f"{stage}.json")


def adapt(
    kb: Any, config: AdaptConfig | None = None, *, name: str = "adapted", restart: bool = False, generator: Any = None
) -> dict:
    """Adapt the collection's reranker from its own text (module docstring). ``generator`` writes queries in place
    of the LLM ``config.llm`` names. Returns the report that ``rag adapt --json`` prints: every candidate with its
    held-out scores, ``adopted`` and ``rejected``."""
    config = replace(config or AdaptConfig(), started=time.monotonic())  # the budget counts from here
    if kb.model_root is None:
        raise ConfigError(
            f"collection {kb.location} keeps no models, so it cannot adopt one; adapt a collection folder"
        )
    work = _Work(Path(kb.model_root), config.plan(kb), restart)
    resumed = [s for s in ("data", "training", "gate") if work.read(s) is not None]
    if "data" not in resumed:
        _say(config, 1, "pseudo-queries, first stage and hard negatives")
        work.write("data", _data(kb, config, generator))
    data = work.read("data")
    if "training" not in resumed:
        _say(config, 2, f"training a reranker on {len(data['groups'])} groups")
        work.write("training", _train(work.path / "model", data, config))
    if "gate" not in resumed:
        _say(config, 3, f"gate: {len(data['heldout'])} held-out pseudo-queries")
        work.write("gate", _gate(work.path / "model", data, config))
    _say(config, 4, "decision")
    report = _decide(kb, work, name, config, data)
    shutil.rmtree(work.path, ignore_errors=True)
    return {**report, "resumed": resumed}


def _data(kb: Any, config: AdaptConfig, generator: Any = None) -> dict[str, Any]:
    """Stage 1: pseudo-queries, the shadow first stage, training groups and held-out candidates."""
    chunks, vectors = kb.chunk_vectors()
    pseudo = pseudo_queries(by_document(chunks), config.train_queries + config.heldout_queries, config.sources,
                            config.seed)  # fmt: skip
    n_held = min(config.heldout_queries, len(pseudo) // 5)
    if n_held < MIN_HELDOUT:
        raise ConfigError(
            f"collection {kb.location} is too small to adapt: its {len(kb.ids())} documents gave {len(pseudo)} "
            f"pseudo-queries; {5 * MIN_HELDOUT} are needed ({MIN_HELDOUT} held out to judge the result)"
        )
    held, train = pseudo[:n_held], pseudo[n_held:]
    shadow = Shadow(kb, chunks, pseudo, vectors, seed=config.seed, progress=config.progress)
    shadow.encode_queries([p.query for p in pseudo], progress=config.progress)
    judged_q, judged = feedback.labels(kb.model_root)  # users' judgements of cited documents: real labels
    written_q, written, counts = _written(shadow, config, [p.doc for p in train], generator)
    queries = {**{p.qid: p.query for p in pseudo}, **judged_q, **written_q}
    labels = {**{p.qid: {p.doc: 1} for p in pseudo}, **judged, **written}
    groups, candidates = mine(
        shadow, queries, labels, negatives=config.negatives, depth=config.depth, seed=config.seed,
        progress=config.progress,
    )  # fmt: skip
    if sum(p.qid in candidates for p in held) < MIN_HELDOUT:
        raise ConfigError(
            f"collection {kb.location}: fewer than {MIN_HELDOUT} held-out pseudo-queries found candidates to rerank; "
            "index more documents before adapting"
        )
    return {
        "pseudo": [{**p.to_dict(), "heldout": i < n_held} for i, p in enumerate(pseudo)],
        "groups": [[list(pair) for pair in g.pairs] for p in train for g in groups.get(p.qid, [])]
        + [[list(pair) for pair in g.pairs] for q in judged_q for g in groups.get(q, [])] * FEEDBACK_WEIGHT
        + [[list(pair) for pair in g.pairs] for q in written_q for g in groups.get(q, [])],
        "llm_queries": counts,
        "feedback_questions": sum(q in groups for q in judged_q),
        "heldout": {
            p.qid: [[str(h.doc.meta.get("parent", h.doc.id)), passage_text(h)] for h in candidates[p.qid]]
            for p in held
            if p.qid in candidates
        },
    }


def _written(
    shadow: Shadow, config: AdaptConfig, among: list[str], generator: Any
) -> tuple[dict, dict, dict[str, Any]]:
    """Queries the LLM writes for training documents (never the held-out ones), kept when the shadow's hybrid
    finds their document in its top 10; nothing without ``config.llm``."""
    if not config.llm and generator is None:
        return {}, {}, {}
    if generator is None:
        from rag.models.generate import make_generator

        generator = make_generator(config.llm)
    queries, labels, counts = synthesize(
        shadow, config.llm_queries, generator, seed=config.seed, progress=config.progress, among=among
    )
    return queries, labels, {**counts, "llm": config.llm or getattr(generator, "name", type(generator).__name__)}


def _gate_pairs_per_second(model: Any, data: dict[str, Any]) -> float:
    """How fast the model scores pairs here (timed on a few held-out candidates before training)."""
    some = next(iter(data["heldout"].items()))
    query = next(p["query"] for p in data["pseudo"] if p["qid"] == some[0])
    passages = [t for _, t in some[1]][:32]
    t0 = time.perf_counter()
    score_pairs(model, query, passages)
    return len(passages) / max(1e-3, time.perf_counter() - t0)


def _train(dest: Path, data: dict[str, Any], config: AdaptConfig) -> dict[str, Any]:
    """Stage 2: train within the budget left after the gate's share; the model is saved at ``dest``."""
    model = new_cross_encoder(config.base, num_labels=1, max_length=config.max_length)
    pairs = sum(len(c) for c in data["heldout"].values())
    gate_seconds = 1.2 * pairs / _gate_pairs_per_second(model, data) + 15
    seconds = config.left() - gate_seconds
    if seconds < 30 and not config.max_steps:
        raise ConfigError(
            f"--minutes {config.minutes:g} leaves {max(0.0, seconds):.0f} s to train after preparing the data and "
            f"reserving {gate_seconds:.0f} s for the gate; give more minutes (the default is 20)"
        )
    groups = [Group(pairs=tuple((q, t) for q, t in g)) for g in data["groups"]]
    cfg = TrainConfig(epochs=1.0, lr=config.lr, max_length=config.max_length, max_steps=config.max_steps,
                      max_seconds=max(1.0, seconds), seed=config.seed, threads=config.threads,
                      progress=config.progress)  # fmt: skip
    stats = fit(model, groups, "listwise", cfg)
    shutil.rmtree(dest, ignore_errors=True)
    model.save(str(dest))
    device = str(model[0].auto_model.device)
    return {"steps": stats.steps, "groups": len(groups), "seconds": stats.seconds, "final_loss": stats.final_loss,
            "device": device, "gate_reserved_seconds": round(gate_seconds, 1)}  # fmt: skip


def _gate(path: Path, data: dict[str, Any], config: AdaptConfig) -> dict[str, Any]:
    """Stage 3: the gate's verdict on the held-out pseudo-queries."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), max_length=config.max_length)
    queries = {p["qid"]: p["query"] for p in data["pseudo"] if p["qid"] in data["heldout"]}
    labels = {p["qid"]: {p["doc"]: 1} for p in data["pseudo"]}
    candidates = {
        q: [Hit(Doc(text, id=f"{parent}#{i}", meta={"parent": parent}), 0.0, "shadow") for i, (parent, text) in
            enumerate(hits)]
        for q, hits in data["heldout"].items()
    }  # fmt: skip
    return decide(per_query(partial(score_pairs, model), queries, candidates, labels, depth=config.depth))


def _decide(kb: Any, work: _Work, name: str, config: AdaptConfig, data: dict[str, Any]) -> dict[str, Any]:
    """Stage 4: adopt (the model replaces ``models/reranker/<name>``) or reject, record it, and report."""
    trained, verdict = work.read("training"), work.read("gate")
    sources = sorted({p["source"] for p in data["pseudo"]})
    counts = {s: sum(p["source"] == s for p in data["pseudo"]) for s in sources}
    n_held = len(data["heldout"])
    evidence = {**{k: v for k, v in verdict.items() if k != "adopt"}, "queries_kind": "held-out pseudo-queries"}
    lo, hi = verdict["difference_ci95"]
    gain = f"{verdict['after']} against {verdict['before']} (95% interval of the gain {lo:+.4f} to {hi:+.4f})"
    candidate = {
        "task": "reranker",
        "name": name,
        "pseudo_queries": {"train": len(data["pseudo"]) - n_held, "heldout": n_held, "by_source": counts},
        "feedback_questions": data["feedback_questions"],
        "llm_queries": data["llm_queries"],
        "training": trained,
        "heldout": evidence,
    }
    if verdict["adopt"]:
        reason = f"held-out pseudo-query nDCG@10 {gain}"
        manifest = _commit(kb, work.path / "model", name, config, data, trained, verdict)
        decision = adoption.record(kb.model_root, "reranker", name, manifest, True, reason, evidence, by="rag adapt")
    else:
        reason = f"held-out pseudo-query nDCG@10 {gain}: no sure gain over the unadapted first stage"
        decision = adoption.record(kb.model_root, "reranker", name, {}, False, reason, evidence, by="rag adapt",
                                   withdraw=False)  # fmt: skip
        if config.keep_rejected:
            _commit(kb, work.path / "model", f"{name}-rejected", config, data, trained, verdict)
    return {
        "collection": kb.location,
        "minutes": config.minutes,
        "seconds": round(time.monotonic() - config.started, 1),
        "candidates": [candidate],
        "adopted": ["reranker"] if decision["adopted"] else [],
        "rejected": [] if decision["adopted"] else [{"task": "reranker", "name": name, "reason": reason}],
    }


def _commit(
    kb: Any, src: Path, name: str, config: AdaptConfig, data: dict[str, Any], trained: dict, verdict: dict
) -> dict[str, Any]:
    """Move the adopted candidate into ``models/reranker/<name>`` with its manifest; returns the manifest."""
    dest = model_dir("reranker", name, kb.model_root)
    with writing_model(dest, force=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        training = {"source": "adapt", "sources": list(config.sources), "data_sha256": data_hash(data["groups"]),
                    "collection": kb.location, "epochs": 1.0, "lr": config.lr, **trained}  # fmt: skip
        gate = {k: verdict[k] for k in ("adopt", "before", "after", "difference_ci95", "queries")}
        metrics = {"heldout_queries": verdict["queries"], "heldout_ndcg@10": verdict["scores"], "gate": gate}
        settings = {"blend": verdict["blend"], "max_length": config.max_length}
        return write_model_manifest(tmp, "reranker", name, config.base, settings=settings, training=training,
                                    metrics=metrics)  # fmt: skip
