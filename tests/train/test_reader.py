"""``rag train reader``: SQuAD-style data to token targets, article-level hold-out, no-answer pairs, a short real
training run from the shipped MiniLM into the model home, and ``rag ask --llm none`` answering with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.errors import ConfigError
from rag.train.reader import QAExample, article_of, features, load_examples, split_articles, with_unanswerable
from tests.support import DATA
from tests.support.cli import KEYS_Q, rag


def squad_like(root: Path) -> Path:
    """A QA folder with SQuAD's id scheme: two articles of three paragraphs, one question per paragraph."""
    facts = {
        "Tower": ["The tower opened in 1889.", "It is 330 metres tall.", "Gustave Eiffel's company built it."],
        "Fuji": ["Fuji is 3,776 metres high.", "It last erupted in 1707.", "It lies on Honshu island."],
    }
    questions = {
        "Tower": ["When did it open?", "How tall is it?", "Whose company built it?"],
        "Fuji": ["How high is Fuji?", "When did it last erupt?", "Which island is it on?"],
    }
    answers = {"Tower": ["1889", "330 metres", "Gustave Eiffel"], "Fuji": ["3,776 metres", "1707", "Honshu"]}
    (root / "qrels").mkdir(parents=True)
    corpus, queries, qrels, golds = [], [], ["query-id\tcorpus-id\tscore"], []
    for art, paras in facts.items():
        for i, text in enumerate(paras):
            pid, qid = f"{art}_{i}", f"{art}_{i}_q0"
            corpus.append({"_id": pid, "title": art, "text": text})
            queries.append({"_id": qid, "text": questions[art][i]})
            qrels.append(f"{qid}\t{pid}\t1")
            golds.append({"_id": qid, "answers": [answers[art][i]]})
    for name, rows in (("corpus", corpus), ("queries", queries), ("answers", golds)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "qrels" / "train.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root


def test_examples_targets_and_holdout(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from rag.models.encoders import resolve_model_path

    examples, paragraphs = load_examples(squad_like(tmp_path / "qa"))
    assert len(examples) == 6 and article_of("Tower_2") == "Tower" and article_of("p0") == "p0"
    assert {e.article for e in examples} == {"Tower", "Fuji"} and len(paragraphs["Fuji"]) == 3
    train, held = split_articles(examples, heldout=2, seed=0)
    assert len(held) == 3 and len({e.article for e in held}) == 1  # whole articles, never split
    assert not {e.article for e in held} & {e.article for e in train}
    extra = with_unanswerable(train, paragraphs, share=1.0, seed=0)
    negatives = [e for e in extra if e.start < 0]
    assert len(negatives) == 3 and all(e.answer not in e.context for e in negatives)
    tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    long = QAExample("x", "What is it?", "word " * 80 + "the answer is Honshu island.", "Honshu", 0, "a")
    long = QAExample(long.qid, long.question, long.context, "Honshu", long.context.index("Honshu"), "a")
    feats = features(tok, [*extra, long], max_length=40, stride=10)
    for f, e in zip(feats, [*extra], strict=False):  # the first windows: one per short example
        s, t = f["start_positions"], f["end_positions"]
        text = tok.decode(f["input_ids"][s : t + 1]) if s else ""
        assert (text == e.answer.lower()) if e.start >= 0 else (s, t) == (0, 0)
    windows = feats[len(extra) :]
    assert len(windows) > 1 and sum(f["start_positions"] > 0 for f in windows) >= 1  # only windows holding it
    assert tok.decode(next(f for f in windows if f["start_positions"])["input_ids"]).count("honshu") == 1
    with pytest.raises(ConfigError, match=r"no answers\.jsonl"):
        load_examples(DATA / "beir")


@pytest.mark.slow
def test_train_reader_then_ask_without_an_llm(tmp_path: Path, docs_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("PILOTFISH_MODELS", str(tmp_path / "home"))
    data = squad_like(tmp_path / "qa")
    p = rag("train", "reader", "--data", str(data), "--data", str(DATA / "qa"), "--max-steps", "3", "--heldout", "3",
            "--batch", "4", "--minutes", "5", "--json", "--quiet")  # fmt: skip
    m = json.loads(p.stdout)
    assert m["task"] == "reader" and m["name"] == "default" and Path(m["path"]).is_dir()
    total = 6 + len(load_examples(DATA / "qa")[0])
    assert m["training"]["steps"] == 3 and 3 <= m["training"]["heldout_questions"] < total
    assert m["training"]["questions"] + m["training"]["heldout_questions"] == total
    assert len(m["training"]["data_sha256"]) == 64 and m["metrics"]["questions"] == m["training"]["heldout_questions"]
    assert set(m["metrics"]) >= {"gold_paragraph", "among_5_paragraphs", "questions"}
    assert m["settings"]["max_length"] == 256 and m["settings"]["calibration"] is None  # too few to fit one
    assert "reader" in rag("models", "list").stdout

    rag("index", str(docs_dir), "--collection", str(tmp_path / "kb"), "--encoder", "none")
    out = json.loads(rag("ask", KEYS_Q, "--collection", str(tmp_path / "kb"), "--llm", "none", "--json").stdout)
    stages = [s["stage"] for s in out["trace"]["stages"]]
    assert "read" in stages and "generate" not in stages
    if not out["abstained"]:  # three steps teach little, but a span is always a quote of the passage it cites
        span, cited = out["text"].rsplit(" [", 1)
        assert span in out["hits"][int(cited.rstrip("]")) - 1]["text"]


def test_a_calibrator_is_kept_only_when_it_lowers_the_held_out_error() -> None:
    from rag.models.reader import Span
    from rag.train.reader import evaluate_reader

    held = [QAExample(f"q{i}", f"question {i}?", f"passage {i} answer{i}", f"answer{i}", 0, f"a{i}") for i in range(80)]

    class Fixed:
        def __init__(self, probability: Any) -> None:
            self.probability = probability

        def read(self, question: str, passages: Any, top: int = 1) -> list[Span]:
            i = int(question.split()[1].rstrip("?"))
            right = i % 10 < 3  # three in ten are right
            p = self.probability(right)
            return [Span(f"answer{i}" if right else "wrong", 0, "0", 0, 1, 2.0, 0.0, p, p)]

    overconfident, weights = evaluate_reader(Fixed(lambda right: 0.9), held, {})  # type: ignore[arg-type]
    assert overconfident["calibration"]["kept"] and weights is not None
    assert overconfident["calibration"]["ece"] < overconfident["calibration"]["ece_uncalibrated"]
    exact, none = evaluate_reader(Fixed(lambda right: 1.0 if right else 0.0), held, {})  # type: ignore[arg-type]
    assert not exact["calibration"]["kept"] and none is None and exact["calibration"]["ece_uncalibrated"] == 0.0
