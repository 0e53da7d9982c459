from __future__ import annotations

import json

import pytest

from tests.support.cli import rag


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from tests.support import DATA
    from tests.support.pdfgen import write_pdf

    tmp = tmp_path_factory.mktemp("cli")
    docs = tmp / "docs"
    docs.mkdir()
    for f in (DATA / "docs").iterdir():
        (docs / f.name).write_bytes(f.read_bytes())
    write_pdf(docs / "handbook.pdf", ["Travel policy\nBook flights through the travel portal."], title="Handbook")
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "blob.md").write_bytes(b"\x00\x00binary")
    (docs / "broken.csv").write_text("a,b\n1,2\n3,4,5\n")
    kb = tmp / "kb"
    p = rag("index", str(docs), "--collection", str(kb), "--json", check=False)
    return docs, kb, p


def test_index_reports_skipped_files_and_exit_status(indexed):
    _, _kb, p = indexed
    assert p.returncode == 3, p.stderr
    summary = json.loads(p.stdout)
    assert summary["files"] == 10
    assert summary["tables"] == 1  # offices.csv: one card document; broken.csv is skipped, naming its row
    assert summary["added"] == 7 and summary["total_documents"] == 7
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"corrupt.pdf", "empty.txt", "blob.md", "broken.csv"}
    assert "row 3 has 3 fields" in skipped["broken.csv"]
    assert "PDF" in skipped["corrupt.pdf"] and "empty" in skipped["empty.txt"] and "binary" in skipped["blob.md"]
    assert "corrupt.pdf" in p.stderr


def test_reindexing_the_same_folder_changes_nothing(indexed):
    docs, kb, _ = indexed
    p = rag("index", str(docs), "--collection", str(kb), "--json", check=False)
    s = json.loads(p.stdout)
    assert (s["added"], s["updated"], s["unchanged"], s["total_documents"]) == (0, 0, 7, 7)


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_search_json_shape(indexed, mode):
    _, kb, _ = indexed
    out = json.loads(
        rag("search", "how do I rotate the keys?", "--collection", str(kb), "--mode", mode, "--k", "3", "--json").stdout
    )
    assert set(out) == {"query", "hits", "took_ms"}
    assert out["query"] == "how do I rotate the keys?" and len(out["hits"]) <= 3
    hit = out["hits"][0]
    assert set(hit) == {"id", "score", "source", "text", "meta"}
    assert hit["id"] == "security.md" and hit["source"] == mode


def test_search_filter_and_human_output(indexed):
    _, kb, _ = indexed
    out = json.loads(
        rag("search", "policy", "--collection", str(kb), "--json", "--filter", "source=handbook.pdf").stdout
    )
    assert {h["meta"]["source"] for h in out["hits"]} == {"handbook.pdf"}
    assert out["hits"][0]["meta"]["page"] == 1
    out = json.loads(
        rag(
            "search", "holiday parking", "--collection", str(kb), "--json", "--filter", "year>=2022", "--mode", "bm25"
        ).stdout
    )
    assert [h["id"] for h in out["hits"]] == ["faq-1"]
    text = rag("search", "lunch", "--collection", str(kb), "--k", "2").stdout
    assert "cafeteria.txt" in text and "hits in" in text


def test_cli_errors_are_clear(indexed, tmp_path):
    _, kb, _ = indexed
    p = rag("search", "x", "--collection", str(tmp_path / "nope"), check=False)
    assert p.returncode == 1 and "is not a collection" in p.stderr and "Traceback" not in p.stderr
    p = rag("search", "   ", "--collection", str(kb), check=False)
    assert p.returncode == 1 and "query is empty" in p.stderr
    p = rag("search", "x", "--collection", str(kb), "--k", "0", check=False)
    assert p.returncode == 1 and "k must be a positive integer" in p.stderr
    p = rag("search", "x", "--collection", str(kb), "--filter", "colour=red", check=False)
    assert p.returncode == 1 and "unknown filter field 'colour'" in p.stderr
    p = rag("search", "x", "--collection", str(kb), "--filter", "garbage", check=False)
    assert p.returncode == 1 and "cannot parse filter" in p.stderr


def test_eval_retrieval_json(beir_dir, tmp_path):
    for mode in ("bm25", "hybrid"):
        out = json.loads(
            rag("eval", "retrieval", "--dataset", str(beir_dir), "--mode", mode, "--json", "--quiet").stdout
        )
        assert out["queries"] == 3 and out["mode"] == mode
        assert {"ndcg@10", "recall@100", "mrr@10", "map@10"} <= set(out)
        assert out["ndcg@10"] > 0.8
        # d1 shares no term with "password length": lexical search cannot find it, dense does
        assert out["recall@100"] == pytest.approx(5 / 6 if mode == "bm25" else 1.0, abs=1e-4)


def test_info_and_delete(indexed):
    _, kb, _ = indexed
    info = json.loads(rag("info", "--collection", str(kb), "--json").stdout)
    assert info["documents"] == 7 and "source" in info["fields"]
    assert "deleted 1 documents" in rag("delete", "faq-2", "--collection", str(kb)).stdout
    assert json.loads(rag("info", "--collection", str(kb), "--json").stdout)["documents"] == 6
