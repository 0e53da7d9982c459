from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pytest

from rag import Collection, Doc
from rag.checks import json_digest
from rag.errors import (
    CollectionLockedError,
    ConfigError,
    DocumentNotFoundError,
    IndexFormatError,
    QueryError,
)
from rag.protocols import Retriever

DOCS = [
    Doc(
        "Rotate the API keys every 90 days using the admin console.",
        id="keys",
        meta={"source": "handbook.pdf", "year": 2021, "published": "2021-03-01", "team": "security"},
    ),
    Doc(
        "The cafeteria serves lunch from noon to two.",
        id="lunch",
        meta={"source": "cafe.md", "year": 2019, "published": "2019-07-15", "team": "facilities"},
    ),
    Doc(
        "Passwords must be at least 12 characters long.",
        id="pw",
        meta={"source": "handbook.pdf", "year": 2023, "published": "2023-01-10", "team": "security"},
    ),
    Doc(
        "Request VPN access from the IT desk; it takes a day.",
        id="vpn",
        meta={"source": "it.html", "year": 2022, "published": "2022-11-30", "team": "it"},
    ),
]


@pytest.fixture
def kb(tmp_path, encoder):
    kb = Collection.create(tmp_path / "kb", encoder=encoder)
    kb.add(DOCS)
    yield kb
    kb.close()


@pytest.fixture
def sparse_kb(tmp_path):
    kb = Collection.create(tmp_path / "sparse", encoder=None)
    kb.add(DOCS)
    yield kb
    kb.close()


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_every_mode_finds_the_answer(kb, mode):
    r = kb.retriever(mode, k=2)
    assert isinstance(r, Retriever)
    hits = r.retrieve("how do I rotate the keys?")
    assert hits[0].doc.id == "keys"
    assert len(hits) <= 2 and hits[0].source == mode
    assert len(kb.retriever(mode).retrieve("keys", k=100)) <= len(DOCS)


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
@pytest.mark.parametrize(
    "filters,expected",
    [
        ({"source": "handbook.pdf"}, {"keys", "pw"}),
        ({"source": ["cafe.md", "it.html"]}, {"lunch", "vpn"}),
        ({"year": {"$gte": 2022}}, {"pw", "vpn"}),
        ({"year": {"$gt": 2019, "$lt": 2023}}, {"keys", "vpn"}),
        ({"published": {"$gte": dt.date(2022, 1, 1)}}, {"pw", "vpn"}),
        ({"published": {"$lt": "2020-01-01"}}, {"lunch"}),
        ({"team": {"$nin": ["security"]}}, {"lunch", "vpn"}),
        ({"team": {"$ne": "it"}, "source": "handbook.pdf"}, {"keys", "pw"}),
        ({"source": []}, set()),
    ],
)
def test_filters_work_in_every_retriever(kb, mode, filters, expected):
    hits = kb.retriever(mode).retrieve("keys lunch passwords vpn desk days", k=10, filters=filters)
    got = {h.doc.id for h in hits}
    assert got <= expected
    if mode != "bm25":  # dense ranks every allowed document
        assert got == expected


def test_retriever_standing_filters_combine_with_call_filters(kb):
    r = kb.retriever("bm25", filters={"source": "handbook.pdf"})
    assert {h.doc.id for h in r.retrieve("keys passwords", filters={"year": {"$gte": 2022}})} == {"pw"}
    with pytest.raises(ConfigError, match="set both"):
        r.retrieve("keys", filters={"source": "cafe.md"})


def test_bad_queries_and_parameters(kb):
    for mode in ("bm25", "dense", "hybrid"):
        r = kb.retriever(mode)
        with pytest.raises(QueryError):
            r.retrieve("   ")
        with pytest.raises(QueryError):
            r.retrieve("")
        for bad_k in (0, -3):
            with pytest.raises(ConfigError, match="k must be a positive integer"):
                r.retrieve("keys", k=bad_k)
        with pytest.raises(ConfigError, match="unknown filter field 'colour'"):
            r.retrieve("keys", filters={"colour": "red"})
        with pytest.raises(ConfigError, match="unknown filter operator"):
            r.retrieve("keys", filters={"year": {"$near": 3}})
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        kb.retriever("fuzzy")


def test_sparse_only_collection(sparse_kb):
    assert sparse_kb.search("rotate keys", mode="bm25")[0].doc.id == "keys"
    with pytest.raises(ConfigError, match="no dense index"):
        sparse_kb.retriever("dense")
    with pytest.raises(ConfigError, match="no dense index"):
        sparse_kb.retriever("hybrid")


def test_add_again_is_idempotent_and_update_replaces(kb):
    res = kb.add(DOCS)
    assert (res.added, res.unchanged) == (0, 4)
    assert len(kb) == 4 and kb.num_chunks == 4
    res = kb.update([Doc("Rotate the keys every 30 days.", id="keys", meta={"source": "handbook.pdf"})])
    assert res.updated == 1 and res.chunks_removed == 1
    hit = kb.search("rotate keys", mode="bm25", k=1)[0]
    assert "30 days" in hit.doc.text
    assert len(kb) == 4
    with pytest.raises(DocumentNotFoundError, match="nope"):
        kb.update([Doc("x", id="nope")])


def test_delete_removes_from_every_index(kb):
    res = kb.delete(["keys", "unknown-id"])
    assert res.deleted == 1 and len(kb) == 3
    for mode in ("bm25", "dense", "hybrid"):
        assert "keys" not in {h.doc.id for h in kb.search("rotate the API keys", mode=mode, k=10)}
    assert "keys" not in kb.ids()


def test_reopen_keeps_everything(kb, encoder):
    before = {m: [(h.doc.id, round(h.score, 5)) for h in kb.search("keys days", mode=m)] for m in ("bm25", "dense")}
    path = kb.path
    kb.close()
    again = Collection.open(path, encoder=encoder)
    after = {m: [(h.doc.id, round(h.score, 5)) for h in again.search("keys days", mode=m)] for m in ("bm25", "dense")}
    assert before == after
    assert len(again) == 4 and again.fields() >= {"source", "year", "parent", "start", "end"}
    again.close()


def test_incremental_collection_equals_rebuild(tmp_path, encoder):
    inc = Collection.create(tmp_path / "inc", encoder=encoder)
    inc.add(DOCS[:2])
    inc.add(DOCS[2:])
    inc.update([Doc("Lunch moved to one o'clock.", id="lunch", meta={"source": "cafe.md"})])
    inc.delete(["vpn"])
    fresh = Collection.create(tmp_path / "fresh", encoder=encoder)
    fresh.add([DOCS[0], Doc("Lunch moved to one o'clock.", id="lunch", meta={"source": "cafe.md"}), DOCS[2]])
    for mode in ("bm25", "dense", "hybrid"):
        for q in ("lunch keys", "passwords characters", "o'clock"):
            a = [(h.doc.id, round(h.score, 5)) for h in inc.search(q, mode=mode)]
            b = [(h.doc.id, round(h.score, 5)) for h in fresh.search(q, mode=mode)]
            assert a == b


def test_long_documents_are_chunked_and_reindexing_updates_in_place(tmp_path):
    kb = Collection.create(tmp_path / "kb", encoder=None, chunk_size=20, chunk_overlap=5)
    long = Doc(" ".join(f"token{i}" for i in range(100)) + " needle", id="long", meta={"source": "l.txt"})
    kb.add([long])
    n = kb.num_chunks
    assert n > 1
    hit = kb.search("needle", mode="bm25", k=1)[0]
    assert hit.doc.id.startswith("long#") and hit.doc.meta["parent"] == "long"
    kb.add([long])
    assert kb.num_chunks == n  # same file again: no duplicates
    kb.add([Doc(long.text + " haystack", id="long", meta={"source": "l.txt"})])
    assert len(kb) == 1 and kb.search("haystack", mode="bm25")[0].doc.meta["parent"] == "long"
    assert len(kb.get(["long"])) == kb.num_chunks


def test_bad_documents_raise_before_any_write(sparse_kb):
    gen = sparse_kb.generation
    with pytest.raises(ConfigError, match="appears twice"):
        sparse_kb.add([Doc("a", id="x"), Doc("b", id="x")])
    with pytest.raises(ConfigError, match="has no text"):
        sparse_kb.add([Doc("fine", id="y"), Doc("  ", id="z")])
    assert sparse_kb.generation == gen and len(sparse_kb) == 4


def test_opening_something_that_is_not_a_collection(tmp_path):
    with pytest.raises(IndexFormatError, match="not a collection"):
        Collection.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(IndexFormatError, match=r"no manifest\.json"):
        Collection.open(tmp_path / "plain")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="unreadable"):
        Collection.open(tmp_path / "junk")


def test_create_refuses_to_clobber(kb, tmp_path):
    with pytest.raises(ConfigError, match="already exists"):
        Collection.create(kb.path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an empty directory"):
        Collection.create(tmp_path / "full")


def test_format_version_mismatch(kb):
    mf = kb.path / "manifest.json"
    data = json.loads(mf.read_text())
    data["format_version"] = 99
    data["checksum"] = json_digest(data)  # as a newer pilotfish would write it
    mf.write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="format_version 99"):
        Collection.open(kb.path)


class _OtherEncoder:
    name = "other/model"
    dim = 8

    def encode(self, texts):
        return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)


def test_encoder_mismatch(kb):
    kb.close()
    with pytest.raises(IndexFormatError, match="was built with encoder 'sentence-transformers/all-MiniLM-L6-v2'"):
        Collection.open(kb.path, encoder=_OtherEncoder())


def test_custom_encoder_object(tmp_path):
    kb = Collection.create(tmp_path / "c", encoder=_OtherEncoder())
    kb.add(DOCS)
    assert kb.manifest["encoder"] == {"name": "other/model", "dim": 8}
    assert len(kb.search("anything", mode="dense", k=2)) == 2
    kb.close()
    assert len(Collection.open(tmp_path / "c", encoder=_OtherEncoder()).search("x", mode="dense")) == 4


@pytest.mark.parametrize("payload", ["bm25", "dense"])
def test_tampered_payload_is_detected_and_rebuild_repairs_it(kb, encoder, payload):
    f = kb.path / kb.manifest["payloads"][payload]["file"]
    kb.close()
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    again = Collection.open(kb.path, encoder=encoder)
    with pytest.raises(IndexFormatError, match="fails its checksum"):
        again.search("keys", mode="bm25" if payload == "bm25" else "dense")
    again.rebuild()
    assert again.search("rotate keys", mode="hybrid")[0].doc.id == "keys"
    again.close()


def test_second_writer_gets_a_clear_locked_error(sparse_kb):
    import fcntl
    import os

    fd = os.open(sparse_kb.path / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(CollectionLockedError, match="locked by another writer"):
            sparse_kb.add([Doc("new", id="new")])
    finally:
        os.close(fd)
    assert sparse_kb.add([Doc("new", id="new")]).added == 1


def test_read_only_collection_refuses_writes(sparse_kb):
    path = sparse_kb.path
    sparse_kb.close()
    ro = Collection.open(path, read_only=True)
    assert ro.search("keys", mode="bm25")
    with pytest.raises(ConfigError, match="read_only"):
        ro.add([Doc("x", id="x")])
    ro.close()


def test_payload_files_are_replaced_not_accumulated(sparse_kb):
    for i in range(3):
        sparse_kb.add([Doc(f"extra {i}", id=f"e{i}")])
    names = sorted(p.name for p in Path(sparse_kb.path).iterdir() if p.name.startswith("bm25-"))
    assert names == [sparse_kb.manifest["payloads"]["bm25"]["file"]]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_index_kinds(tmp_path, encoder, kind):
    kb = Collection.create(tmp_path / kind, encoder=encoder, dense=kind)
    kb.add(DOCS)
    assert kb.search("rotate keys", mode="dense", k=1)[0].doc.id == "keys"
    kb.delete(["keys"])
    assert "keys" not in {h.doc.id for h in kb.search("rotate keys", mode="dense")}
    assert {h.doc.id for h in kb.search("x", mode="dense", filters={"team": "it"})} == {"vpn"}
    kb.close()
    again = Collection.open(tmp_path / kind)
    assert len(again.search("lunch", mode="dense", k=10)) == 3


class _FailingEncoder(_OtherEncoder):
    fail = False

    def encode(self, texts):
        if self.fail:
            raise RuntimeError("encoder crashed")
        return super().encode(texts)


def test_a_failed_write_changes_nothing(tmp_path):
    enc = _FailingEncoder()
    kb = Collection.create(tmp_path / "f", encoder=enc)
    kb.add(DOCS)
    gen = kb.generation
    enc.fail = True
    with pytest.raises(RuntimeError, match="encoder crashed"):
        kb.add([Doc("brand new text", id="new")])
    enc.fail = False
    assert kb.generation == gen and "new" not in kb.ids()
    assert kb.add([Doc("brand new text", id="new")]).added == 1


def test_a_failure_after_the_commit_point_keeps_the_commit(sparse_kb, monkeypatch):
    from rag.indexers.store import DocStore

    def broken_vacuum(self, gen):
        raise OSError("disk hiccup while cleaning up")

    monkeypatch.setattr(DocStore, "vacuum", broken_vacuum)
    with pytest.raises(OSError, match="disk hiccup"):
        sparse_kb.add([Doc("committed before the cleanup failed", id="late")])
    monkeypatch.undo()
    path = sparse_kb.path
    sparse_kb.close()
    again = Collection.open(path)
    assert "late" in again.ids()
    assert again.search("cleanup failed", mode="bm25", k=1)[0].doc.id == "late"
    again.close()


def test_create_exist_ok_opens_the_existing_collection(sparse_kb):
    again = Collection.create(sparse_kb.path, encoder=None, exist_ok=True)
    assert len(again) == 4 and again.generation == sparse_kb.generation


def test_another_process_gets_a_clear_locked_error(sparse_kb):
    import subprocess
    import sys

    code = (
        "import sys\nfrom rag import Collection, CollectionLockedError\n"
        "try:\n    Collection.open(sys.argv[1]).search('keys', mode='bm25')\n    print('opened')\n"
        "except CollectionLockedError as e:\n    print('locked:', e)\n"
    )
    sparse_kb.search("keys", mode="bm25")  # this process holds the store open for writing
    out = subprocess.run([sys.executable, "-c", code, str(sparse_kb.path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("locked: collection") and "in use by another process" in out.stdout, out.stderr
    sparse_kb.close()
    out = subprocess.run([sys.executable, "-c", code, str(sparse_kb.path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "opened", out.stderr


def test_torch_flat_search_equals_faiss_flat():
    """The GPU path's logic (matrix product + top-k in torch), run here on the CPU, against faiss's flat search,
    including after removals and with fewer vectors than k."""
    import numpy as np

    from rag.indexers.dense import DenseIndex, TorchFlat

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3000, 48)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = DenseIndex(48)
    idx.add(np.arange(10, 3010), vecs)
    idx.remove(np.arange(10, 510))
    q = rng.standard_normal((70, 48)).astype(np.float32)
    want_scores, want_ids = idx.index.search(q, 10)
    scores, ids = TorchFlat(idx.index, "cpu", block=32).search(q, 10)
    assert (ids == want_ids).all() and np.allclose(scores, want_scores, atol=1e-5)
    assert not np.isin(ids, np.arange(10, 510)).any()
    small = DenseIndex(48)
    small.add(np.array([5, 6]), vecs[:2])
    _, s_ids = TorchFlat(small.index, "cpu").search(q[:3], 2)
    assert (s_ids == small.index.search(q[:3], 2)[1]).all()


def test_dense_search_uses_the_gpu_searcher_only_for_unfiltered_flat(monkeypatch):
    import numpy as np

    from rag.indexers import dense as dense_index
    from rag.indexers.dense import DenseIndex, TorchFlat

    calls = []

    def cpu_as_gpu(index):  # what a CUDA machine gets, on the CPU
        calls.append(index)
        return TorchFlat(index, "cpu")

    monkeypatch.setattr(dense_index, "gpu_searcher", cpu_as_gpu)
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((200, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = DenseIndex(16)
    idx.add(np.arange(200), vecs)
    ids, _ = idx.search(vecs[:5], 3)
    assert (ids[:, 0] == np.arange(5)).all() and len(calls) == 1
    idx.search(vecs[:5], 3, allowed=np.arange(100))  # filtered: stays on faiss (CPU)
    idx.add(np.array([500]), vecs[:1] * -1)  # a write drops the GPU copy; the next search rebuilds it
    assert idx.search(-vecs[:1], 1)[0][0, 0] == 500 and len(calls) == 2
    monkeypatch.setenv("PILOTFISH_GPU", "0")
    idx.add(np.array([501]), vecs[1:2])
    idx.search(vecs[:1], 1)
    assert len(calls) == 2


def test_read_write_lock_lets_a_waiting_writer_go_first_and_nested_reads_through():
    import threading

    from rag.indexers.writes import ReadWriteLock

    lock, order = ReadWriteLock(), []
    a_reading, a_done = threading.Event(), threading.Event()

    def until(pred):
        deadline = time.monotonic() + 5
        while not pred() and time.monotonic() < deadline:
            time.sleep(0.005)

    def reader_a():
        with lock.read():
            a_reading.set()
            until(lambda: lock._waiting == 1)  # the writer is blocked on us
            with lock.read():  # a nested read must not wait behind the writer (that would deadlock)
                order.append("a-nested")
        a_done.set()

    def writer():
        a_reading.wait(5)
        with lock.write():
            order.append("write")

    def reader_b():
        until(lambda: lock._waiting == 1)  # arrives while the writer waits: goes after it
        with lock.read():
            order.append("b")

    threads = [threading.Thread(target=f) for f in (reader_a, writer, reader_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert a_done.is_set() and order == ["a-nested", "write", "b"]
