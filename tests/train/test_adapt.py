"""``rag adapt``: pseudo-queries cut out of their documents, a first stage that cannot find them by the copied words,
training within a budget, the gate deciding on held-out pseudo-queries, resuming after an interruption, and the
adopted model used by default (``RAG.from_collection``, ``rag search --rerank auto``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.types import Doc
from tests.support.cli import rag
from tests.support.fakes import Scripted
from tests.support.reports import reports


def test_a_pseudo_query_is_a_sentence_or_the_title_and_is_cut_out_of_its_document() -> None:
    from rag.train.pseudo import Pseudo, mask, pseudo_queries

    docs = {d.id: [Doc(d.text, id=f"{d.id}#0", meta={**d.meta, "parent": d.id})] for d in reports(30)}
    made = pseudo_queries(docs, 20, seed=3)
    assert len(made) == 20 and len({p.doc for p in made}) == 20  # one per document
    assert {p.source for p in made} == {"sentence", "title"}
    for p in made:
        chunk = docs[p.doc][0]
        masked = mask(chunk, p)
        if p.source == "title":
            assert p.query == chunk.meta["title"] and "title" not in masked.meta and masked.text == chunk.text
        else:
            assert p.query in chunk.text and p.query not in masked.text and masked.meta == chunk.meta
    assert {p.source for p in pseudo_queries(docs, 10, sources=["title"])} == {"title"}
    heading = Doc("# Key rotation\n\nRotate keys every 90 days. Old keys stop working.", id="k#0",
                  meta={"parent": "k", "title": "Key rotation"})  # fmt: skip
    cut = mask(heading, Pseudo("p", "Key rotation", "k", "title", "Key rotation"))
    assert cut.text == "Rotate keys every 90 days. Old keys stop working." and "title" not in cut.meta
    # text with neither sentences nor a title (NFCorpus's preprocessed abstracts): a crop of 8-16 words
    flat = {d: [Doc(" ".join(c.text.lower().replace(".", "").split()), id=c.id, meta={"parent": d})] for d, (c,) in
            docs.items()}  # fmt: skip
    crops = pseudo_queries(flat, 10)
    assert len(crops) == 10 and {p.source for p in crops} == {"crop"}
    assert all(8 <= len(p.query.split()) <= 16 for p in crops)
    assert all(p.query not in mask(flat[p.doc][0], p).text for p in crops)
    with pytest.raises(ConfigError, match="unknown pseudo-query source"):
        pseudo_queries(docs, 5, sources=["keyphrase"])


@pytest.mark.model
def test_the_shadow_first_stage_reuses_stored_vectors_and_cannot_match_a_removed_sentence(tmp_path, encoder) -> None:
    from rag.indexers.collection import Collection
    from rag.train.pseudo import Pseudo, Shadow

    with Collection.create(tmp_path / "kb", encoder=encoder, chunk_size=0) as kb:
        kb.add(reports(40))
        chunks, vectors = kb.chunk_vectors()
        assert len(chunks) == 40 and vectors is not None and vectors.shape == (40, encoder.dim)
        src = next(c for c in chunks if c.meta.get("parent", c.id) == "r7")
        sentence = src.text.split(". ")[1] + "."
        p = Pseudo("pq0", sentence, "r7", "sentence", sentence)
        shadow = Shadow(kb, chunks, [p], vectors, progress=False)
        masked = shadow.get(["r7"])[0]
        assert sentence not in masked.text and masked.text  # the rest of the document stays
        unmasked = [i for i, c in enumerate(shadow.chunks) if c.meta.get("parent", c.id) != "r7"]
        assert np.allclose(shadow.vectors[unmasked], vectors[unmasked])  # stored vectors reused, not re-encoded
        i7 = next(i for i, c in enumerate(shadow.chunks) if c.meta.get("parent", c.id) == "r7")
        assert np.allclose(shadow.vectors[i7], encoder.encode([f"{masked.meta['title']}\n{masked.text}"])[0], atol=1e-5)
        ranked = [h.doc.meta.get("parent", h.doc.id) for h in shadow.retriever("bm25").retrieve(sentence, k=40)]
        real = [h.doc.meta.get("parent", h.doc.id) for h in kb.search(sentence, mode="bm25", k=40)]
        assert real[0] == "r7" and ranked.index("r7") > 0  # the real index finds it by the copied words


@pytest.fixture(scope="module")
def reports_kb(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    from rag.indexers.collection import Collection

    path = tmp_path_factory.mktemp("adapt") / "kb"
    with Collection.create(path, encoder=encoder, chunk_size=0) as kb:
        kb.add(reports(130))
    return path


class Echo:
    """An LLM that writes the passage's first eight words as its query (the fake behind ``--llm``)."""

    name = "echo"

    def generate(self, prompt, max_new_tokens=None) -> str:
        return " ".join(prompt[-1]["content"].removeprefix("Passage: ").split()[:8])


def _config(**kw):
    from rag.train.adapt import AdaptConfig

    return AdaptConfig(minutes=10, heldout_queries=20, depth=10, max_steps=2, max_length=64, threads=1,
                       progress=False, **kw)  # fmt: skip


@pytest.mark.slow
@pytest.mark.model
def test_rag_adapt_rejects_what_does_not_beat_the_first_stage_and_says_why(reports_kb: Path, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(reports_kb, kb)
    out = rag("adapt", "--collection", str(kb), "--max-steps", "2", "--json", "--quiet")
    report = json.loads(out.stdout)
    (cand,) = report["candidates"]
    ev = cand["heldout"]
    assert cand["pseudo_queries"]["heldout"] == 26 and ev["queries"] == 26 and cand["training"]["steps"] == 2
    assert set(ev["scores"]) == {"first_stage", "blend=0.0", "blend=0.25", "blend=0.5", "blend=0.75"}
    # two steps leave the head near random: worse than the first stage, and the gate says so
    assert report["adopted"] == [] and report["rejected"][0]["task"] == "reranker"
    assert "no sure gain" in report["rejected"][0]["reason"]
    assert not (kb / "models" / "reranker" / "adapted").exists() and not (kb / "models" / ".adapt").exists()
    record = json.loads((kb / "models" / "adopted.json").read_text())
    assert record["adopted"] == {} and record["decisions"][-1]["by"] == "rag adapt"
    text = rag("adapt", "--collection", str(kb), "--max-steps", "1", "--quiet").stdout
    assert "not adopted: reranker" in text and "the unadapted pipeline stays in use" in text


@pytest.mark.slow
@pytest.mark.model
def test_an_interrupted_adapt_resumes_and_an_adopted_model_is_used_by_default(
    reports_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.answer.pipeline import RAG
    from rag.indexers.collection import Collection
    from rag.models import adoption
    from rag.train import adapt as adapt_mod

    kb_path = tmp_path / "kb"
    shutil.copytree(reports_kb, kb_path)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(adapt_mod, "_gate", interrupted)
    with Collection.open(kb_path, read_only=True) as kb, pytest.raises(KeyboardInterrupt):
        adapt_mod.adapt(kb, _config(llm_queries=10), generator=Echo())
    assert {f.name for f in (kb_path / "models" / ".adapt").iterdir()} >= {"data.json", "training.json", "model"}
    monkeypatch.undo()
    real = adapt_mod.decide
    monkeypatch.setattr(adapt_mod, "decide", lambda per: {**real(per), "adopt": True})  # as if it had won
    with Collection.open(kb_path, read_only=True) as kb:
        report = adapt_mod.adapt(kb, _config(llm_queries=10))  # the same plan: the LLM's queries are saved
    assert report["resumed"] == ["data", "training"] and report["adopted"] == ["reranker"]
    written = report["candidates"][0]["llm_queries"]
    assert written["llm"] == "echo" and written["generated"] == 10 and 1 <= written["kept"] <= 10
    assert adoption.adopted_model(kb_path, "reranker") == "adapted"
    assert adoption.read(kb_path)["adopted"]["reranker"]["by"] == "rag adapt"
    rag_ = RAG.from_collection(kb_path, llm=Scripted("Copper pumps corrode [1]."))
    assert rag_.reranker is not None and rag_.reranker.model_name == "adapted"
    assert RAG.from_collection(kb_path, llm=Scripted("x"), adapted=False).reranker is None
    out = rag("search", "copper pump corrosion", "--collection", str(kb_path), "--rerank", "auto")
    assert "reranked by adapted" in out.stdout
    listed = rag("models", "list", "--collection", str(kb_path)).stdout
    assert "ADOPTED" in listed and "by rag adapt" in listed and "held-out pseudo-queries" in listed

    # a later run whose candidate loses keeps the adopted model in place
    monkeypatch.setattr(adapt_mod, "decide", lambda per: {**real(per), "adopt": False})
    with Collection.open(kb_path, read_only=True) as kb:
        again = adapt_mod.adapt(kb, _config())
    assert again["rejected"] and again["resumed"] == []
    assert adoption.adopted_model(kb_path, "reranker") == "adapted"


@pytest.mark.model
def test_adapt_refuses_a_collection_too_small_to_hold_queries_out(tmp_path: Path, encoder) -> None:
    from rag.indexers.collection import Collection
    from rag.train.adapt import adapt

    with Collection.create(tmp_path / "kb", encoder=encoder, chunk_size=0) as kb:
        kb.add(reports(30))
        with pytest.raises(ConfigError, match=r"too small to adapt: its 30 documents gave 30 pseudo-queries"):
            adapt(kb, _config())
    assert not (tmp_path / "kb" / "models" / "reranker").exists()
    bad = rag("adapt", "--collection", str(tmp_path / "kb"), "--minutes", "0", check=False)
    assert bad.returncode == 1 and "--minutes must be positive" in bad.stderr


@pytest.mark.slow
@pytest.mark.model
def test_training_stops_when_its_time_is_up() -> None:
    from rag.train.loop import Group, TrainConfig, fit, new_cross_encoder

    model = new_cross_encoder("default", num_labels=1, max_length=32)
    groups = [Group(pairs=((f"query {i}", f"passage {i}"), (f"query {i}", "other"))) for i in range(400)]
    stats = fit(model, groups, "listwise", TrainConfig(max_seconds=0.5, threads=1, progress=False))
    assert 1 <= stats.steps < 50  # 50 steps make the full epoch
