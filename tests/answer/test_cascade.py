"""The cascade: an extractive level with no LLM, escalation on low confidence, the budget, and the
cost/quality curve of ``evaluate_cascade`` on a small QA folder."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rag.answer.cascade import Cascade, Confidence, Extractive, evaluate_cascade, signals
from rag.answer.pipeline import RAG
from rag.datasets import load_answers, load_beir
from rag.eval.qa import exact_match, token_f1
from rag.models.verify import NLIVerifier
from tests.support import DATA
from tests.support.cli import KEYS_Q
from tests.support.fakes import Scripted


def test_answer_metrics() -> None:
    assert exact_match("The Denver Broncos [1].", ["Denver Broncos"]) == 1.0
    assert token_f1("It was the Denver Broncos [1].", ["Denver Broncos"]) == pytest.approx(2 / 3)
    assert token_f1("", ["x"]) == 0.0 and token_f1("Paris", ["London", "paris"]) == 1.0


def test_extractive_level_quotes_the_evidence(docs_kb: Any) -> None:
    ext = Extractive(RAG(docs_kb.retriever("bm25"), None, verifier=NLIVerifier(None)))
    a = ext.ask(KEYS_Q)
    assert a.text == "API keys must be rotated every 90 days. [1]" and a.hits[0].doc.id == "security.md"
    assert a.claims[0].verdict == "supported"
    s = signals(KEYS_Q, a, None)
    assert s["support_mean"] >= 0.5 and s["overlap"] > 0.5 and s["agreement"] == 0.0


def test_cascade_escalates_on_low_confidence_and_respects_the_budget(docs_kb: Any) -> None:
    verifier = NLIVerifier(None)
    ext = Extractive(RAG(docs_kb.retriever("bm25"), None, verifier=verifier))
    gen = Scripted("The moon is made of green cheese [1].")
    llm = RAG(docs_kb.retriever("bm25"), gen, verifier=verifier)
    levels = [("extractive", ext, 0.0), ("llm", llm, 1.0)]
    cheap = Cascade(levels, threshold=0.5).ask(KEYS_Q)
    assert not cheap.abstained and [s["level"] for s in cheap.trace["cascade"]] == ["extractive"]
    assert gen.prompts == [] and cheap.trace["cost"] == 0.0
    strict = Cascade(levels, threshold=0.999).ask(KEYS_Q)
    assert strict.abstained and [s["level"] for s in strict.trace["cascade"]] == ["extractive", "llm"]
    assert "no level reached confidence" in strict.text and len(gen.prompts) == 1
    capped = Cascade(levels, threshold=0.999, budget=0.5).ask(KEYS_Q)
    assert capped.abstained and [s["level"] for s in capped.trace["cascade"]] == ["extractive"]


def test_cost_quality_curve(tmp_path: Any) -> None:
    from rag.indexers.collection import Collection

    data = load_beir(DATA / "qa")
    answers = load_answers(DATA / "qa" / "answers.jsonl")
    kb = Collection.create(tmp_path / "kb", encoder=None, chunk_size=0)
    kb.add(data.corpus)
    verifier = NLIVerifier(None)
    ext = Extractive(RAG(kb.retriever("bm25"), None, verifier=verifier))
    llm = RAG(kb.retriever("bm25"), Scripted("I don't know based on the evidence."), verifier=verifier)
    res = evaluate_cascade([("extractive", ext, 0.0), ("llm", llm, 1.0)], data.queries, answers)
    n = res["questions"]
    assert n == len(answers) and res["levels"] == ["extractive", "llm"]
    assert 0.0 < res["alone"]["extractive"]["f1"] < 1.0 and res["alone"]["llm"]["f1"] == 0.0
    for row in res["curve"]:
        assert sum(row["answered_by"].values()) + row["abstained"] == n
        assert row["answered_by"]["llm"] == 0  # the LLM level always abstained
    assert res["curve"][0]["abstained"] <= res["curve"][-1]["abstained"]  # higher thresholds answer less
    conf = Confidence(res["confidence"])
    s = signals("When was the Eiffel Tower completed?", ext.ask("When was the Eiffel Tower completed?"), None)
    assert 0.0 <= conf("extractive", s) <= 1.0
    assert conf("llm", s) < 0.05  # the LLM level was never right: a constant low confidence
    kb.close()


@pytest.mark.slow
def test_cli_ask_cascade_and_eval_cascade(tmp_path: Any) -> None:
    from tests.support.cli import rag

    kb = tmp_path / "kb"
    rag("index", str(DATA / "docs"), "--collection", str(kb), "--encoder", "none", "--quiet")
    out = json.loads(
        rag("ask", KEYS_Q, "--collection", str(kb), "--mode", "bm25", "--cascade", "extractive", "--json").stdout
    )
    assert not out["abstained"] and out["text"].startswith("API keys must be rotated every 90 days")
    assert [s["level"] for s in out["trace"]["cascade"]] == ["extractive"]
    p = rag("eval", "cascade", "--dataset", str(DATA / "qa"), "--levels", "extractive", "--mode", "bm25",
            "--quiet", "--target", "0.3")  # fmt: skip
    assert "extractive alone: F1" in p.stdout and "threshold" in p.stdout and "target F1" in p.stdout
    bad = rag("eval", "cascade", "--dataset", str(DATA / "qa"), "--levels", "extractive,gpt:4", "--mode", "bm25",
              "--quiet", check=False)  # fmt: skip
    assert bad.returncode == 1 and "unknown cascade level 'gpt:4'" in bad.stderr
