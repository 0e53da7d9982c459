from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rag.connectors.files import html_to_text, load_path, read_file
from rag.errors import SourceError
from rag.indexers.chunking import Chunker
from rag.types import Doc
from tests.support import DATA


def test_folder_reads_every_supported_type(docs_dir: Path):
    report = load_path(docs_dir)
    assert report.skipped == []
    by_id = {d.id: d for d in report.docs}
    assert set(by_id) == {
        "security.md",
        "cafeteria.txt",
        "onboarding.html",
        "faq-1",
        "faq-2",
        "handbook.pdf",
    }
    assert [t.name for t in report.tables] == ["offices.csv"]  # tables go to rag.indexers.tables
    assert by_id["security.md"].meta == {"source": "security.md", "title": "Security handbook"}
    assert by_id["faq-1"].meta["year"] == 2024 and by_id["faq-1"].meta["title"] == "Holidays"
    pdf = by_id["handbook.pdf"]
    assert pdf.meta["title"] == "Employee handbook" and pdf.meta["pages"] == 2
    assert "travel portal" in pdf.text and "receipts" in pdf.text


def test_html_keeps_visible_text_only():
    title, text = html_to_text((DATA / "docs/onboarding.html").read_text())
    assert title == "Onboarding guide"
    assert "laptop" in text and "secret" not in text and "color" not in text


def test_pdf_chunks_carry_page_numbers(docs_dir: Path):
    (pdf,) = read_file(docs_dir / "handbook.pdf", root=docs_dir)[0]
    chunks = Chunker(size=6, overlap=1).split(pdf)
    pages = {c.meta["page"] for c in chunks}
    assert pages == {1, 2}
    assert all("page_starts" not in c.meta for c in chunks)
    page2 = pdf.meta["page_starts"][1]
    for c in chunks:  # a chunk's page is the page its first word is on
        assert c.meta["page"] == (1 if c.meta["start"] < page2 else 2)


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\t\n", "empty file"),
        ("binary.txt", b"\x00\x01\x02ELF", "binary content"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", "PDF"),
        ("image.png", b"\x89PNG\r\n", "unsupported file type"),
        ("bad.jsonl", b"{not json}\n[1,2]\n", "no valid line"),
    ],
)
def test_bad_files_are_reported_by_name(tmp_path: Path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.txt").write_text("fine text")
    report = load_path(tmp_path)
    assert [d.id for d in report.docs] == ["good.txt"]
    assert len(report.skipped) == 1
    assert report.skipped[0].path == name and reason in report.skipped[0].reason


def test_jsonl_bad_lines_are_skipped_and_reported(tmp_path: Path):
    (tmp_path / "c.jsonl").write_text('{"_id": "a", "text": "alpha"}\n{oops\n{"_id": "b", "text": "beta"}\n')
    report = load_path(tmp_path)
    assert [d.id for d in report.docs] == ["a", "b"]
    assert report.skipped[0].path == "c.jsonl:2"


def test_missing_path_raises():
    with pytest.raises(SourceError, match="no such file"):
        load_path("/nonexistent/folder")


def test_chunk_ids_are_stable_spans_with_overlap():
    text = " ".join(f"word{i}." if i % 10 == 9 else f"word{i}" for i in range(50))
    doc = Doc(text, id="p")
    a, b = Chunker(size=12, overlap=3).split(doc), Chunker(size=12, overlap=3).split(doc)
    assert [c.id for c in a] == [c.id for c in b]
    for c in a:
        assert c.id == f"p#{c.meta['start']}-{c.meta['end']}"
        assert text[c.meta["start"] : c.meta["end"]] == c.text
        assert c.meta["parent"] == "p"
    assert a[0].text.endswith(".")  # ended on a sentence boundary
    words = [set(c.text.split()) for c in a]
    assert all(w1 & w2 for w1, w2 in itertools.pairwise(words))  # overlapping windows
    assert a[-1].meta["end"] == len(text)
    (whole,) = Chunker(size=0).split(doc)
    assert whole.id == "p" and whole.text == text
