"""BM25 speed: pilotfish vs bm25s (numba), bm25s (numpy) and rank-bm25, side by side.

Synthetic Zipf corpora (pseudo-words from syllables, Zipf exponent 1.07, 20-80 words per document)
at 10k, 100k and 1M documents, plus SciFact. Query throughput is the best of 3 runs of all queries
(rank-bm25: one query at a time within a time budget). Each (engine, corpus) runs in its own
subprocess reading the corpus from a text file, so peak memory (VmHWM) less the loaded corpus
(data_mb) is the engine's own. Every engine tokenises the same way (lowercase words, English stop
words, Snowball stemmer) and indexes raw text; queries are 3-6 words drawn from the same
distribution; k = 10; all cores (numba threads = os.cpu_count()).

    python benchmarks/bm25_speed.py                      # 10k, 100k, 1M + SciFact
    python benchmarks/bm25_speed.py --sizes 10000 --queries 500
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ["pilotfish", "bm25s-numba", "bm25s-numpy", "rank-bm25"]


def synthetic(n_docs: int, n_queries: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "an", "dor", "el", "is", "um", "tra"]
    vocab_size = 200_000
    parts = rng.integers(0, len(syll), size=(vocab_size, 4))
    lens = rng.integers(2, 5, size=vocab_size)
    vocab = np.array(
        ["".join(syll[p] for p in row[:n]) + str(i % 97) for i, (row, n) in enumerate(zip(parts, lens, strict=True))]
    )
    ranks = np.arange(1, vocab_size + 1)
    probs = ranks**-1.07
    probs /= probs.sum()

    def texts(n: int, lo: int, hi: int) -> list[str]:
        lengths = rng.integers(lo, hi + 1, size=n)
        words = vocab[rng.choice(vocab_size, size=int(lengths.sum()), p=probs)]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(n)]

    return texts(n_docs, 20, 80), texts(n_queries, 3, 6)


def scifact() -> tuple[list[str], list[str]]:
    with gzip.open(DATA / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f]
    with open(DATA / "scifact" / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f]
    return [f"{d['title']}\n{d['text']}" for d in corpus], queries


def run_engine(engine: str, docs: list[str], queries: list[str], time_budget: float, repeat: int = 3) -> dict:
    import Stemmer

    threads = os.cpu_count() or 1
    t0 = time.perf_counter()
    if engine == "pilotfish":
        from rag.retrievers.bm25_index import BM25Index

        idx = BM25Index()
        idx.add(np.arange(len(docs)), docs)
        idx._posting_scores()  # bm25s scores postings while indexing; count the same work here
        t_index = time.perf_counter() - t0
        idx.search(queries[:2], k=10)  # warm-up (loads the compiled kernel), as for bm25s

        def search(qs: list[str]) -> None:
            idx.search(qs, k=10)

    elif engine.startswith("bm25s"):
        import bm25s

        stemmer = Stemmer.Stemmer("english")
        backend = "numba" if engine == "bm25s-numba" else "numpy"
        tok = bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False)
        model = bm25s.BM25(backend=backend)
        model.index(tok, show_progress=False)
        t_index = time.perf_counter() - t0
        warm = bm25s.tokenize(queries[:2], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
        model.retrieve(warm, k=10, show_progress=False, n_threads=threads)

        def search(qs: list[str]) -> None:
            q = bm25s.tokenize(qs, stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
            model.retrieve(q, k=10, show_progress=False, n_threads=threads)

    else:
        from rank_bm25 import BM25Okapi

        from rag.text.tokenizer import Tokenizer

        tok = Tokenizer()
        model = BM25Okapi(tok.tokenize(docs))
        t_index = time.perf_counter() - t0

        def search(qs: list[str]) -> None:
            for q in tok.tokenize(qs):
                scores = model.get_scores(q)
                np.argpartition(-scores, min(10, len(scores) - 1))[:10]

    # batch engines: all queries at once, best of `repeat` runs (the machines are shared and
    # noisy); rank-bm25: one query at a time, as many as fit the time budget
    if engine != "rank-bm25":
        done, t_q = len(queries), float("inf")
        for _ in range(repeat):
            t1 = time.perf_counter()
            search(queries)
            t_q = min(t_q, time.perf_counter() - t1)
    else:
        done, t_q = 0, 0.0
        while done < len(queries) and (t_q < time_budget or done == 0):
            t1 = time.perf_counter()
            search(queries[done : done + 1])
            t_q += time.perf_counter() - t1
            done += 1
    return {
        "engine": engine,
        "docs": len(docs),
        "index_s": round(t_index, 2),
        "docs_per_s": round(len(docs) / t_index),
        "queries": done,
        "qps": round(done / t_q, 1),
        "peak_mb": round(peak_mb()),
    }


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM). Unlike ru_maxrss, which Linux carries over from
    the parent across fork and exec, it starts afresh in each worker."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def corpus_file(n: int, n_queries: int) -> Path:
    """The synthetic corpus as a text file (one document per line), generated once and reused, so
    workers read plain strings and their peak memory is not the generator's."""
    path = RESULTS / f"zipf-{n}-{n_queries}.txt"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        docs, queries = synthetic(n, n_queries)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(queries) + "\n\n" + "\n".join(docs), encoding="utf-8")
        tmp.replace(path)
    return path


def worker(args: argparse.Namespace) -> None:
    if args.corpus == "scifact":
        docs, queries = scifact()
    else:
        head, _, body = corpus_file(int(args.corpus), args.queries).read_text(encoding="utf-8").partition("\n\n")
        docs, queries = body.split("\n"), head.split("\n")
    queries = queries[: args.queries]
    base = peak_mb()
    out = run_engine(args.engine, docs, queries, args.budget, args.repeat)
    out["corpus"] = args.corpus
    out["data_mb"] = round(base)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--budget", type=float, default=30.0, help="seconds of querying for slow engines")
    ap.add_argument("--repeat", type=int, default=3, help="query runs per batch engine (best is kept)")
    ap.add_argument("--no-scifact", action="store_true")
    ap.add_argument("--worker", nargs=2, metavar=("ENGINE", "CORPUS"))
    args = ap.parse_args()
    if args.worker:
        args.engine, args.corpus = args.worker
        worker(args)
        return
    corpora = args.sizes.split(",") + ([] if args.no_scifact else ["scifact"])
    cols = ("corpus", "engine", "index_s", "docs_per_s", "qps", "queries", "peak_mb", "data_mb")
    line = "{:>9} {:<12} {:>8} {:>10} {:>9} {:>7} {:>8} {:>8}"
    print(line.format(*cols))
    rows = []
    for corpus in corpora:
        if corpus != "scifact":
            corpus_file(int(corpus), args.queries)
        for engine in args.engines.split(","):
            cmd = [sys.executable, __file__, "--worker", engine, corpus]
            cmd += ["--queries", str(args.queries), "--budget", str(args.budget), "--repeat", str(args.repeat)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                err = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode
                print(f"{corpus:>9} {engine:<12} failed: {err}", flush=True)
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(line.format(*(r[c] for c in cols)), flush=True)
        pf = next((r for r in rows if r["corpus"] == corpus and r["engine"] == "pilotfish"), None)
        bn = next((r for r in rows if r["corpus"] == corpus and r["engine"] == "bm25s-numba"), None)
        if pf and bn:
            q, ix = pf["qps"] / bn["qps"], pf["docs_per_s"] / bn["docs_per_s"]
            print(f"{corpus:>9} pilotfish / bm25s-numba: queries x{q:.2f}, indexing x{ix:.2f}", flush=True)


if __name__ == "__main__":
    main()
