"""Ray Data indexing on a local Ray cluster (started here, bound to 127.0.0.1): the same collection as a
single-process index, into a directory or the PostgreSQL store; resumable; a worker killed mid-job."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.indexers.collection import Collection

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

TOPICS = {
    "security": "keys rotate passwords vpn badge phishing audit encryption",
    "travel": "flights hotel booking portal receipts visa per diem",
    "cafeteria": "lunch menu tea coffee vegetarian dessert noon lobby",
}


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)  # fmt: skip
    yield
    ray.shutdown()


def write_files(folder: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        topic = list(TOPICS)[i % 3]
        paras = [" ".join(rng.choice(TOPICS[topic].split(), size=30)) for _ in range(1 + i % 3)]
        (folder / f"{topic}-{i:02d}.md").write_text(f"# {topic} note {i}\n\n" + "\n\n".join(paras))
    (folder / "broken.pdf").write_bytes(b"not a pdf")
    return folder


def assert_same(a: Collection, b: Collection) -> None:
    assert a.ids() == b.ids() and len(a) == len(b) and a.num_chunks == b.num_chunks
    assert [(c.id, c.text, c.meta) for c in a.get(a.ids())] == [(c.id, c.text, c.meta) for c in b.get(b.ids())]
    for q in ("rotate keys vpn", "hotel receipts", "vegetarian lunch"):
        for mode in ("bm25", "dense", "hybrid"):
            ha, hb = a.search(q, mode=mode, k=8), b.search(q, mode=mode, k=8)
            assert [h.doc.id for h in ha] == [h.doc.id for h in hb], (q, mode)
            assert np.allclose([h.score for h in ha], [h.score for h in hb], atol=1e-4)


def test_ray_index_equals_a_single_process_index(cluster, tmp_path, encoder):
    from rag.indexers.ray import index_with_ray

    docs = write_files(tmp_path / "docs")
    single = Collection.create(tmp_path / "single", encoder=encoder, chunk_size=40, chunk_overlap=10)
    from rag.connectors.files import load_path

    single.add(load_path(docs).docs)
    kb = Collection.create(tmp_path / "ray", encoder=encoder, chunk_size=40, chunk_overlap=10)
    res, skipped = index_with_ray(kb, [docs], root=docs, workers=2, batch_size=5, write_batch=7)
    assert res.added == 24 and res.chunks_added == single.num_chunks > 24
    assert [s.path for s in skipped] == ["broken.pdf"]
    assert_same(kb, single)


def test_ray_index_into_postgres_is_resumable(cluster, tmp_path, encoder, pg_url):
    from rag.connectors.files import load_path
    from rag.indexers.ray import index_with_ray

    docs = write_files(tmp_path / "docs", n=12)
    kb = Collection.create(pg_url, encoder=encoder, chunk_size=40, chunk_overlap=10)
    first = sorted(docs.glob("*.md"))[:5]
    res, _ = index_with_ray(kb, first, root=docs, workers=1)
    assert res.added == 5
    res, _ = index_with_ray(kb, [docs], root=docs, workers=2, write_batch=4)  # the rest; the first 5 not redone
    assert (res.added, res.unchanged) == (7, 5)
    single = Collection.create(tmp_path / "single", encoder=encoder, chunk_size=40, chunk_overlap=10)
    single.add(load_path(docs).docs)
    assert_same(kb, single)


def test_a_worker_killed_mid_job_leaves_no_half_written_document(cluster, tmp_path, encoder):
    from rag.connectors.files import load_path
    from rag.indexers.ray import index_with_ray

    docs = write_files(tmp_path / "docs")
    kb = Collection.create(tmp_path / "kb", encoder=encoder, chunk_size=40, chunk_overlap=10)
    env = {"env_vars": {"PILOTFISH_RAY_FAULT": str(tmp_path / "fault-once")}}
    res, _ = index_with_ray(kb, [docs], root=docs, workers=2, batch_size=4, write_batch=4, runtime_env=env)
    assert (tmp_path / "fault-once").exists()  # a worker did die (os._exit in its first batch)
    assert res.added == 24  # Ray restarted the actor and retried the batch: the job completed
    expected = {d.id: d for d in load_path(docs).docs}
    for doc_id in kb.ids():  # every stored document has all its chunks
        assert len(kb.get([doc_id])) == len(kb.chunker.split(expected[doc_id]))
    single = Collection.create(tmp_path / "single", encoder=encoder, chunk_size=40, chunk_overlap=10)
    single.add(list(expected.values()))
    assert_same(kb, single)


def test_cli_index_with_ray(tmp_path, capsys, cluster):
    import json

    from rag.apps.cli import main as cli
    from rag.indexers.ray import index_with_ray

    docs = write_files(tmp_path / "docs", n=6)
    code = cli.main(["index", str(docs), "--collection", str(tmp_path / "kb"), "--ray", "--workers", "1",
                     "--encoder", "none", "--quiet", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 3 and out["added"] == 6 and out["skipped"][0]["path"] == "broken.pdf"
    hit = Collection.open(tmp_path / "kb", read_only=True).search("rotate keys vpn", mode="bm25", k=1)[0]
    assert hit.doc.meta["parent"].startswith("security-")
    with pytest.raises(ConfigError, match="read_only"):  # refused before any work on the cluster
        index_with_ray(Collection.open(tmp_path / "kb", read_only=True), [docs])
