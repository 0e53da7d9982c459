"""The gate and adoption: a trained reranker is used by default only when it beat the unadapted first stage on
queries it did not train on; the decision, its evidence and rejections are recorded in the collection."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.types import Doc, Hit
from tests.support.fakes import Scripted

DOCS = [
    Doc("Rotate API keys every 90 days in the admin console.", id="keys", meta={"title": "Key rotation"}),
    Doc("The cafeteria serves lunch from noon until two.", id="lunch", meta={"title": "Lunch"}),
    Doc("Passwords need at least 12 characters and a symbol.", id="pw", meta={"title": "Passwords"}),
    Doc("Connect to the VPN before opening internal dashboards.", id="vpn", meta={"title": "VPN"}),
    Doc("Expense receipts must be submitted within 30 days.", id="exp", meta={"title": "Expenses"}),
]


def _candidates(n_queries: int) -> tuple[dict[str, str], dict[str, list[Hit]], dict[str, dict[str, int]]]:
    """Queries whose relevant document the first stage ranks third of five."""
    queries, cands, qrels = {}, {}, {}
    for i in range(n_queries):
        order = ["a", "b", "rel", "c", "d"]
        queries[f"q{i}"] = f"question {i}"
        cands[f"q{i}"] = [Hit(Doc(f"{d} text", id=f"{i}-{d}"), 1.0 / (r + 1), "hybrid") for r, d in enumerate(order)]
        qrels[f"q{i}"] = {f"{i}-rel": 1}
    return queries, cands, qrels


def test_the_gate_adopts_a_reranker_that_beats_the_first_stage_and_rejects_one_that_does_not() -> None:
    from rag.train.gate import decide, per_query

    queries, cands, qrels = _candidates(20)
    good = decide(
        per_query(lambda q, texts: [1.0 if t.startswith("rel") else 0.0 for t in texts], queries, cands, qrels)
    )
    assert good["adopt"] and good["after"] > good["before"] and good["queries"] == 20
    assert good["difference_ci95"][0] > 0  # every query gained
    bad = decide(
        per_query(lambda q, texts: [-1.0 if t.startswith("rel") else 0.0 for t in texts], queries, cands, qrels)
    )
    assert not bad["adopt"] and bad["after"] <= bad["before"]
    same = decide(per_query(lambda q, texts: [0.0] * len(texts), queries, cands, qrels))
    assert not same["adopt"]  # no better is not better: ties keep the unadapted pipeline


@pytest.fixture(scope="module")
def trained_kb(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    """A closed collection with a reranker trained (two steps) on four labelled queries, registered as 'default'."""
    from rag.indexers.collection import Collection
    from rag.models.registry import model_dir
    from rag.train.loop import TrainConfig
    from rag.train.reranker import train_reranker

    path = tmp_path_factory.mktemp("adopt") / "kb"
    pairs = path.parent / "pairs.jsonl"
    rows = [("how often do api keys rotate", "keys"), ("when is lunch served", "lunch"),
            ("password length rules", "pw"), ("deadline for receipts", "exp")]  # fmt: skip
    pairs.write_text("".join(json.dumps({"query": q, "doc_id": d, "label": 1}) + "\n" for q, d in rows))
    with Collection.create(path, encoder=encoder, chunk_size=0) as kb:
        kb.add(DOCS)
        m = train_reranker(
            kb,
            source={"pairs": str(pairs)},
            dest=model_dir("reranker", "default", path),
            name="default",
            negatives=2,
            config=TrainConfig(max_steps=2, max_length=64),
            progress=False,
        )
    assert not m["adoption"]["adopted"] and "none held out" in m["adoption"]["reason"]
    return path


@pytest.mark.slow
@pytest.mark.model
def test_a_model_without_held_out_evidence_is_recorded_as_rejected_and_not_used(trained_kb: Path) -> None:
    from rag.answer.pipeline import RAG
    from rag.models import adoption

    record = adoption.read(trained_kb)
    assert record["adopted"] == {} and record["decisions"][-1]["adopted"] is False
    assert adoption.adopted_model(trained_kb, "reranker") is None
    assert RAG.from_collection(trained_kb, llm=Scripted("x")).reranker is None
    named = RAG.from_collection(trained_kb, llm=Scripted("x"), reranker="default").reranker  # named: always used
    assert named is not None and named.model_name == "default"


@pytest.mark.slow
@pytest.mark.model
def test_an_adopted_reranker_is_used_by_default_until_turned_off_or_replaced(trained_kb: Path, tmp_path: Path) -> None:
    from rag.answer.pipeline import RAG
    from rag.models import adoption
    from rag.models.registry import model_dir, read_model_manifest

    kb = tmp_path / "kb"
    shutil.copytree(trained_kb, kb)
    manifest = read_model_manifest(model_dir("reranker", "default", kb), "reranker")
    evidence = {"metric": "ndcg@10", "before": 0.5, "after": 0.6, "queries": 40}
    adoption.record(kb, "reranker", "default", manifest, True, "beats the first stage", evidence)
    assert adoption.adopted_model(kb, "reranker") == "default"
    rag = RAG.from_collection(kb, llm=Scripted("Keys rotate every 90 days [1]."))
    assert rag.reranker is not None and rag.reranker.model_name == "default"
    assert "rerank" in [s["stage"] for s in rag.ask("How often do API keys rotate?").trace["stages"]]
    assert RAG.from_collection(kb, llm=Scripted("x"), adapted=False).reranker is None
    assert RAG.from_collection(kb, llm=Scripted("x"), reranker=None).reranker is None

    env = {"HF_HUB_OFFLINE": "1", "PILOTFISH_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "rag"]
    listed = subprocess.run([*cli, "models", "list", "--collection", str(kb)], capture_output=True, text=True, env=env)
    assert "ADOPTED" in listed.stdout and "0.6 against 0.5" in listed.stdout, listed.stderr
    search = [*cli, "search", "api keys", "--collection", str(kb), "--mode", "bm25", "--rerank", "auto"]
    out = subprocess.run(search, capture_output=True, text=True, env=env)
    assert "reranked by default" in out.stdout, out.stderr
    off = subprocess.run([*search, "--adapted", "off"], capture_output=True, text=True, env=env)
    assert off.returncode == 0 and "reranked" not in off.stdout

    adoption.record(kb, "reranker", "default", {"checksum": "another model"}, True, "stale", evidence)
    assert adoption.adopted_model(kb, "reranker") is None  # the model on disk is not the one measured
    adoption.record(kb, "reranker", "default", manifest, False, "rejected", evidence)
    assert adoption.read(kb)["adopted"] == {} and len(adoption.read(kb)["decisions"]) == 4
