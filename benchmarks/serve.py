"""``rag serve`` over HTTP against the same searches in-process, and searches while documents are added.

Indexes SciFact (5,183 abstracts, from ../shared/data) into a temporary collection, starts the real server
(uvicorn, 127.0.0.1, a thread of this process) and measures, in one run:

* /search latency over HTTP (p50/p95, one client) next to the retriever called directly — the server's cost;
* /search throughput with N concurrent clients (threads, keep-alive connections) for a few seconds;
* /search latency while another client adds documents through POST /documents, next to the idle figure.

    python benchmarks/serve.py --mode bm25 --clients 8 --seconds 10

Figures are printed, never asserted; machine load is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from rag.apps.server.app import create_app
from rag.datasets import load_beir
from rag.indexers.collection import Collection
from rag.testing.live import live_server

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def ms(xs: list[float]) -> str:
    return f"p50 {statistics.median(xs) * 1000:7.1f} ms  p95 {pct(xs, 0.95) * 1000:7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", default="bm25", choices=["bm25", "hybrid"])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--add", type=int, default=2000, help="documents added during the write test")
    args = ap.parse_args()

    data = load_beir(DATA, "test")
    queries = list(data.queries.values())[: args.queries]
    tmp = Path(tempfile.mkdtemp(prefix="pilotfish-serve-"))
    kb = Collection.create(tmp / "kb", encoder="default" if args.mode == "hybrid" else None, chunk_size=0)
    t0 = time.perf_counter()
    kb.add(data.corpus)
    print(f"indexed {len(kb)} SciFact abstracts ({args.mode}) in {time.perf_counter() - t0:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    kb.load()
    retriever = kb.retriever(args.mode, k=10)
    for q in queries[:20]:  # warm up (compiled kernels, store caches)
        retriever.retrieve(q, k=10)
    direct = []
    for q in queries:
        t = time.perf_counter()
        retriever.retrieve(q, k=10)
        direct.append(time.perf_counter() - t)
    with live_server(create_app(kb, llm=None, mode=args.mode)) as url, httpx.Client(base_url=url) as c:
        http = []
        for q in queries:
            t = time.perf_counter()
            r = c.post("/search", json={"query": q, "k": 10})
            http.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        print(f"/search, one client     {ms(http)}   ({len(queries)} queries)")
        print(f"retriever in-process    {ms(direct)}   server cost at p50: "
              f"{(statistics.median(http) - statistics.median(direct)) * 1000:.1f} ms")  # fmt: skip

        done, errors, lat = threading.Event(), [0], []

        def client(i: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as cc:
                j = i
                while not done.is_set():
                    t = time.perf_counter()
                    r = cc.post("/search", json={"query": queries[j % len(queries)], "k": 10})
                    lat.append(time.perf_counter() - t)
                    errors[0] += r.status_code != 200
                    j += args.clients

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        time.sleep(args.seconds)
        done.set()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        print(f"/search, {args.clients} clients      {len(lat) / wall:7.1f} req/s  {ms(lat)}  errors {errors[0]}")

        lat_w, writing = [], threading.Event()
        docs = [{"id": f"new-{i}", "text": f"Added note {i} on {queries[i % len(queries)]}"} for i in range(args.add)]

        def writer() -> None:
            with httpx.Client(base_url=url, timeout=600) as cw:
                writing.set()
                t = time.perf_counter()
                r = cw.post("/documents", json={"documents": docs}, headers={"Content-Type": "application/json"})
                print(f"POST /documents: {args.add} documents in {time.perf_counter() - t:.1f} s "
                      f"({json.loads(r.text).get('added')} added)")  # fmt: skip
                writing.clear()

        w = threading.Thread(target=writer)
        w.start()
        writing.wait()
        i = 0
        while writing.is_set():
            t = time.perf_counter()
            r = c.post("/search", json={"query": queries[i % len(queries)], "k": 10})
            lat_w.append(time.perf_counter() - t)
            i += 1
        w.join()
        print(f"/search while adding    {ms(lat_w)}   ({len(lat_w)} searches answered during the write)")
    kb.close()
    Collection.destroy(tmp / "kb")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
