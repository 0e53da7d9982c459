"""Reranker: training from pairs / qrels / synthesised queries, loading by name, path and plain HF directory,
the latency budget, the model registry and bad training input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import ConfigError, IndexFormatError, SourceError
from rag.types import Doc, Hit

pytestmark = [pytest.mark.slow, pytest.mark.model]

DOCS = [
    Doc("Rotate API keys every 90 days in the admin console.", id="keys", meta={"title": "Key rotation"}),
    Doc("The cafeteria serves lunch from noon until two.", id="lunch", meta={"title": "Lunch"}),
    Doc("Passwords need at least 12 characters and a symbol.", id="pw", meta={"title": "Passwords"}),
    Doc("Connect to the VPN before opening internal dashboards.", id="vpn", meta={"title": "VPN"}),
    Doc("Expense receipts must be submitted within 30 days.", id="exp", meta={"title": "Expenses"}),
    Doc("Laptops are replaced every three years by IT.", id="laptop", meta={"title": "Laptops"}),
    Doc("Security keys protect the admin console login.", id="seckey", meta={"title": "Security keys"}),
    Doc("Parking permits are issued by the front desk.", id="park", meta={"title": "Parking"}),
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, encoder):
    from rag.indexers.collection import Collection

    path = tmp_path_factory.mktemp("rr") / "kb"
    c = Collection.create(path, encoder=encoder, chunk_size=0)
    c.add(DOCS)
    yield c
    c.close()


@pytest.fixture(scope="module")
def trained(kb, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reranker trained for a few steps from labelled pairs, registered in the collection as 'default'."""
    from rag.models.registry import model_dir
    from rag.train.loop import TrainConfig
    from rag.train.reranker import train_reranker

    pairs = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [
        {"query": "how often do api keys rotate", "doc_id": "keys", "label": 1},
        {"query": "when is lunch served", "doc_id": "lunch", "label": 1},
        {"query": "password length rules", "doc_id": "pw", "label": 1},
        {"query": "password length rules", "passage": "Passwords are stored hashed.", "label": 0},
        {"query": "deadline for receipts", "doc_id": "exp", "label": 1},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dest = model_dir("reranker", "default", kb.path)
    cfg = TrainConfig(epochs=3, max_steps=2)
    m = train_reranker(kb, source={"pairs": str(pairs)}, dest=dest, name="default", negatives=2, config=cfg)
    assert m["task"] == "reranker" and m["training"]["steps"] == 2
    assert len(m["training"]["data_sha256"]) == 64
    return dest


def test_rerank_by_registry_name_reorders_and_reports(kb, trained: Path) -> None:
    from rag.models.rerank import CrossEncoderReranker

    hits = kb.search("admin console keys", mode="dense", k=8)
    rr = CrossEncoderReranker("default", collection=kb.path, max_candidates=3)
    out, report = rr.rerank_with_report("admin console keys", hits, k=8)
    assert {h.doc.id for h in out[:3]} == {h.doc.id for h in hits[:3]}  # only the first 3 were scored
    assert [h.source for h in out[:3]] == ["rerank"] * 3
    assert out[3:] == hits[3:]  # the cut ones keep their first-stage order, after the scored ones
    assert report.scored == 3 and report.cut_by_limit == len(hits) - 3 and report.cut_by_time == 0
    assert rr.rerank("admin console keys", hits, k=2) == out[:2]


def test_time_budget_cuts_after_the_first_batch(kb, trained: Path) -> None:
    from rag.models.rerank import CrossEncoderReranker

    hits = kb.search("keys", mode="dense", k=8)
    rr = CrossEncoderReranker(trained, max_candidates=8, budget_ms=0.001, batch_size=2)
    out, report = rr.rerank_with_report("keys", hits, k=8)
    assert report.scored == 2 and report.cut_by_time == 6  # one batch always runs; the budget stops the rest
    assert len(out) == 8 and {h.doc.id for h in out} == {h.doc.id for h in hits}


def test_plain_hf_cross_encoder_directory_loads(tmp_path: Path) -> None:
    """A model directory without a pilotfish manifest (as downloaded from the hub) is used as is."""
    from rag.models.encoders import resolve_model_path
    from rag.models.rerank import CrossEncoderReranker
    from rag.train.loop import new_cross_encoder

    d = tmp_path / "ms-marco-like"
    new_cross_encoder(resolve_model_path("default"), num_labels=1, max_length=64).save(str(d))
    rr = CrossEncoderReranker(str(d), max_candidates=5)
    assert rr.manifest == {} and rr.blend == 0.0
    hits = [Hit(d, 1.0, "bm25") for d in DOCS[:3]]
    assert {h.doc.id for h in rr.rerank("keys", hits, k=3)} == {"keys", "lunch", "pw"}


def test_registry_lists_and_refuses_overwrite_and_wrong_task(kb, trained: Path) -> None:
    from rag.models.registry import list_models, resolve_model, writing_model
    from rag.models.verify import NLIVerifier

    listed = [m for m in list_models(kb.path) if m["where"] == "collection"]
    assert [(m["task"], m["name"]) for m in listed] == [("reranker", "default")]
    with pytest.raises(ConfigError, match="--force"), writing_model(trained):
        pass
    with pytest.raises(IndexFormatError, match="reranker model, not a verifier"):
        NLIVerifier(str(trained))
    path, manifest = resolve_model("cross-encoder/ms-marco-MiniLM-L6-v2", "reranker", kb.path)
    assert path == "cross-encoder/ms-marco-MiniLM-L6-v2" and manifest == {}


def test_interrupted_training_registers_nothing(kb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.train.reranker
    from rag.train.reranker import train_reranker

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rag.train.reranker, "fit", boom)
    pairs = tmp_path / "p.tsv"
    pairs.write_text("query\tdoc\tlabel\nhow often do keys rotate\tkeys\t1\n")
    with pytest.raises(KeyboardInterrupt):
        train_reranker(kb, source={"pairs": str(pairs)}, dest=tmp_path / "m", name="m", negatives=2)
    assert list(tmp_path.iterdir()) == [pairs]


def test_version_mismatch_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    import shutil

    from rag.checks import json_digest
    from rag.models.registry import MANIFEST, read_model_manifest

    d = tmp_path / "old"
    shutil.copytree(trained, d)
    m = {**json.loads((d / MANIFEST).read_text()), "format_version": 99}
    (d / MANIFEST).write_text(json.dumps({**m, "checksum": json_digest(m)}))  # as a newer pilotfish writes it
    with pytest.raises(IndexFormatError, match="format version 99"):
        read_model_manifest(d, "reranker")


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        ('{"query": "q", "doc_id": "nope", "label": 1}\n', "p.jsonl", r"p.jsonl:1.*unknown doc_id 'nope'"),
        ('{"query": "q", "doc_id": "keys", "label": 1}\n{bad\n', "p.jsonl", r"p.jsonl:2.*not valid JSON"),
        ('{"query": "", "doc_id": "keys"}\n', "p.jsonl", r"p.jsonl:1.*empty query"),
        ('{"query": "q", "passage": "  "}\n', "p.jsonl", r"p.jsonl:1.*non-empty passage"),
        ('{"query": "q", "doc_id": "keys", "label": 0}\n', "p.jsonl", "no positive pairs"),
        ("q\tkeys\t1\textra\n", "p.tsv", r"p.tsv:1.*2 or 3 columns"),
        ("q\tkeys\tyes\n", "p.tsv", r"p.tsv:1.*label 'yes' is not a number"),
    ],
)
def test_bad_pairs_name_the_line(kb, tmp_path: Path, content: str, name: str, match: str) -> None:
    from rag.train.reranker_data import read_pairs

    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(SourceError, match=match):
        read_pairs(f, kb)


def test_qrels_source_checks_ids(kb, tmp_path: Path) -> None:
    from rag.train.reranker_data import read_qrels_source

    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "keys"}\n')
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n1\tmissing\t1\n")
    with pytest.raises(SourceError, match="none of the judged documents"):
        read_qrels_source(tmp_path, kb)
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n2\tkeys\t1\n")
    with pytest.raises(SourceError, match=r"not in queries\.jsonl"):
        read_qrels_source(tmp_path, kb)
    with pytest.raises(SourceError, match="split 'dev'"):
        read_qrels_source(tmp_path, kb, "dev")


@pytest.mark.llm
def test_synthesize_with_the_local_llm(kb, tmp_path: Path) -> None:
    """The shipped SmolLM2 writes queries for sampled documents; kept ones pass the round-trip filter."""
    from rag.models.generate import LocalGenerator
    from rag.train.reranker_data import synthesize

    llm = LocalGenerator(max_new_tokens=24, threads=1)
    queries, qrels, counts = synthesize(kb, 4, llm, roundtrip_k=8, progress=False)
    assert counts["sampled"] == 4 and counts["generated"] == 4
    assert counts["kept"] == len(queries) >= 1
    for qid, q in queries.items():
        assert q.strip() and next(iter(qrels[qid])) in {d.id for d in DOCS}
