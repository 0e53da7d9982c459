"""Damage on disk is detected, named, and comes with what to do: one byte corrupted in each file a collection
keeps (manifest, index payloads, document store, a trained model), ``rag check``, and a model save interrupted
between its two renames."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from rag import Collection, Doc
from rag.apps.cli.main import main as cli
from rag.checks import json_digest
from rag.errors import IndexFormatError
from rag.models.registry import model_dir, resolve_model, write_model_manifest, writing_model
from tests.support.crash_harness import HashEncoder

DOCS = [Doc(f"document {i} about {'rivers' if i % 2 else 'mountains'} and topic{i}", id=f"d{i}") for i in range(40)]
FLIPS = int(os.environ.get("PILOTFISH_CORRUPT_FLIPS", "12"))  # corrupted copies per file; the long variant: 200


def save_model(kb: Path, version: int) -> Path:
    with writing_model(model_dir("reranker", "tiny", collection=kb), force=True) as tmp:
        (tmp / "weights.bin").write_bytes(bytes(range(256)) * 64)
        write_model_manifest(tmp, "reranker", "tiny", "none", training={"version": version})
    return model_dir("reranker", "tiny", collection=kb)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "kb"
    kb = Collection.create(path, encoder=HashEncoder(), chunk_size=0)
    kb.add(DOCS)
    kb.delete(["d3"])
    kb.close()
    save_model(path, 1)
    return path


def files_of(kb: Path) -> dict[str, Path]:
    manifest = json.loads((kb / "manifest.json").read_text())
    return {
        "manifest": kb / "manifest.json",
        "bm25": kb / manifest["payloads"]["bm25"]["file"],
        "dense": kb / manifest["payloads"]["dense"]["file"],
        "store": kb / "store.duckdb",
        "model manifest": kb / "models/reranker/tiny/pilotfish-model.json",
        "model weights": kb / "models/reranker/tiny/weights.bin",
    }


def open_and_use(path: Path) -> list[str]:
    """Everything a user does first: open, check, search both ways, load the model. The problems reported."""
    try:
        kb = Collection.open(path, encoder=HashEncoder(), read_only=True)
        try:
            problems = kb.check()
            kb.search("rivers", mode="hybrid", k=5)
        finally:
            kb.close()
        resolve_model("tiny", "reranker", collection=path)
    except IndexFormatError as e:
        return [str(e)]
    return problems


def test_a_healthy_collection_checks_clean(pristine: Path, capsys) -> None:
    assert open_and_use(pristine) == []
    assert cli(["check", "--collection", str(pristine)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


@pytest.mark.parametrize("what", ["manifest", "bm25", "dense", "store", "model manifest", "model weights"])
def test_one_corrupt_byte_in_any_file_is_detected_with_a_repair_hint(pristine: Path, tmp_path: Path, what: str):
    rng = random.Random(what)
    hints = {"restore it", "rag reindex", "retrain it"}
    for trial in range(FLIPS):
        copy = tmp_path / f"kb{trial}"
        shutil.copytree(pristine, copy)
        f = files_of(copy)[what]
        data = bytearray(f.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        f.write_bytes(bytes(data))
        problems = open_and_use(copy)
        assert problems, f"a flipped byte in {what} went unnoticed (trial {trial})"
        assert any(h in problems[0].lower() for h in hints) and str(copy) in problems[0], problems
        shutil.rmtree(copy)


@pytest.mark.parametrize("what", ["bm25", "dense"])
def test_rag_check_reports_a_damaged_index_and_rag_reindex_repairs_it(pristine: Path, tmp_path: Path, what, capsys):
    copy = tmp_path / "kb"
    shutil.copytree(pristine, copy)
    f = files_of(copy)[what]
    f.write_bytes(f.read_bytes()[:-7])
    capsys.readouterr()
    assert cli(["check", "--collection", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "fails its checksum" in out and f"rag reindex --collection {copy}" in out and "damaged, 1 problem" in out
    kb = Collection.open(copy, encoder=HashEncoder())
    kb.rebuild()
    assert kb.check() == [] and kb.search("topic7", mode="bm25", k=1)[0].doc.id == "d7"
    kb.close()


def test_a_manifest_from_before_checksums_opens_and_a_damaged_key_does_not(pristine: Path, tmp_path: Path) -> None:
    copy = tmp_path / "kb"
    shutil.copytree(pristine, copy)
    mf = copy / "manifest.json"
    data = json.loads(mf.read_text())
    del data["checksum"]
    mf.write_text(json.dumps(data))
    assert open_and_use(copy) == []
    mf.write_text(json.dumps({**data, "checksun": json_digest(data)}))
    with pytest.raises(IndexFormatError, match="fails its checksum"):
        Collection.open(copy)


def test_deleting_the_newest_document_then_adding_works(tmp_path: Path) -> None:
    """Regression (found by the crash harness): a vacuumed delete of the chunks with the largest ids made the
    next add reuse ids BM25 had already seen."""
    kb = Collection.create(tmp_path / "kb", encoder=HashEncoder(), chunk_size=0)
    kb.add(DOCS[:3])
    kb.delete(["d2"])
    kb.add([DOCS[5]])
    kb.close()
    kb = Collection.open(tmp_path / "kb", encoder=HashEncoder())
    kb.delete(["d5"])
    kb.add([DOCS[6]])
    assert kb.ids() == ["d0", "d1", "d6"] and kb.check() == []
    assert kb.search("topic6", mode="bm25", k=1)[0].doc.id == "d6"
    kb.close()


def test_a_model_save_killed_between_its_two_renames_keeps_the_previous_model(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    dest = save_model(kb, 1)
    # the state a kill -9 leaves between "move the old model aside" and "move the new one in"
    dead = 2**22 + 17  # above the default pid_max: no such process
    dest.rename(dest.with_name(f".{dest.name}.old-{dead}"))
    half = dest.with_name(f".{dest.name}.tmp-{dead}-abc123")
    half.mkdir()
    (half / "weights.bin").write_bytes(b"partial")
    path, manifest = resolve_model("tiny", "reranker", collection=kb)
    assert manifest["training"]["version"] == 1 and Path(path).name == f".{dest.name}.old-{dead}"
    save_model(kb, 2)  # the next save puts things right first
    assert resolve_model("tiny", "reranker", collection=kb)[1]["training"]["version"] == 2
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tiny"]
