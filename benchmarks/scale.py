"""The embedded directory collection against the PostgreSQL + pgvector store at ~100k chunks, in one run.

Both stores get the same passages, the same encoder and ``chunk_size=0`` (the passages are already chunk-sized):

* passages: real text from ../shared/data (SciFact, NFCorpus, HotpotQA, SQuAD, NQ; never copied here), cut into
  60-word passages; when those run short of ``--chunks``, windows shifted by 30 words are added. Metadata per
  passage: ``source``, ``year`` (2000-2024 from a hash of the id), ``bucket`` (i % 100), so ``{"bucket": 7}``
  keeps ~1% and ``{"year": {"$gte": 2022}}`` ~12%;
* encoder: by default a fast deterministic hashed bag-of-words projection to 384 dims (MiniLM on 2 CPU cores
  would take hours at 100k and costs the same for both stores), so **ingest measures the store, not the model**;
  ``--encoder default`` uses the shipped MiniLM (for small runs);
* stores: directory with FAISS flat and HNSW, PostgreSQL with pgvector HNSW (a throwaway PostgreSQL 18 from
  rag/testing/postgres.py, or ``--pg URL``). Each store runs in its own forked process, so its peak RSS is its own.

Measured per store: ingest docs/s (``kb.add`` in batches of 5,000 inside ``kb.bulk_load``, as ``rag index``
does: PostgreSQL builds its HNSW index once at the end, and that build is in the ingest time), search latency
p50/p95 over ``--queries`` queries (from the datasets' queries.jsonl, k = 10, one at a time) for dense, bm25,
hybrid and dense with the 1% and 12% filters; size on disk (directory files, or the collection's relations and
the whole database); peak RSS. For PostgreSQL also recall@10 of HNSW against an exact scan
(``kb.exact = True``), with and without the 1% filter, and the mean number of rows the filtered HNSW query
returns (iterative index scans should make it 10).

    .venv/bin/python benchmarks/scale.py                                   # 100k passages, 200 queries
    .venv/bin/python benchmarks/scale.py --chunks 5000 --queries 50 --out /tmp/scale.json

Figures are printed, never asserted. PostgreSQL's own memory (its server processes) is not in the RSS column.
Then Ray Data indexing (``--ray-docs``, 0 skips it): one process against Ray with 1 and 2 workers, real MiniLM.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import json
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from rag.indexers.collection import Collection
from rag.indexers.dense import DenseParams
from rag.testing import postgres as pg_launch
from rag.types import Doc

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SOURCES = ["scifact", "nfcorpus_preprocessed", "hotpotqa_dev_distractor_sample", "squad_v1.1_dev", "nq_open_oracle"]
WORDS, BATCH, K = 60, 5000, 10
FILTERS = {"1%": {"bucket": 7}, "12%": {"year": {"$gte": 2022}}}
RUNS = [("dense", "dense", None), ("bm25", "bm25", None), ("hybrid", "hybrid", None),
        ("filtered 1%", "dense", FILTERS["1%"]), ("filtered 12%", "dense", FILTERS["12%"])]  # fmt: skip
STOP = set("the of and a an in to is was for on with as by at from that this are be or it its were which".split())
TOKEN = re.compile(r"[a-z0-9]+")


class HashedBow:
    """Hashed bag of words projected to 384 signed dimensions (two per word), L2-normalised; deterministic."""

    name, dim = "hashed-bow-384", 384

    def __init__(self) -> None:
        self._cols: dict[str, tuple[int, int, float, float]] = {}

    def _col(self, w: str) -> tuple[int, int, float, float]:
        h1, h2 = zlib.crc32(w.encode()), zlib.crc32(b"#" + w.encode())
        c = (h1 % self.dim, h2 % self.dim, 1.0 if h1 & 1 << 20 else -1.0, 1.0 if h2 & 1 << 20 else -1.0)
        self._cols[w] = c
        return c

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            row = out[i]
            for w in TOKEN.findall(t.lower()):
                if w not in STOP:
                    a, b, sa, sb = self._cols.get(w) or self._col(w)
                    row[a] += sa
                    row[b] += sb
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus(n: int, seed: int = 0) -> tuple[list[Doc], list[str], dict[str, int]]:
    """``n`` passages (60-word windows; shifted windows only when needed) and queries from the same datasets."""
    first, shifted, queries = [], [], []
    for src in SOURCES:
        d = DATA / src
        for obj in read_jsonl(next(p for p in (d / "corpus.jsonl", d / "corpus.jsonl.gz") if p.exists())):
            words = f"{obj.get('title') or ''} {obj['text']}".split()
            for start in range(0, max(1, len(words)), WORDS):
                first.append((src, f"{src}:{obj['_id']}:{start}", words[start : start + WORDS]))
            for start in range(WORDS // 2, len(words) - WORDS // 2, WORDS):
                shifted.append((src, f"{src}:{obj['_id']}:{start}", words[start : start + WORDS]))
        queries.append([q["text"] for q in read_jsonl(d / "queries.jsonl")])
    rng = random.Random(seed)
    rng.shuffle(first)
    rng.shuffle(shifted)
    picked = (first + shifted)[:n]
    rng.shuffle(picked)
    docs = [
        Doc(" ".join(w), id=i, meta={"source": s, "year": 2000 + zlib.crc32(i.encode()) % 25, "bucket": j % 100})
        for j, (s, i, w) in enumerate(picked)
    ]
    for qs in queries:
        rng.shuffle(qs)
    mixed = [q for group in zip(*queries, strict=False) for q in group]
    info = {"windows": min(n, len(first)), "shifted_windows": max(0, n - len(first)), "available": len(first + shifted)}
    return docs, mixed, info


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def timed_searches(kb: Collection, queries: list[str], mode: str, filters: Any) -> tuple[list[float], list[list[str]]]:
    for q in queries[:3]:  # warm up
        kb.search(q, mode=mode, k=K, filters=filters)
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = kb.search(q, mode=mode, k=K, filters=filters)
        times.append(time.perf_counter() - t0)
        ids.append([h.doc.id for h in hits])
    return times, ids


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_store(label: str, where: str, dense: DenseParams, enc_name: str, queries: list[str]) -> dict[str, Any]:
    """Ingest ``DOCS`` into a new collection at ``where`` and time its searches (runs in a forked child)."""
    rss0 = rss_mb()
    enc = HashedBow() if enc_name == "hashed" else enc_name
    kb = Collection.create(where, encoder=enc, chunk_size=0, dense=dense)
    batches = []
    t0 = time.perf_counter()
    with kb.bulk_load(len(DOCS)):  # as `rag index` does: PostgreSQL builds its HNSW index once, at the end
        for i in range(0, len(DOCS), BATCH):
            t1 = time.perf_counter()
            kb.add(DOCS[i : i + BATCH])
            batches.append(time.perf_counter() - t1)
    ingest = time.perf_counter() - t0
    kb.load()
    out: dict[str, Any] = {"store": label, "chunks": kb.num_chunks, "ingest_s": ingest}
    out["docs_per_s"] = len(DOCS) / ingest
    out["batch_docs_per_s"] = [min(BATCH, len(DOCS) - i * BATCH) / s for i, s in enumerate(batches)]
    ids: dict[str, list[list[str]]] = {}
    for name, mode, filters in RUNS:
        times, ids[name] = timed_searches(kb, queries, mode, filters)
        out[name] = {"p50_ms": statistics.median(times) * 1000, "p95_ms": pct(times, 0.95) * 1000}
    out["ids"] = {"dense": ids["dense"], "filtered 1%": ids["filtered 1%"]}
    out["rows_filtered_1%"] = float(np.mean([len(x) for x in ids["filtered 1%"]]))
    if where.startswith("postgresql://"):
        kb.exact = True  # type: ignore[attr-defined]
        for name, filters in (("dense", None), ("filtered 1%", FILTERS["1%"])):
            times, exact = timed_searches(kb, queries, "dense", filters)
            out[f"exact {name}"] = {"p50_ms": statistics.median(times) * 1000, "p95_ms": pct(times, 0.95) * 1000}
            out["ids"][f"exact {name}"] = exact
        con = kb.con()  # type: ignore[attr-defined]
        out["db_bytes"] = con.execute("SELECT pg_database_size(current_database())::bigint").fetchone()[0]
        out["size_bytes"] = con.execute(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')", [kb.name]
        ).fetchone()[0]  # fmt: skip
        out["server"] = con.execute(
            "SELECT current_setting('server_version'), (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
            " current_setting('shared_buffers')"
        ).fetchone()
        kb.close()
        Collection.destroy(where)
    else:
        kb.close()
        out["size_bytes"] = dir_size(Path(where))
    out["rss_peak_mb"], out["rss_own_mb"] = rss_mb(), rss_mb() - rss0
    return out


def recall(got: list[list[str]], ref: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / max(1, min(K, len(b))) for a, b in zip(got, ref, strict=True)]))


def machine() -> str:
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPUs ({cpu}), RAM {int(mem) / 2**20:.1f} GiB, load average {load}"


def store_section(args: argparse.Namespace, queries: list[str], report: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pilotfish-scale-"))
    pg_data = tmp / "pgdata"
    url = args.pg or pg_launch.start(pg_data)
    flat, hnsw = DenseParams(kind="flat"), DenseParams(kind="hnsw", m=args.m, ef_construction=args.ef_construction)
    stores = {"dir flat": (str(tmp / "flat"), flat), "dir hnsw": (str(tmp / "hnsw"), hnsw),
              "pg hnsw": (f"{url}{'&' if '?' in url else '?'}collection=scale_bench", hnsw)}  # fmt: skip
    print(f"HNSW (both stores): m {hnsw.m}, ef_construction {hnsw.ef_construction}, ef_search {hnsw.ef_search}")
    report["hnsw"] = {"m": hnsw.m, "ef_construction": hnsw.ef_construction, "ef_search": hnsw.ef_search}
    results = []
    try:
        for label in args.stores.split(","):
            where, dense = stores[label]
            print(f"  {label}: ingesting {len(DOCS):,} passages ...", flush=True)
            with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as ex:
                r = ex.submit(run_store, label, where, dense, args.encoder, queries).result()
            print(f"  {label}: {r['docs_per_s']:,.0f} docs/s, dense p50 {r['dense']['p50_ms']:.1f} ms", flush=True)
            results.append(r)
            if not where.startswith("postgresql"):
                shutil.rmtree(where, ignore_errors=True)
    finally:
        if not args.pg:
            pg_launch.stop(pg_data)
        shutil.rmtree(tmp, ignore_errors=True)
    server = next((r["server"] for r in results if "server" in r), None)
    if server:
        print(f"PostgreSQL {server[0]}, pgvector {server[1]}, shared_buffers {server[2]}")
    cols = ["dense", "bm25", "hybrid", "filtered 1%", "filtered 12%"]
    head = f"{'store':<9} | {'ingest docs/s':>13} | " + " | ".join(f"{c + ' p50/p95 ms':>23}" for c in cols)
    print(f"\n{head} | {'size MB':>8} | {'peak RSS MB (own)':>17}\n{'-' * (len(head) + 33)}")
    for r in results:
        lat = " | ".join(f"{r[c]['p50_ms']:>11.1f} / {r[c]['p95_ms']:>7.1f}" for c in cols)
        size, rss = f"{r['size_bytes'] / 1e6:8.0f}", f"{r['rss_peak_mb']:,.0f} ({r['rss_own_mb']:,.0f})"
        print(f"{r['store']:<9} | {r['docs_per_s']:>13,.0f} | {lat} | {size} | {rss:>17}")
    print()
    for r in results:
        b = r["batch_docs_per_s"]
        print(f"{r['store']}: ingest {r['ingest_s']:.1f} s; first batch {b[0]:,.0f} docs/s, last {b[-1]:,.0f} docs/s")
        if "db_bytes" in r:
            print(f"{r['store']}: collection relations {r['size_bytes'] / 1e6:,.0f} MB, whole database "
                  f"{r['db_bytes'] / 1e6:,.0f} MB")  # fmt: skip
    by = {r["store"]: r for r in results}
    if "pg hnsw" in by:
        ids, r = by["pg hnsw"]["ids"], by["pg hnsw"]
        r["recall@10"] = recall(ids["dense"], ids["exact dense"])
        r["recall@10 filtered 1%"] = recall(ids["filtered 1%"], ids["exact filtered 1%"])
        ex, ex1 = r["exact dense"]["p50_ms"], r["exact filtered 1%"]["p50_ms"]
        print(f"pg hnsw recall@{K} vs exact: {r['recall@10']:.4f} unfiltered, {r['recall@10 filtered 1%']:.4f} "
              f"with the 1% filter (mean rows returned {r['rows_filtered_1%']:.2f} of {K}); exact scan p50 "
              f"{ex:.1f} ms unfiltered, {ex1:.1f} ms filtered")  # fmt: skip
    if "dir hnsw" in by and "dir flat" in by:
        r = by["dir hnsw"]
        r["recall@10"] = recall(r["ids"]["dense"], by["dir flat"]["ids"]["dense"])
        print(f"dir hnsw recall@{K} vs dir flat: {r['recall@10']:.4f} unfiltered (filtered dir searches of <= 20k "
              f"rows are exact); mean rows returned with the 1% filter {r['rows_filtered_1%']:.2f}")  # fmt: skip
    for r in results:
        r.pop("ids")
    report["stores"] = results
    report["postgres"] = server


def ray_section(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Ray Data indexing with the real MiniLM (``chunk_size`` 0) into a directory collection: one process
    (``kb.add``) against ``rag.indexers.ray.index_with_ray`` with 1 and 2 workers on a local cluster, for
    ``--ray-docs`` SciFact abstracts in 20 JSONL files, and on 50 abstracts (Ray's fixed cost)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from rag.connectors.files import load_path
    from rag.indexers.ray import index_with_ray
    from rag.models.encoders import SentenceTransformerEncoder

    lines = [json.dumps(d) + "\n" for d in read_jsonl(DATA / "scifact" / "corpus.jsonl.gz")[: args.ray_docs]]
    tmp = Path(tempfile.mkdtemp(prefix="pilotfish-scale-ray-"))
    enc = SentenceTransformerEncoder()
    enc.encode(["warm up"])
    print(f"\nRay Data indexing (MiniLM, local cluster on 127.0.0.1 with {os.cpu_count()} CPUs, into a directory):")
    rows = []
    try:
        for label, n, files in (("corpus", args.ray_docs, 20), ("small", 50, 2)):
            folder = tmp / label
            folder.mkdir()
            for i in range(files):
                (folder / f"part-{i:02d}.jsonl").write_text("".join(lines[:n][i::files]))
            docs = load_path(folder).docs
            kb = Collection.create(tmp / f"{label}-1p", encoder=enc, chunk_size=0)
            t0 = time.perf_counter()
            kb.add(docs)
            row: dict[str, Any] = {"set": label, "docs": len(docs), "one_process_s": time.perf_counter() - t0}
            for workers in (1, 2):
                t0 = time.perf_counter()
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False)  # fmt: skip
                row[f"ray{workers}_start_s"] = time.perf_counter() - t0
                kr = Collection.create(tmp / f"{label}-ray{workers}", encoder=enc, chunk_size=0)
                t0 = time.perf_counter()
                res, _ = index_with_ray(kr, [folder], root=folder, workers=workers, write_batch=500)
                row[f"ray{workers}_s"] = time.perf_counter() - t0
                ray.shutdown()
                assert res.added == len(docs) and kr.ids() == kb.ids()
            rows.append(row)
            speeds = "; ".join(
                f"Ray {w} worker{'s' if w > 1 else ''}: {len(docs) / row[f'ray{w}_s']:,.1f} docs/s "
                f"({row[f'ray{w}_s']:.1f} s + {row[f'ray{w}_start_s']:.1f} s cluster start)"
                for w in (1, 2)
            )
            print(f"  {label} ({len(docs):,} docs): one process {len(docs) / row['one_process_s']:,.1f} docs/s "
                  f"({row['one_process_s']:.1f} s); {speeds}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["ray"] = rows


DOCS: list[Doc] = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000, help="passages indexed")
    ap.add_argument("--queries", type=int, default=200, help="queries timed per search mode")
    ap.add_argument("--encoder", default="hashed", help="'hashed' (fast, default) or a model: 'default' = MiniLM")
    ap.add_argument("--stores", default="dir flat,dir hnsw,pg hnsw", help="comma list of: dir flat, dir hnsw, pg hnsw")
    ap.add_argument("--m", type=int, default=16, help="HNSW m for both stores (default 16, pgvector's)")
    ap.add_argument("--ef-construction", type=int, default=64, help="HNSW ef_construction for both (default 64)")
    ap.add_argument("--pg", help="an existing PostgreSQL URL (default: start a throwaway server)")
    ap.add_argument("--ray-docs", type=int, default=2000, help="SciFact abstracts for the Ray section (0: skip it)")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    docs, queries, info = corpus(args.chunks)
    DOCS[:] = docs
    queries = queries[: args.queries]
    enc = "hashed-bow-384 (ingest measures the store, not the model)" if args.encoder == "hashed" else args.encoder
    print(f"machine: {machine()}")
    print(f"corpus: {len(docs):,} passages of <= {WORDS} words from {', '.join(SOURCES)} ({info['shifted_windows']:,} "
          f"of them windows shifted by {WORDS // 2} words; built in {time.perf_counter() - t0:.1f} s, RSS "
          f"{rss_mb():,.0f} MB); {len(queries)} queries, k = {K}")  # fmt: skip
    print(f"encoder: {enc}; chunk_size 0; batches of {BATCH:,}; filters 1% {FILTERS['1%']}, 12% {FILTERS['12%']}")
    report: dict[str, Any] = {"machine": machine(), "corpus": info, "chunks": len(docs), "queries": len(queries),
                              "encoder": args.encoder}  # fmt: skip
    if args.stores:
        store_section(args, queries, report)
    if args.ray_docs:
        ray_section(args, report)
    report["seconds"] = time.perf_counter() - t0
    print(f"finished in {report['seconds']:.0f} s; {machine()}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
