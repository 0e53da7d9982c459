"""The small models' figures on ../shared/data: reranker (SciFact), verifier (SQuAD <-> HotpotQA), decomposer
(HotpotQA multi-hop recall), and per-query CPU latency of each.

    python benchmarks/small_models.py reranker                  # trains on SciFact train qrels, then --synthesize
    python benchmarks/small_models.py reranker --sources qrels   # only the labelled variant
    python benchmarks/small_models.py verifier
    python benchmarks/small_models.py decomposer

Trained models go to benchmarks/results/models/ (reused unless --retrain); figures are printed and written to
benchmarks/results/small_models-<part>.json. Baselines and published anchors are printed with them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag import Collection
from rag.eval import evaluate_run, load_beir, parent_ids

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
RESULTS = HERE / "results"
MODELS = RESULTS / "models"
CACHE = RESULTS / "cache"


def scifact_collection() -> Collection:
    path = CACHE / "scifact-dense"
    if (path / "manifest.json").exists():
        return Collection.open(path, read_only=True)
    data = load_beir(DATA / "scifact")
    kb = Collection.create(path, encoder="default", chunk_size=0)
    kb.add(data.corpus, progress=True)
    kb.close()
    return Collection.open(path, read_only=True)


def save(part: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"small_models-{part}.json").write_text(json.dumps(result, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- reranker
def reranker(args: argparse.Namespace) -> None:
    from rag.rerank import RRF_K, CrossEncoderReranker, passage_text
    from rag.rerank_train import train_reranker
    from rag.train import TrainConfig

    kb = scifact_collection()
    kb.load()
    test = load_beir(DATA / "scifact", "test")
    first = kb.retriever("hybrid")
    cands = {q: first.retrieve(t, k=args.depth) for q, t in test.queries.items()}
    runs = {"hybrid": {q: parent_ids(h) for q, h in cands.items()}}
    rows: dict[str, Any] = {}
    for src in args.sources.split(","):
        dest = MODELS / "reranker" / f"scifact-{src}"
        if args.retrain or not dest.exists():
            source = {"qrels": str(DATA / "scifact"), "split": "train"} if src == "qrels" else {"synthesize": args.n}
            cfg = TrainConfig(epochs=args.epochs, max_length=args.max_length, threads=args.threads)
            t0 = time.perf_counter()
            train_reranker(kb, source=source, dest=dest, name=f"scifact-{src}", force=True, config=cfg)
            print(f"trained {dest.name} in {time.perf_counter() - t0:.0f} s (all steps: data, training, held-out)")
        rr = CrossEncoderReranker(dest, max_candidates=args.depth)
        manifest = rr.manifest
        lat = []
        scores: dict[str, np.ndarray] = {}
        for q, hits in cands.items():
            t0 = time.perf_counter()
            scores[q] = rr.score(test.queries[q], [passage_text(h) for h in hits])
            lat.append((time.perf_counter() - t0) * 1000)
        for w in sorted({0.0, rr.blend}):
            run = {}
            for q, hits in cands.items():
                s = scores[q]
                rank = {i: r for r, i in enumerate(np.argsort(-s, kind="stable"))}
                order = sorted(range(len(hits)), key=lambda i: -((1 - w) / (RRF_K + rank[i] + 1) + w / (RRF_K + i + 1)))
                run[q] = parent_ids([hits[i] for i in order])
            runs[f"hybrid + reranker[{src}] blend={w}"] = run
        rows[src] = {
            "training": manifest.get("training", {}),
            "heldout": manifest.get("metrics", {}),
            "blend": rr.blend,
            "latency_ms_per_query": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))},
        }
    table = {name: evaluate_run(run, test.qrels, ("ndcg@10", "recall@100", "mrr@10")) for name, run in runs.items()}
    print(f"\nSciFact test ({len(test.queries)} queries), reranking the hybrid top {args.depth}:")
    print(f"{'run':<44} {'nDCG@10':>8} {'MRR@10':>8}")
    for name, m in table.items():
        print(f"{name:<44} {m['ndcg@10']:>8.4f} {m['mrr@10']:>8.4f}")
    print(
        "published: BM25 0.665; BM25 + cross-encoder ms-marco-MiniLM-L6 (BEIR) 0.688; target with train qrels >= 0.72"
    )
    for src, r in rows.items():
        t = r["training"]
        print(
            f"[{src}] training: {t.get('groups')} groups, {t.get('steps')} steps, {t.get('seconds')} s on "
            f"{args.threads or 'all'} threads; blend {r['blend']}; latency p50 "
            f"{r['latency_ms_per_query']['p50']:.0f} ms / query ({args.depth} candidates)"
            + (f"; synthesis {t['synthesis']}" if "synthesis" in t else "")
        )
    save("reranker", {"depth": args.depth, "table": table, "models": rows})


# ---------------------------------------------------------------------------------------------- verifier
def verifier(args: argparse.Namespace) -> None:
    from rag.train import TrainConfig
    from rag.verify import NLIVerifier
    from rag.verify_train import build_claims, evaluate_verifier, train_verifier

    sets = {"squad": DATA / "squad_v1.1_dev", "hotpotqa": DATA / "hotpotqa_dev_distractor_sample"}
    result: dict[str, Any] = {}
    for train_on, test_on in (("squad", "hotpotqa"), ("hotpotqa", "squad")):
        dest = MODELS / "verifier" / f"{train_on}"
        if args.retrain or not dest.exists():
            cfg = TrainConfig(max_length=192, threads=args.threads)
            train_verifier([sets[train_on]], dest=dest, name=train_on, force=True, max_questions=args.n, config=cfg)
        test = build_claims(sets[test_on], max_questions=args.test_n, seed=1)
        trained = NLIVerifier(dest)
        t0 = time.perf_counter()
        row = {"trained": evaluate_verifier(trained, test)}
        ms = (time.perf_counter() - t0) * 1000 / len(test)
        uncal = NLIVerifier.from_model(trained._model, "uncalibrated")
        row["trained, uncalibrated"] = evaluate_verifier(uncal, test)
        row["lexical only (baseline)"] = evaluate_verifier(NLIVerifier(None), test)
        training = trained.manifest["training"]
        result[f"{train_on}->{test_on}"] = {"rows": row, "ms_per_claim": round(ms, 1), "training": training}
        print(
            f"\nverifier trained on {train_on} ({training['claims']} claims, {training['steps']} steps, "
            f"{training['seconds']} s), tested on planted-error claims from {test_on} ({len(test)} claims; "
            f"{ms:.0f} ms / claim against 3 passages):"
        )
        print(f"{'verifier':<26} {'P':>6} {'R':>6} {'F1':>6} {'acc3':>6} {'ECE':>6}")
        for name, m in row.items():
            print(
                f"{name:<26} {m['unsupported_precision']:>6.3f} {m['unsupported_recall']:>6.3f} "
                f"{m['unsupported_f1']:>6.3f} {m['verdict_accuracy']:>6.3f} {m['ece']:>6.3f}"
            )
    print("target: unsupported-claim F1 >= 0.80 on the set not trained on")
    save("verifier", result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    r = sub.add_parser("reranker")
    r.add_argument("--sources", default="qrels,synthesize")
    r.add_argument("--n", type=int, default=600, help="chunks to synthesise queries for")
    r.add_argument("--epochs", type=float, default=1.0)
    r.add_argument("--max-length", type=int, default=256)
    r.add_argument("--depth", type=int, default=30)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--retrain", action="store_true")
    r.set_defaults(func=reranker)
    v = sub.add_parser("verifier")
    v.add_argument("--n", type=int, default=800, help="training questions (3 claims each)")
    v.add_argument("--test-n", type=int, default=500, help="test questions (3 claims each)")
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--retrain", action="store_true")
    v.set_defaults(func=verifier)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
