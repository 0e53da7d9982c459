"""Verifier: claim splitting, the lexical signal, planted-error training data, a verifier trained here and
loaded by name, NLI label mapping for Hugging Face models, and the train / models CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import ConfigError, SourceError
from rag.models.verify import FEATURES, NLIVerifier, lexical_signal, split_claims
from rag.text.sentences import split_sentences
from rag.types import Doc, Hit
from tests.support import DATA
from tests.support.cli import rag

QA = DATA / "qa"


def test_claims_keep_their_citations() -> None:
    claims = split_claims(
        "The tower opened in 1889 [1]. It is 330 m tall [2, 3]; it stands in Paris. Dr. Smith agreed."
    )
    assert claims == [
        ("The tower opened in 1889.", ("1",)),
        ("It is 330 m tall", ("2", "3")),
        ("it stands in Paris.", ()),
        ("Dr. Smith agreed.", ()),
    ]
    assert split_sentences("Doses, e.g. 5 mg, vary. Ask first.") == ["Doses, e.g. 5 mg, vary.", "Ask first."]
    assert split_claims("") == []


def test_lexical_signal_catches_changed_numbers() -> None:
    premise = "The Eiffel Tower was completed in 1889 and is 330 metres tall."
    good = lexical_signal("The tower was completed in 1889.", premise)
    assert good["coverage"] == 1.0 and good["any_number_missing"] == 0.0 and good["any_name_missing"] == 0.0
    bad = lexical_signal("The tower was completed in 1901.", premise)
    assert bad["any_number_missing"] == 1.0 and bad["numbers_missing"] == pytest.approx(1 / 3)
    assert 0.5 < bad["coverage"] < 1.0  # the words match; the number is the one missing term
    name = lexical_signal("The Eiffel Tower was completed by Gustave in 1889.", premise)
    assert name["any_name_missing"] == 1.0 and name["any_number_missing"] == 0.0


def test_calibrator_settings_round_trip_and_stale_features() -> None:
    from rag.models.verify import LEXICAL, Calibrator

    rows = [{"coverage": c, "bias": 1.0} for c in (0.1, 0.2, 0.8, 0.9)]
    cal = Calibrator.fit(rows, [0, 0, 1, 1], features=("coverage", "bias"))
    assert cal({"coverage": 0.95, "bias": 1.0}) > 0.5 > cal({"coverage": 0.05, "bias": 1.0})
    again = Calibrator.from_settings({"calibrator": cal.weights, "features": list(cal.features)})
    assert again == cal
    assert Calibrator.from_settings({}) is None
    with pytest.raises(ConfigError, match="retrain"):
        Calibrator.from_settings({"calibrator": [1.0, 2.0], "features": ["coverage", "old_feature"]})
    assert len(LEXICAL.weights) == len(LEXICAL.features)


def test_lexical_only_verifier_ranks_support() -> None:
    hits = [Hit(Doc("The Eiffel Tower was completed in 1889 in Paris.", id="e"), 1.0, "bm25")]
    v = NLIVerifier(None)
    good, bad = v.verify(
        "When was it completed?", "The Eiffel Tower was completed in 1889. It was completed in 1925.", hits
    )
    assert good.verdict == "supported" and good.citations == ("e",)
    assert bad.verdict != "supported" and bad.support < good.support
    assert v.verify("q", "Anything at all.", [])[0].verdict == "unsupported"
    items = [("It was completed in 1889.", ["Completed in 1889.", "Opened in 1925."]), ("Paris.", ["In Paris."])]
    batched = v.score_many(items)  # one model pass over every pair: the same scores as one claim at a time
    assert [[p for p, _ in row] for row in batched] == [[p for p, _ in v.score(h, ps)] for h, ps in items]


def test_planted_error_claims() -> None:
    from rag.train.claims import build_claims

    claims = build_claims(QA, max_questions=50)
    assert len(claims) % 3 == 0 and len(claims) >= 18
    for sup, con, uns in zip(claims[::3], claims[1::3], claims[2::3], strict=True):
        assert (sup.label, con.label, uns.label) == (0, 2, 1)
        assert sup.claim != con.claim and sup.passages == con.passages and sup.gold == 0
        assert uns.claim == sup.claim and sup.passages[0] not in uns.passages


def test_swaps_within_the_passage_and_groups_by_question() -> None:
    """``hard`` adds a fourth claim whose wrong answer comes from the gold passage itself; every question's claims
    become one ``contrast`` group, supported first."""
    from rag.train.claims import PLANTED, build_claims, by_question, to_groups

    claims = build_claims(QA, max_questions=50, hard=True)
    questions = by_question(claims)
    assert [ex.label for ex in questions[0][:3]] == [0, 2, 1]
    inner = [qs[3] for qs in questions if len(qs) == 4]
    assert inner, "the fixture has passages with a second name or number"
    for qs in questions:
        assert {ex.question for ex in qs} == {qs[0].question} and qs[0].planted == ""
        assert [ex.planted for ex in qs[1:]] == list(PLANTED[: len(qs) - 1])
    for sup, hard in ((qs[0], qs[3]) for qs in questions if len(qs) == 4):
        assert hard.label == 2 and hard.passages == sup.passages and hard.claim != sup.claim
        swapped = set(hard.claim.split()) - set(sup.claim.split())
        assert swapped and all(w.strip(".,") in hard.passages[0] for w in swapped)
    groups = to_groups(claims)
    assert len(groups) == len(questions)
    assert [g.labels for g in groups] == [tuple(ex.label for ex in qs) for qs in questions]


def test_contrast_loss_rewards_the_supported_pair_outscoring_its_group() -> None:
    import torch

    from rag.train.loop import Group, _contrast_loss

    group = Group(pairs=(("p", "a"), ("p", "b"), ("q", "a")), labels=(0, 2, 1))
    right = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 0.0]])
    swapped_support = right.clone()
    swapped_support[:, 0] = torch.tensor([0.0, 3.0, 0.0])  # the planted claim scores "supported" highest
    assert float(_contrast_loss(right, [group])) < 0.2 < float(_contrast_loss(swapped_support, [group]))
    single = Group(pairs=(("p", "a"),), labels=(1,))  # nothing to contrast: class loss only
    loss = _contrast_loss(torch.tensor([[0.0, 0.0, 0.0]]), [single])
    assert abs(float(loss) - float(torch.log(torch.tensor(3.0)))) < 1e-6


def test_not_a_qa_folder(tmp_path: Path) -> None:
    from rag.train.claims import build_claims

    with pytest.raises(SourceError, match=r"answers\.jsonl"):
        build_claims(tmp_path)


@pytest.mark.slow
@pytest.mark.model
def test_trained_verifier_by_name_and_hf_label_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.models.registry import list_models, model_dir
    from rag.train.loop import TrainConfig, new_cross_encoder
    from rag.train.verifier import train_verifier

    monkeypatch.setenv("PILOTFISH_MODELS", str(tmp_path / "home"))
    dest = model_dir("verifier", "default")
    m = train_verifier(
        [QA], dest=dest, name="default", max_questions=40, config=TrainConfig(max_steps=2, max_length=96)
    )
    assert m["task"] == "verifier" and m["settings"]["features"] == list(FEATURES)
    assert m["training"]["objective"] == "contrast"
    assert len(m["settings"]["calibrator"]) == len(FEATURES)
    assert {"unsupported_f1", "ece"} <= set(m["metrics"]["heldout"])
    assert [x["name"] for x in list_models()] == ["default"]

    v = NLIVerifier("default")
    hits = [
        Hit(Doc("Canberra is the capital city of Australia.", id="c", meta={"title": "Canberra"}), 1.0, "bm25"),
        Hit(Doc("The first modern Olympic Games were held in Athens in 1896.", id="o"), 0.5, "bm25"),
    ]
    claims = v.verify("What is the capital of Australia?", "Canberra [1]. The Olympics began in 1896.", hits)
    assert len(claims) == 2
    for c in claims:
        assert 0.0 <= c.support <= 1.0 and c.verdict in ("supported", "unsupported", "contradicted")
        assert set(c.citations) <= {"c", "o"}

    hf = tmp_path / "mnli-like"  # a hub NLI model's label names, in another order
    ce = new_cross_encoder("default", num_labels=3, max_length=64)
    ce[0].auto_model.config.id2label = {0: "CONTRADICTION", 1: "ENTAILMENT", 2: "NEUTRAL"}
    ce.save(str(hf))
    assert NLIVerifier(str(hf))._label_index == [1, 2, 0]
    ce[0].auto_model.config.id2label = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    ce.save(str(tmp_path / "unlabelled"))
    with pytest.raises(ConfigError, match="entailment"):
        NLIVerifier(str(tmp_path / "unlabelled"))


@pytest.mark.slow
@pytest.mark.model
def test_cli_train_list_and_eval_with_rerank(tmp_path: Path) -> None:
    out = tmp_path / "verifier"
    p = rag(
        "train",
        "verifier",
        "--data",
        str(QA),
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--max-questions",
        "20",
        "--quiet",
        "--json",
    )
    assert json.loads(p.stdout)["path"] == str(out)
    again = rag("train", "verifier", "--data", str(QA), "--out", str(out), "--max-steps", "1", check=False)
    assert again.returncode == 1 and "--force" in again.stderr

    kb = tmp_path / "kb"
    rag("eval", "retrieval", "--dataset", str(DATA / "beir"), "--mode", "bm25", "--collection", str(kb), "--quiet")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("query\tdoc\tlabel\nhow often are keys rotated\td1\t1\nlunch time\td2\t1\n")
    p = rag(
        "train",
        "reranker",
        "--collection",
        str(kb),
        "--pairs",
        str(pairs),
        "--negatives",
        "1",
        "--max-steps",
        "1",
        "--quiet",
    )
    assert "trained reranker 'default'" in p.stdout
    listed = json.loads(rag("models", "list", "--collection", str(kb), "--json").stdout)
    assert [(m["task"], m["name"], m["where"]) for m in listed if m["where"] == "collection"] == [
        ("reranker", "default", "collection")
    ]
    res = json.loads(
        rag(
            "eval",
            "retrieval",
            "--dataset",
            str(DATA / "beir"),
            "--mode",
            "bm25",
            "--collection",
            str(kb),
            "--rerank",
            "default",
            "--json",
            "--quiet",
        ).stdout
    )
    assert res["rerank"] == "default" and 0.0 <= res["ndcg@10"] <= 1.0
    bad = rag("train", "reranker", "--collection", str(kb), "--qrels", str(tmp_path), "--quiet", check=False)
    assert bad.returncode == 1 and "qrels/train.tsv" in bad.stderr
