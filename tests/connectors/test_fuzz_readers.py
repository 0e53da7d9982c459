"""Fuzzing the file readers: random bytes under every supported suffix, and valid files truncated or with bytes
flipped. Whatever the input, a reader returns documents (or tables) or raises :class:`SourceError` naming the
file; nothing else escapes, and a folder of broken files still yields the good ones."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.connectors.files import SUFFIXES, load_path, read_file
from rag.connectors.tables import TABLE_SUFFIXES, read_tables
from rag.errors import SourceError
from tests.support import DATA

EXAMPLES = int(os.environ.get("PILOTFISH_FUZZ_EXAMPLES", "150"))  # the long variant: e.g. 5000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DOC_SUFFIXES = sorted(SUFFIXES)
TABLE_FILES = sorted(TABLE_SUFFIXES - {".duckdb", ".sqlite", ".sqlite3"})  # databases: see test_tables.py


def valid_samples() -> dict[str, bytes]:
    """One valid file per format: the test documents, a generated PDF, and tables in CSV, Parquet and Excel."""
    import pandas as pd

    from tests.support.pdfgen import write_pdf

    out = {p.suffix: p.read_bytes() for p in (DATA / "docs").iterdir()}
    tmp = Path(__import__("tempfile").mkdtemp())
    write_pdf(tmp / "a.pdf", ["Travel policy\nBook flights.", "Expenses\nReceipts within 30 days."], title="H")
    out[".pdf"] = (tmp / "a.pdf").read_bytes()
    frame = pd.DataFrame({"city": ["Lisbon", "Porto"], "staff": [12, 7]})
    for suffix, write in ((".parquet", frame.to_parquet), (".xlsx", frame.to_excel)):
        buf = io.BytesIO()
        write(buf, index=False)
        out[suffix] = buf.getvalue()
    shutil.rmtree(tmp)
    return out


SAMPLES = valid_samples()


def read_any(path: Path) -> int:
    """Read ``path`` as a document file or a table file; returns what it yielded. Only SourceError may escape."""
    try:
        if path.suffix in TABLE_SUFFIXES and path.suffix != ".jsonl":
            return len(read_tables(path, root=path.parent))
        docs, _skipped = read_file(path, root=path.parent)
        assert all(isinstance(d.text, str) and d.text.strip() for d in docs)
        return len(docs)
    except SourceError as e:
        assert e.source == path.name and e.reason, e
        return 0


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(DOC_SUFFIXES + TABLE_FILES))
def test_random_bytes_under_any_suffix(tmp_path: Path, data: bytes, suffix: str) -> None:
    f = tmp_path / f"fuzz{suffix}"
    f.write_bytes(data)
    read_any(f)


@FUZZ
@given(
    suffix=st.sampled_from(sorted(SAMPLES)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
)
def test_valid_files_truncated_or_with_bytes_flipped(tmp_path: Path, suffix: str, cut: float, flips: list) -> None:
    data = bytearray(SAMPLES[suffix][: max(1, int(len(SAMPLES[suffix]) * cut))])
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    f = tmp_path / f"mutant{suffix}"
    f.write_bytes(bytes(data))
    read_any(f)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("zero.txt", b""),
        ("spaces.md", b"   \n\t  "),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1")),
        ("nul.html", b"<html>\x00\x00</html>"),
        ("deep.html", b"<div>" * 50_000 + b"deep text" + b"</div>" * 50_000),
        ("unclosed.html", b"<html><body><p>text <b>bold <i>open " * 2000),
        ("png.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
        ("lines.jsonl", b'{"text": 1}\n[1, 2]\nnot json\n{"text": "ok"}\n'),
        ("huge-line.jsonl", b'{"text": "' + b"a" * 3_000_000 + b'"}\n'),
        ("bad.csv", b'a,b\n"unterminated,1\n'),
        ("bad.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1"),
        ("zip.xlsx", b"PK\x03\x04" + b"\x00" * 200),
    ],
)
def test_hand_picked_bad_inputs(tmp_path: Path, name: str, content: bytes) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    read_any(f)


def test_a_folder_of_broken_files_still_yields_the_good_ones(tmp_path: Path) -> None:
    for i, (suffix, data) in enumerate(sorted(SAMPLES.items())):
        (tmp_path / f"good{i}{suffix}").write_bytes(data)
        (tmp_path / f"bad{i}{suffix}").write_bytes(data[: len(data) // 3] + b"\xff\x00garbage")
    report = load_path(tmp_path)
    good_docs = {d.meta["source"] for d in report.docs}
    assert {f"good{i}{s}" for i, s in enumerate(sorted(SAMPLES)) if s in SUFFIXES and s != ".jsonl"} <= good_docs
    assert report.files == 2 * len(SAMPLES) and report.skipped


# ---------------------------------------------------------------- limits: size, zip bombs, time, memory, crashes
def zip_bomb(path: Path, unpacked: int) -> Path:
    """An .xlsx-named zip whose one sheet inflates to ``unpacked`` bytes of zeros (about 1,000 times its size)."""
    import zipfile

    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("xl/worksheets/sheet1.xml", "w") as f,
    ):
        block = b"\x00" * (1 << 22)
        for _ in range(unpacked // len(block)):
            f.write(block)
    return path


@pytest.fixture(scope="module")
def bomb_bytes(tmp_path_factory) -> bytes:
    return zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.xlsx", 600 << 20).read_bytes()


def test_a_zip_bomb_workbook_is_refused_before_it_is_inflated(tmp_path: Path, bomb_bytes: bytes) -> None:
    bomb = tmp_path / "bomb.xlsx"
    bomb.write_bytes(bomb_bytes)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(SourceError, match=r"unpacks to 629,145,600 bytes.*zip bomb"):
        read_tables(bomb, root=tmp_path)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(600 << 20)  # sparse: no disk used
    with pytest.raises(SourceError, match="file too large"):
        read_file(big, root=tmp_path)


@pytest.fixture
def strict_limits(monkeypatch):
    from rag.connectors import isolate

    monkeypatch.setenv("PILOTFISH_READ_TIMEOUT", "3")
    monkeypatch.setenv("PILOTFISH_READ_MEMORY_MB", "1024")
    isolate._stop()  # the next read starts a worker with these limits
    yield isolate.run_isolated
    isolate._stop()


def test_time_memory_and_crash_limits_turn_into_per_file_errors(strict_limits, tmp_path: Path) -> None:
    import time

    with pytest.raises(SourceError, match=r"slow.pdf: reading took longer than 3 s"):
        strict_limits("slow.pdf", time.sleep, 60)
    with pytest.raises(SourceError, match=r"huge.xlsx: reading needs more than 1024 MB"):
        strict_limits("huge.xlsx", bytearray, 3 << 30)
    with pytest.raises(SourceError, match=r"crash.pdf: the file crashed its reader"):
        strict_limits("crash.pdf", os.abort)
    f = tmp_path / "fine.pdf"  # the worker was replaced each time; reading goes on
    f.write_bytes(SAMPLES[".pdf"])
    assert read_file(f, root=tmp_path)[0][0].meta["pages"] == 2


def test_indexing_a_folder_with_a_bomb_and_broken_files_goes_on(tmp_path: Path, capsys, bomb_bytes: bytes) -> None:
    from rag.apps.cli.main import main as cli

    docs = tmp_path / "docs"
    shutil.copytree(DATA / "docs", docs)
    (docs / "bomb.xlsx").write_bytes(bomb_bytes)
    (docs / "truncated.pdf").write_bytes(SAMPLES[".pdf"][:300])
    (docs / "random.html").write_bytes(os.urandom(4096))

    def index(folder: Path, kb: str) -> tuple[int, dict]:
        code = cli(["index", str(folder), "--collection", str(tmp_path / kb), "--encoder", "none", "--quiet", "--json"])
        return code, __import__("json").loads(capsys.readouterr().out)

    code, summary = index(docs, "kb")
    assert code == 3 and summary["total_documents"] == index(DATA / "docs", "clean")[1]["total_documents"]
    assert {"bomb.xlsx", "truncated.pdf", "random.html"} <= {s["path"] for s in summary["skipped"]}, summary
