from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def encoder():
    """The real shipped MiniLM encoder, loaded once per session."""
    from rag.encoders import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder(threads=1)
    _ = enc.dim
    return enc


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """A copy of tests/data/docs plus a generated two-page PDF."""
    from tests.pdfgen import write_pdf

    d = tmp_path / "docs"
    shutil.copytree(DATA / "docs", d)
    write_pdf(
        d / "handbook.pdf",
        ["Travel policy\nBook flights through the travel portal.", "Expenses\nSubmit receipts within 30 days."],
        title="Employee handbook",
    )
    return d


@pytest.fixture
def beir_dir() -> Path:
    return DATA / "beir"
