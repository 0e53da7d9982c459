"""The PostgreSQL + pgvector store against a real server: the same behaviour and results as a directory
collection, filters pushed down as SQL, the change log keeping BM25 in step across processes, migrations,
and faults (server unreachable or killed mid-ingest, dimension mismatch)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from rag.apps.cli import main as cli
from rag.errors import ConfigError, IndexFormatError, StoreUnavailableError
from rag.indexers.collection import Collection
from rag.indexers.directory.collection import DirectoryCollection
from rag.indexers.pg import schema as pg_schema
from rag.indexers.pg.collection import PgCollection
from rag.testing import postgres as pg_launch
from rag.types import Doc

TOPICS = ["security", "travel", "cafeteria", "payroll", "hardware"]


def corpus(n: int = 120) -> list[Doc]:
    rng = np.random.default_rng(7)
    words = {
        "security": "keys rotate passwords vpn badge phishing audit encryption",
        "travel": "flights hotel booking portal receipts visa per diem",
        "cafeteria": "lunch menu tea coffee vegetarian dessert noon lobby",
        "payroll": "salary payslip bonus tax pension overtime bank",
        "hardware": "laptop monitor keyboard docking charger repair loaner",
    }
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = " ".join(rng.choice(words[topic].split(), size=12)) + f" note {i}"
        out.append(Doc(text, id=f"d{i:03d}", meta={"topic": topic, "year": 2015 + i % 10, "n": i}))
    return out


def test_a_postgres_url_opens_a_collection_that_behaves_like_a_directory(pg_url, encoder):
    kb = Collection.create(pg_url, encoder=encoder)
    assert isinstance(kb, PgCollection) and isinstance(kb, Collection)
    docs = corpus(20)
    r = kb.add(docs)
    assert (r.added, r.chunks_added) == (20, 20)
    assert kb.add(docs).unchanged == 20  # re-indexing the same documents writes nothing
    assert len(kb) == 20 and kb.num_chunks == 20 and kb.ids() == sorted(d.id for d in docs)
    assert kb.get(["d003"])[0].text == docs[3].text
    hits = kb.search(docs[3].text, k=3)
    assert hits[0].doc.id == "d003" and hits[0].source == "hybrid"
    assert kb.update([Doc("the tea urn is refilled at noon", id="d003", meta={"topic": "cafeteria"})]).updated == 1
    assert kb.search("urn refilled", mode="bm25", k=1)[0].doc.id == "d003"
    assert kb.delete(["d003", "nope"]).deleted == 1 and "d003" not in kb.ids()
    assert kb.search("urn refilled", mode="bm25", k=1) == []
    with pytest.raises(Exception, match="update\\(\\) needs existing ids"):
        kb.update([Doc("x", id="missing")])
    kb.close()
    again = Collection.open(pg_url, read_only=True)
    assert isinstance(again, PgCollection) and len(again) == 19 and again.has_dense
    assert again.manifest["schema_version"] == pg_schema.MIGRATIONS[-1][0]
    with pytest.raises(ConfigError, match="read_only"):
        again.add([Doc("new", id="new")])
    again.close()


def test_same_top_k_as_the_directory_backend(pg_url, encoder, tmp_path):
    docs = corpus()
    d = DirectoryCollection.create(tmp_path / "kb", encoder=encoder, chunk_size=0)
    p = PgCollection.create(pg_url, encoder=encoder, chunk_size=0, dense="flat")  # flat: exact, like FAISS flat
    d.add(docs)
    p.add(docs)
    queries = ["rotate keys and passwords", "hotel booking receipts", "vegetarian lunch", "laptop charger repair"]
    for q in queries:
        for mode in ("bm25", "dense", "hybrid"):
            for filters in (None, {"topic": ["security", "travel"]}, {"year": {"$gte": 2020}, "n": {"$lt": 100}}):
                a, b = d.search(q, mode=mode, k=10, filters=filters), p.search(q, mode=mode, k=10, filters=filters)
                assert [h.doc.id for h in a] == [h.doc.id for h in b], (q, mode, filters)
                assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
                assert [h.doc.meta for h in a] == [h.doc.meta for h in b]
    with pytest.raises(ConfigError, match="unknown filter field 'colour'"):
        p.search("keys", filters={"colour": "red"})


def test_hnsw_filtered_knn_still_returns_k_rows(pg_url, encoder):
    """A filter that keeps 2% of the rows: pgvector's iterative index scan keeps going until k rows match."""
    docs = corpus(500)
    kb = PgCollection.create(pg_url, encoder=encoder, chunk_size=0, dense="hnsw")
    kb.add(docs)
    plan = kb.con().execute(
        f"EXPLAIN SELECT ord FROM {kb.name}.chunks ORDER BY embedding <=> %s LIMIT 5",
        [np.zeros(384, dtype=np.float32)],
    )
    assert "chunks_embedding" in "\n".join(r[0] for r in plan.fetchall())  # the HNSW index is used
    rare = {"n": {"$lt": 10}}  # 10 of 500 rows
    ann = kb.search("keys passwords", mode="dense", k=8, filters=rare)
    kb.exact = True
    exact = kb.search("keys passwords", mode="dense", k=8, filters=rare)
    assert len(ann) == 8 and all(h.doc.meta["n"] < 10 for h in ann)
    assert len({h.doc.id for h in ann} & {h.doc.id for h in exact}) >= 7  # recall of the ANN index


def test_a_large_ingest_builds_the_ann_index_once_at_the_end(pg_url, encoder, monkeypatch):
    from rag.indexers.pg import index as pg_index

    monkeypatch.setattr(pg_index, "BULK_MIN", 50)
    kb = PgCollection.create(pg_url, encoder=encoder, chunk_size=0)  # hnsw, pgvector's m 16 / ef_construction 64
    assert (kb.dense_params.m, kb.dense_params.ef_construction) == (16, 64)

    def has_index() -> bool:
        q = "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = 'chunks_embedding'"
        return kb.con().execute(q, [kb.name]).fetchone() is not None

    assert has_index()
    docs = corpus(120)
    with kb.bulk_load(len(docs)):
        assert not has_index()
        kb.add(docs[:60])
        assert kb.search(docs[10].text, mode="dense", k=1)[0].doc.id == docs[10].id  # exact meanwhile
        kb.add(docs[60:])
    assert has_index()
    with kb.bulk_load(10):  # small: the index is updated row by row
        assert has_index()
    assert kb.check() == []
    kb.con().execute(f"DROP INDEX {kb.name}.chunks_embedding")  # as a crash inside bulk_load would leave it
    assert kb.check() == [f"schema {kb.name}: the hnsw index is missing; run `rag reindex --store URL`"]
    Collection.open(pg_url, read_only=True).close()
    assert not has_index()  # a reader never changes the store
    Collection.open(pg_url).close()
    assert has_index()  # the next writer rebuilds it


def test_bm25_follows_writes_made_by_other_processes(pg_url, tmp_path):
    kb = Collection.create(pg_url, encoder=None)
    kb.add(corpus(10))
    reader = Collection.open(pg_url, read_only=True)
    assert reader.search("zeppelin", mode="bm25") == []
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "z.md").write_text("# Zeppelin\n\nThe zeppelin hangar opens at dawn.")
    out = subprocess.run(
        [sys.executable, "-m", "rag", "index", str(docs), "--store", pg_url, "--quiet", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["added"] == 1
    assert [h.doc.meta["parent"] for h in reader.search("zeppelin hangar", mode="bm25")] == ["z.md"]
    gen = reader.generation
    kb.delete(["z.md"])
    assert reader.search("zeppelin", mode="bm25") == [] and reader.generation == gen + 1
    kb.add([Doc("a zeppelin again", id="again")])
    assert [h.doc.id for h in reader.search("zeppelin", mode="bm25")] == ["again"]
    reader.close()
    kb.close()


def test_a_reader_behind_the_pruned_change_log_rebuilds_bm25(pg_url, monkeypatch):
    from rag.indexers.pg import bm25 as pg_bm25

    monkeypatch.setattr(pg_bm25, "LOG_KEEP", 2)
    kb = Collection.create(pg_url, encoder=None)
    reader = Collection.open(pg_url, read_only=True)
    for i in range(3):
        kb.add([Doc(f"first batch {i} lantern", id=f"a{i}")])
        assert len(reader.search("lantern", mode="bm25")) == i + 1  # follows the log
    assert reader._bm25.rebuilds == 1
    for i in range(4):  # the reader sleeps through more than LOG_KEEP generations
        kb.add([Doc(f"second batch {i} lantern", id=f"b{i}")])
    kb.delete(["a0"])
    con = kb.con()
    assert con.execute(f"SELECT min(generation) FROM {kb.name}.changes").fetchone()[0] > reader._bm25.generation
    assert sorted(h.doc.id for h in reader.search("lantern", mode="bm25")) == ["a1", "a2", "b0", "b1", "b2", "b3"]
    assert reader._bm25.rebuilds == 2


def test_several_processes_write_one_collection_at_once(pg_url):
    Collection.create(pg_url, encoder=None).close()
    code = (
        "import sys; from rag import Collection, Doc\n"
        "kb = Collection.open(sys.argv[1]); w = sys.argv[2]\n"
        "for b in range(5):\n"
        "    kb.add([Doc(f'{w} writer batch {b} item {i}', id=f'{w}-{b}-{i}') for i in range(20)])\n"
        "    kb.add([Doc(f'{w} shared revision {b}', id='shared')])\n"
        "print(len(kb.search(w, mode='bm25', k=1000)))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url, w], stdout=subprocess.PIPE, text=True)
             for w in ("alpha", "beta")]  # fmt: skip
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    kb = Collection.open(pg_url, read_only=True)
    assert len(kb) == 201 and kb.num_chunks == 201 and kb.generation == 20
    for w in ("alpha", "beta"):
        assert len([h for h in kb.search(w, mode="bm25", k=1000) if h.doc.id != "shared"]) == 100
    assert all(int(o) >= 100 for o in outs)  # each writer saw at least its own 100 documents


def test_cli_index_search_info_delete_with_store(pg_url, docs_dir, capsys):
    assert cli.main(["index", str(docs_dir), "--store", pg_url, "--encoder", "none", "--quiet", "--json"]) in (0, 3)
    summary = json.loads(capsys.readouterr().out)
    assert summary["collection"] == pg_schema.redact(pg_url) and summary["total_documents"] > 3
    assert cli.main(["search", "rotate keys", "--store", pg_url, "--mode", "bm25", "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and "security" in hits[0]["id"]
    assert cli.main(["info", "--store", pg_url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == summary["total_documents"] and info["schema_version"] == pg_schema.MIGRATIONS[-1][0]
    assert cli.main(["delete", hits[0]["meta"]["parent"], "--store", pg_url]) == 0
    assert "deleted 1 documents" in capsys.readouterr().out
    assert cli.main(["check", "--store", pg_url]) == 0
    assert capsys.readouterr().out.strip() == f"{pg_schema.redact(pg_url)}: ok"


def test_migrations_are_versioned_and_applied_once(pg_url, monkeypatch):
    kb = Collection.create(pg_url, encoder=None)
    kb.close()
    con = pg_schema.connect(pg_schema.parse_url(pg_url)[0])
    name = pg_schema.parse_url(pg_url)[1]
    latest = pg_schema.MIGRATIONS[-1][0]
    versions = list(range(1, latest + 1))
    assert [r[0] for r in con.execute(f"SELECT version FROM {name}.schema_migrations ORDER BY 1")] == versions
    step = (latest + 1, "a test column", lambda s, _d: [f"ALTER TABLE {s}.documents ADD x int"])
    steps = [*pg_schema.MIGRATIONS, step]
    monkeypatch.setattr(pg_schema, "MIGRATIONS", steps)
    with pytest.raises(IndexFormatError, match="open it once for writing"):
        Collection.open(pg_url, read_only=True)  # a replica never migrates
    Collection.open(pg_url).close()
    Collection.open(pg_url).close()  # the second open finds nothing to do
    assert [r[0] for r in con.execute(f"SELECT version FROM {name}.schema_migrations ORDER BY 1")] == [
        *versions,
        latest + 1,
    ]
    Collection.open(pg_url, read_only=True).close()
    monkeypatch.setattr(pg_schema, "MIGRATIONS", steps[:-1])
    with pytest.raises(IndexFormatError, match="newer than this pilotfish knows"):
        Collection.open(pg_url)
    con.close()


def test_bad_urls_and_mismatches_give_clear_errors(pg_url, encoder):
    with pytest.raises(
        StoreUnavailableError, match=r"cannot connect to PostgreSQL at postgresql://u@127\.0\.0\.1:9/db"
    ):
        Collection.open("postgresql://u:secret@127.0.0.1:9/db")
    with pytest.raises(ConfigError, match="not usable as a PostgreSQL schema name"):
        Collection.open(pg_url.split("collection=")[0] + "collection=Robert'); DROP TABLE x;--")
    with pytest.raises(IndexFormatError, match="no collection named"):
        Collection.open(pg_url)
    kb = Collection.create(pg_url, encoder=encoder)
    kb.add(corpus(5))
    with pytest.raises(ConfigError, match="already exists"):
        Collection.create(pg_url, encoder=None)

    class Wide:
        name, dim = "wide-encoder", 768

        def encode(self, texts):
            return np.ones((len(texts), 768), dtype=np.float32)

    with pytest.raises(IndexFormatError, match=r"dim 384.*got 'wide-encoder' \(dim 768\)"):
        Collection.open(pg_url, encoder=Wide())
    with pytest.raises(IndexFormatError, match="dim 768"):
        Collection.create(pg_url, encoder=Wide(), exist_ok=True)
    assert len(Collection.open(pg_url)) == 5  # nothing stored was lost


def test_a_lost_connection_is_reported_then_replaced(pg_url):
    kb = Collection.create(pg_url, encoder=None)
    kb.add(corpus(5))
    admin = pg_schema.connect(pg_schema.parse_url(pg_url)[0])
    admin.execute("SELECT pg_terminate_backend(%s)", [kb.con().info.backend_pid])
    with pytest.raises(StoreUnavailableError, match=r"lost the connection .* the next call reconnects"):
        kb.ids()
    assert len(kb.ids()) == 5 and kb.search("keys", mode="bm25")
    admin.close()


class KillOnThirdBatch:
    """The real encoder, with a hook that stops the database while the third batch is being embedded."""

    def __init__(self, encoder, kill):
        self.inner, self.kill, self.calls = encoder, kill, 0
        self.name, self.dim = encoder.name, encoder.dim

    def encode(self, texts):
        self.calls += 1
        if self.calls == 3:
            self.kill()
        return self.inner.encode(texts)


def test_database_killed_mid_ingest_then_resumed_without_duplicates(encoder):
    data = Path(tempfile.mkdtemp(prefix="pilotfish-pgkill-")) / "data"
    url = pg_launch.start(data) + "?collection=ingest"
    try:
        docs = corpus(100)
        kb = Collection.create(url, encoder=KillOnThirdBatch(encoder, lambda: pg_launch.stop(data, "immediate")))
        for i in range(0, 40, 20):
            kb.add(docs[i : i + 20])
        with pytest.raises(StoreUnavailableError, match=r"nothing of this write was stored\. Re-run it"):
            kb.add(docs[40:60])
        with pytest.raises(StoreUnavailableError, match="Check that the server is running"):
            kb.search("keys", mode="bm25")  # the server is down
        pg_launch.start(data, int((data / "pilotfish_port").read_text()))
        assert kb.search(docs[5].text, mode="bm25", k=1)[0].doc.id == docs[5].id  # reconnected
        kb = Collection.open(url)
        assert len(kb) == 40
        res = kb.add(docs)  # the whole ingest again: the first 40 are skipped
        assert (res.added, res.unchanged) == (60, 40)
        con = pg_schema.connect(pg_schema.parse_url(url)[0])
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM ingest.chunks").fetchone() == (100, 100)
        assert kb.search(docs[50].text, k=1)[0].doc.id == docs[50].id
        con.close()
        kb.close()
    finally:
        pg_launch.stop(data, "immediate")


def test_writer_killed_before_commit_leaves_nothing_behind(pg_url):
    Collection.create(pg_url, encoder=None).close()
    env = {"PILOTFISH_FAULT": "pg_before_commit", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    code = f"from rag import Collection, Doc; Collection.open({pg_url!r}).add([Doc('half written', id='half')])"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert proc.returncode == -9
    kb = Collection.open(pg_url)
    assert len(kb) == 0 and kb.generation == 0 and kb.search("half written", mode="bm25") == []
    assert kb.add([Doc("half written", id="half")]).added == 1


def test_a_read_replica_serves_searches_and_follows_the_primary(tmp_path):
    primary = Path(tempfile.mkdtemp(prefix="pilotfish-pgprimary-")) / "data"
    replica = primary.parent / "replica"
    url = pg_launch.start(primary) + "?collection=kb"
    try:
        kb = Collection.create(url, encoder=None)
        kb.add(corpus(10))
        replica_url = pg_launch.start_replica(primary, replica) + "?collection=kb"
        ro = Collection.open(replica_url, read_only=True)
        assert ro.search("keys passwords", mode="bm25", k=3) == kb.search("keys passwords", mode="bm25", k=3) != []
        kb.add([Doc("the zeppelin hangar", id="zep")])
        pg_launch.wait_replay(url, replica_url)
        assert [h.doc.id for h in ro.search("zeppelin", mode="bm25")] == ["zep"]
        with pytest.raises(ConfigError, match="read_only"):
            ro.add([Doc("x", id="x")])
        ro.close()
        kb.close()
    finally:
        pg_launch.stop(replica, "immediate")
        pg_launch.stop(primary, "immediate")


def handbook(kb: Collection) -> Collection:
    from rag.connectors.files import load_path
    from tests.support import DATA

    kb.add(load_path(DATA / "docs").docs)
    kb.add([Doc("API keys must be rotated every 90 days by the owning team.", id="keys", meta={"team": "sec"})])
    return kb


def test_the_same_pipeline_code_runs_on_a_directory_and_on_postgres(pg_url, encoder, tmp_path):
    from rag.answer.pipeline import RAG
    from tests.support.fakes import Scripted

    def pipeline_code(kb: Collection) -> tuple[list[str], list[str], str]:  # what a user writes, store-agnostic
        rag = RAG.from_collection(kb, llm=Scripted("API keys must be rotated every 90 days [1]."), mode="hybrid")
        answer = rag.ask("How often must API keys be rotated?")
        return [h.doc.id for h in answer.hits], [c.verdict for c in answer.claims], answer.text

    on_disk = handbook(Collection.create(tmp_path / "kb", encoder=encoder))
    in_pg = handbook(Collection.create(pg_url, encoder=encoder, dense="flat"))
    ids, verdicts, text = pipeline_code(in_pg)
    assert (ids, verdicts, text) == pipeline_code(on_disk)
    assert "keys" in ids and verdicts == ["supported"]


def test_rag_serve_over_a_postgres_store(pg_url):
    pytest.importorskip("fastapi")
    import httpx

    from rag.apps.server.app import create_app
    from rag.testing.live import live_server
    from tests.support.fakes import Scripted

    handbook(Collection.create(pg_url, encoder=None)).close()
    app = create_app([pg_url], llm=Scripted("API keys must be rotated every 90 days [1]."), mode="bm25")
    name = pg_schema.parse_url(pg_url)[1]
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/health").json()["collections"][name]["documents"] > 3
        hits = c.post("/search", json={"query": "rotate API keys", "k": 3}).json()["hits"]
        assert hits[0]["id"] == "keys"
        r = c.post("/documents", json={"documents": [{"id": "zep", "text": "The zeppelin hangar opens at dawn."}]})
        assert r.status_code == 200, r.text
        assert c.post("/search", json={"query": "zeppelin"}).json()["hits"][0]["id"] == "zep"
        assert c.get("/documents/zep").json()["chunks"][0]["text"].startswith("The zeppelin")
        answer = c.post("/ask", json={"question": "How often must API keys be rotated?"}).json()
        assert answer["claims"][0]["verdict"] == "supported"
        assert c.delete("/documents/zep").status_code == 200
        assert c.post("/search", json={"query": "zeppelin"}).json()["hits"] == []


def test_eval_takes_a_store(pg_url, beir_dir, capsys):
    """`rag eval retrieval --store URL` indexes the dataset into the database once, then reuses it; the
    scores equal the directory collection's."""
    args = ["eval", "retrieval", "--dataset", str(beir_dir), "--mode", "bm25", "--json", "--quiet"]
    assert cli.main(args) == 0
    on_disk = json.loads(capsys.readouterr().out)
    for _ in range(2):  # created, then reused
        assert cli.main([*args, "--store", pg_url]) == 0
        in_pg = json.loads(capsys.readouterr().out)
        assert {k: in_pg[k] for k in ("ndcg@10", "recall@100", "mrr@10")} == {
            k: on_disk[k] for k in ("ndcg@10", "recall@100", "mrr@10")
        }
    assert len(Collection.open(pg_url, read_only=True)) == 4  # the dataset's corpus, indexed once
