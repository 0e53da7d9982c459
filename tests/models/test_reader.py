"""The extractive reader: span decoding, multi-passage competition and windows over long passages (with a QA
model whose logits are known), and the pipeline answering with the reader when there is no LLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.answer.cascade import Extractive
from rag.answer.pipeline import RAG
from rag.errors import ConfigError
from rag.models.reader import Reader, best_spans, calibrated
from rag.models.verify import NLIVerifier
from tests.support.cli import KEYS_Q, rag
from tests.support.readers import known_reader


def test_best_spans_pair_valid_starts_and_ends() -> None:
    offsets = [None, None, (0, 3), (4, 9), (10, 12), (13, 20), None]  # None: question and special tokens
    start = np.array([9.0, 9.0, 1.0, 5.0, 0.0, 4.0, 9.0])
    end = np.array([9.0, 9.0, 5.0, 0.0, 2.0, 1.0, 9.0])
    spans = best_spans(start, end, offsets, max_tokens=30)
    assert spans[0] == (7.0, 4, 12)  # start token 3, end token 4; token 3 → 2 (10.0) ends before it starts
    assert all(a < b for _, a, b in spans) and [s for s, _, _ in spans] == sorted(
        (s for s, _, _ in spans), reverse=True
    )
    assert best_spans(start, end, offsets, max_tokens=1)[0] == (6.0, 0, 3)
    assert best_spans(start, end, [None] * 7, max_tokens=30) == []


def test_the_passage_holding_the_span_is_cited(tmp_path: Path) -> None:
    reader = known_reader(tmp_path, "1889", "1889")
    passages = ["Mount Fuji is 3,776 metres high.", "The tower was completed in 1889 for the fair.", "Lima is old."]
    best = reader.read("When was the tower completed?", passages, top=2)
    assert best[0].text == "1889" and best[0].hit == 1 and best[0].doc_id == "1"
    assert passages[1][best[0].start : best[0].end] == "1889"
    assert 0.5 < best[0].probability <= 1 and best[0].confidence == best[0].probability  # no calibrator
    assert best[0].score > best[0].null_score and len(best) == 2 and best[1].score < best[0].score
    assert reader.read("", passages) == [] and reader.read("When?", []) == []


def test_a_long_passage_is_read_in_overlapping_windows(tmp_path: Path) -> None:
    reader = known_reader(tmp_path, "paris", "paris", max_length=48, stride=16)
    text = " ".join(["filler"] * 300) + " the capital is paris today"
    best = reader.read("what is the capital?", [text])
    assert best[0].text == "paris" and text[best[0].start : best[0].end] == "paris"


def test_calibration_weights_map_probability_and_margin() -> None:
    assert calibrated(None, 0.3, 5.0) == 0.3
    low, high = calibrated([4.0, 0.5, -3.0], 0.2, -2.0), calibrated([4.0, 0.5, -3.0], 0.9, 4.0)
    assert 0 < low < 0.1 < 0.9 < high < 1


def test_without_an_llm_the_reader_answers_with_a_cited_span(tmp_path: Path, docs_kb: Any) -> None:
    reader = known_reader(tmp_path, "90", "days")
    pipeline = RAG(docs_kb.retriever("bm25"), None, reader=reader, verifier=NLIVerifier(None))
    a = pipeline.ask(KEYS_Q)
    assert a.text == "90 days [1]" and a.hits[0].doc.id == "security.md" and not a.abstained
    assert a.claims[0].citations == ("security.md",)
    read = [s for s in a.trace["stages"] if s["stage"] == "read"]
    assert read and read[0]["span"]["text"] == "90 days" and "generate" not in {s["stage"] for s in a.trace["stages"]}
    events = list(pipeline.stream(KEYS_Q))
    assert [e.type for e in events] == ["hits", "token", "answer"] and events[1].text == "90 days [1]"
    assert Extractive(pipeline).ask(KEYS_Q).text == "90 days [1]"  # the cascade's cheapest level reads too


def test_the_reader_abstains_when_its_no_answer_score_wins(tmp_path: Path, docs_kb: Any) -> None:
    reader = known_reader(tmp_path, "90", "days", null=True)
    a = RAG(docs_kb.retriever("bm25"), None, reader=reader, verifier=NLIVerifier(None)).ask(KEYS_Q)
    assert a.abstained and a.trace["abstain_reason"] == "the reader found no answer in the evidence"
    assert "security.md" in {h.doc.id for h in a.hits}  # the closest evidence is still shown
    assert Extractive(RAG(docs_kb.retriever("bm25"), None, reader=reader)).ask(KEYS_Q).abstained


def test_no_llm_and_no_trained_reader_says_how_to_get_one(tmp_path: Path, docs_kb: Any, monkeypatch) -> None:
    monkeypatch.setenv("PILOTFISH_MODELS", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match="rag train reader"):
        RAG.from_collection(docs_kb, llm=None)
    with pytest.raises(ConfigError, match="neither an LLM nor a reader"):
        RAG(docs_kb.retriever("bm25"), None).ask(KEYS_Q)
    assert RAG.from_collection(docs_kb, llm="local").reader is None  # auto: no reader registered, none used


def test_cli_llm_none_without_a_reader_is_a_clear_error(tmp_path: Path, docs_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("PILOTFISH_MODELS", str(tmp_path / "home"))
    rag("index", str(docs_dir), "--collection", str(tmp_path / "kb"), "--encoder", "none")
    p = rag("ask", KEYS_Q, "--collection", str(tmp_path / "kb"), "--llm", "none", check=False)
    assert p.returncode == 1 and "error: " in p.stderr and "rag train reader" in p.stderr


def test_repair_rewrites_an_unsupported_claim_as_the_readers_span(tmp_path: Path, docs_kb: Any) -> None:
    from tests.support.fakes import Scripted

    gen = Scripted("The moon is made of green cheese [1].")  # said again when asked again: only a quote can help
    reader = known_reader(tmp_path, "90", "days")
    a = RAG(docs_kb.retriever("bm25"), gen, reader=reader, verifier=NLIVerifier(None), policy="repair").ask(KEYS_Q)
    assert not a.abstained and "cheese" not in a.text and a.text.startswith("90 days [1]")
    assert a.trace["repaired"] == ["The moon is made of green cheese."] and len(gen.prompts) == 2
    silent = known_reader(tmp_path, "90", "days", null=True)  # the reader finds no answer: nothing is left
    b = RAG(docs_kb.retriever("bm25"), gen, reader=silent, verifier=NLIVerifier(None), policy="repair").ask(KEYS_Q)
    assert b.abstained and "no claim of the answer is supported" in b.trace["abstain_reason"]


def test_qa_consistency_compares_the_readers_answer_with_the_claim() -> None:
    from rag.models.reader import QA_FEATURES, Span, qa_consistency

    span = Span("the Denver Broncos", 0, "d", 0, 18, 9.0, 1.0, 0.8, 0.9)
    assert qa_consistency("Denver Broncos won it.", span) == {"reader_agrees": 0.9, "reader_disagrees": 0.0}
    assert qa_consistency("The Carolina Panthers won it.", span) == {"reader_agrees": 0.0, "reader_disagrees": 0.9}
    unsure = Span("the Denver Broncos", 0, "d", 0, 18, 1.0, 9.0, 0.1, 0.1)  # its no-answer score wins
    assert qa_consistency("Anything.", unsure) == qa_consistency("Anything.", None) == dict.fromkeys(QA_FEATURES, 0.0)


def test_the_verifier_catches_an_answer_swapped_within_its_passage(tmp_path: Path, docs_kb: Any) -> None:
    from rag.models.reader import QA_FEATURES
    from rag.models.verify import LEXICAL, Calibrator

    hits = docs_kb.retriever("bm25").retrieve(KEYS_Q, k=3)
    assert hits[0].doc.id == "security.md"
    lexical = NLIVerifier(None)
    swapped = "They must be rotated every 24 hours."  # "24 hours" is in the same passage, not the answer
    assert "24 hours" in hits[0].doc.text and lexical.verify(KEYS_Q, swapped, hits)[0].verdict == "supported"
    calibrator = Calibrator([*LEXICAL.weights, 3.0, -8.0], LEXICAL.features + QA_FEATURES)  # hand-set weights
    qa = NLIVerifier(None, reader=known_reader(tmp_path, "90", "days"), calibrator=calibrator)
    assert qa.uses_reader and qa.verify(KEYS_Q, swapped, hits)[0].verdict != "supported"
    right = qa.verify(KEYS_Q, "They must be rotated every 90 days.", hits)[0]
    assert right.verdict == "supported" and right.citations == ("security.md",)
    with pytest.raises(ConfigError, match="give it a reader"):
        NLIVerifier(None, calibrator=calibrator)


@pytest.mark.slow
def test_an_int8_reader_reads_like_the_float_one(tmp_path: Path) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from rag.models.encoders import quiet_transformers, resolve_model_path

    quiet_transformers(errors_only=True)
    base = resolve_model_path("default")
    AutoModelForQuestionAnswering.from_pretrained(base).save_pretrained(tmp_path / "qa")  # an untrained head
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "qa")
    passages = ["The tower was completed in 1889 for the fair.", "Lima is old."]
    fp32 = Reader(tmp_path / "qa").read("When was the tower completed?", passages, top=3)
    int8 = Reader(tmp_path / "qa", int8=True)
    spans = int8.read("When was the tower completed?", passages, top=3)
    assert "quantized" in type(int8._model.qa_outputs).__module__ and len(spans) == len(fp32) == 3
    assert all(passages[s.hit][s.start : s.end] == s.text for s in spans)


def test_with_a_reader_the_lexical_verifier_weighs_its_answers(tmp_path: Path, docs_kb: Any, monkeypatch) -> None:
    from rag.answer import assemble
    from rag.models.verify_signals import LEXICAL, LEXICAL_READER

    reader = known_reader(tmp_path, "90", "days")
    with_reader = assemble.verifier("lexical", None, reader)
    assert isinstance(with_reader, NLIVerifier) and with_reader.uses_reader
    assert with_reader.calibrator is LEXICAL_READER and with_reader.reader is reader
    plain = assemble.verifier("lexical", None)
    assert isinstance(plain, NLIVerifier) and plain.calibrator is LEXICAL and not plain.uses_reader
    rag_ = RAG.from_collection(docs_kb, llm=None, reader=reader)
    assert rag_.reader is reader and rag_.verifier.uses_reader  # type: ignore[union-attr]
    assert not RAG.from_collection(docs_kb, llm="local", reader=None).verifier.uses_reader  # type: ignore[union-attr]
