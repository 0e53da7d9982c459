"""Retrieval quality on ../shared/data: nDCG@10, recall@100, MRR@10 for bm25, dense and hybrid.

The peer row (bm25s, Lucene BM25 with the same stop words and stemmer) is computed in the same run
with the same metric code. Dense collections are cached (embedding SciFact takes minutes on 2 CPU
cores); pass --fresh to rebuild them.

    python benchmarks/retrieval_quality.py
    python benchmarks/retrieval_quality.py --datasets scifact --modes bm25
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from rag import Collection
from rag.datasets import load_beir
from rag.eval.retrieval import evaluate_retriever, evaluate_run

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
CACHE = HERE / "results" / "cache"
TARGETS = {
    ("scifact", "bm25"): 0.67,
    ("scifact", "dense"): 0.64,
    ("scifact", "hybrid"): 0.69,
    ("nfcorpus_preprocessed", "bm25"): 0.32,
}
PUBLISHED = {
    ("scifact", "bm25"): "BEIR BM25 0.665",
    ("scifact", "dense"): "all-MiniLM-L6-v2 ~0.645",
    ("nfcorpus_preprocessed", "bm25"): "BEIR BM25 0.325 (raw text)",
}
METRICS = ("ndcg@10", "recall@100", "mrr@10")


def bm25s_peer(name: str) -> dict[str, float]:
    import bm25s
    import Stemmer

    data = load_beir(DATA / name)
    stem = Stemmer.Stemmer("english")
    texts = [f"{d.meta.get('title', '')}\n{d.text}" for d in data.corpus]
    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    qids = list(data.queries)
    q = bm25s.tokenize([data.queries[i] for i in qids], stopwords="en", stemmer=stem, show_progress=False)
    docs, _ = model.retrieve(q, k=100, show_progress=False)
    run = {qid: [data.corpus[j].id for j in row] for qid, row in zip(qids, docs, strict=True)}
    return evaluate_run(run, data.qrels, METRICS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="scifact,nfcorpus_preprocessed")
    ap.add_argument("--modes", default="bm25,dense,hybrid")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    modes = args.modes.split(",")
    print(f"{'dataset':<22} {'system':<16} " + " ".join(f"{m:>10}" for m in METRICS) + "  target / published")
    for name in args.datasets.split(","):
        data = load_beir(DATA / name)
        dense = any(m != "bm25" for m in modes)
        path = CACHE / f"{name}-{'dense' if dense else 'bm25'}"
        if args.fresh and path.exists():
            shutil.rmtree(path)
        if (path / "manifest.json").exists():
            kb = Collection.open(path)
        else:
            kb = Collection.create(path, encoder="default" if dense else None, chunk_size=0)
            t0 = time.perf_counter()
            kb.add(data.corpus, progress=True)
            print(f"# indexed {len(data.corpus)} documents of {name} in {time.perf_counter() - t0:.0f} s")
        for mode in modes:
            scores = evaluate_retriever(kb.retriever(mode), data.queries, data.qrels, METRICS)
            note = " / ".join(x for x in (str(TARGETS.get((name, mode), "")), PUBLISHED.get((name, mode), "")) if x)
            print(
                f"{name:<22} {'pilotfish ' + mode:<16} "
                + " ".join(f"{scores[m]:>10.4f}" for m in METRICS)
                + f"  {note}"
            )
        kb.close()
        peer = bm25s_peer(name)
        print(f"{name:<22} {'bm25s (peer)':<16} " + " ".join(f"{peer[m]:>10.4f}" for m in METRICS), flush=True)


if __name__ == "__main__":
    main()
