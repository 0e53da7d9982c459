"""Label-free adaptation (``rag adapt``) on BEIR sets in ../shared/data: hybrid, hybrid + the adapted reranker,
the gate's decision (made on held-out pseudo-queries only) and whether the test qrels agree with it.

    python benchmarks/adapt.py --dataset scifact --minutes 20
    python benchmarks/adapt.py --dataset nfcorpus_preprocessed --minutes 20
    python benchmarks/adapt.py --dataset scifact --minutes 5 --minutes 10 --minutes 20   # quality against budget
    python benchmarks/adapt.py --dataset scifact --minutes 10 --feedback 50             # with simulated users

``--feedback N`` simulates N users' judgements from the *train* qrels: for N sampled training questions, the user
sees the hybrid top 5 and marks each shown document useful when the qrels hold it, not useful otherwise (through
the same store ``POST /feedback`` writes). Training questions only: the test qrels stay unseen.

Each run adapts a fresh copy of the models folder of a cached collection (benchmarks/results/cache/adapt-<set>),
keeping a rejected candidate (``--keep-rejected``) so that its test score can be measured: the gate is *right*
when its decision has the sign of the test nDCG@10 difference (adopted and the test gains, or rejected and it does
not). Test qrels are used only here, after the decision. Figures are printed and written to
benchmarks/results/adapt-<set>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rag import Collection
from rag.datasets import load_beir
from rag.eval.retrieval import evaluate_run, ndcg_at_k, parent_ids
from rag.train.gate import bootstrap_ci
from rag.types import Hit

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
RESULTS = HERE / "results"
CACHE = RESULTS / "cache"


def simulate_feedback(kb: Collection, name: str, n: int, seed: int = 0) -> int:
    """Record ``n`` sampled training questions' judgements of the hybrid top 5 (module docstring)."""
    import random

    from rag.models import feedback

    train = load_beir(DATA / name, "train")
    picked = random.Random(seed).sample(sorted(train.queries), min(n, len(train.queries)))
    first = kb.retriever("hybrid")
    for q in picked:
        for doc in parent_ids(first.retrieve(train.queries[q], k=5)):
            feedback.record(kb.model_root, train.queries[q], train.qrels[q].get(doc, 0) > 0, doc_id=doc)
    return len(picked)


def collection(name: str) -> Collection:
    path = CACHE / f"adapt-{name}"
    if not (path / "manifest.json").exists():
        kb = Collection.create(path, encoder="default", chunk_size=0)
        kb.add(load_beir(DATA / name).corpus, progress=True)
        kb.close()
    shutil.rmtree(path / "models", ignore_errors=True)  # every run starts unadapted
    return Collection.open(path, read_only=True)


def reranked(model_path: Path, queries: dict[str, str], full: dict[str, list[Hit]], depth: int) -> dict:
    """Test run of a trained reranker over the hybrid top ``depth`` with its stored blend, then the first stage's
    rest to 100 (the order the pipeline returns)."""
    from rag.models.rerank import CrossEncoderReranker

    rr = CrossEncoderReranker(model_path, max_candidates=depth)
    return {q: parent_ids(rr.rerank(queries[q], hits[:depth], k=depth) + hits[depth:]) for q, hits in full.items()}


def run_once(name: str, minutes: float, args: argparse.Namespace, test: Any, full: dict, hybrid: dict) -> dict:
    from rag.models.registry import model_dir
    from rag.train.adapt import AdaptConfig, adapt

    kb = collection(name)
    judged = simulate_feedback(kb, name, args.feedback) if args.feedback else 0
    t0 = time.perf_counter()
    report = adapt(kb, AdaptConfig(minutes=minutes, threads=args.threads, keep_rejected=True), restart=True)
    seconds = time.perf_counter() - t0
    adopted = bool(report["adopted"])
    path = model_dir("reranker", "adapted" if adopted else "adapted-rejected", kb.model_root)
    run = reranked(path, test.queries, full, args.depth)
    m = evaluate_run(run, test.qrels, ("ndcg@10", "recall@100"))
    gain = m["ndcg@10"] - hybrid["ndcg@10"]
    first = {q: parent_ids(h) for q, h in full.items()}
    diffs = [ndcg_at_k(run[q], rel, 10) - ndcg_at_k(first[q], rel, 10) for q, rel in test.qrels.items()]
    kb.close()
    return {
        "minutes": minutes,
        "feedback_questions": judged,
        "wall_seconds": round(seconds, 1),
        "report": report,
        "test": m,
        "test_gain": round(gain, 4),
        "test_gain_ci95": bootstrap_ci(diffs),
        "gate": "adopted" if adopted else "rejected",
        "gate_right": (gain > 0) == adopted,
        "after_gate": m if adopted else hybrid,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--minutes", type=float, action="append", help="budget(s); default 20")
    ap.add_argument("--depth", type=int, default=30, help="candidates reranked")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--feedback", type=int, default=0, help="simulated judged training questions (needs train qrels)")
    args = ap.parse_args()
    test = load_beir(DATA / args.dataset, "test")
    kb = collection(args.dataset)
    first = kb.retriever("hybrid")
    full = {q: first.retrieve(t, k=100) for q, t in test.queries.items()}
    kb.close()
    hybrid = evaluate_run({q: parent_ids(h) for q, h in full.items()}, test.qrels, ("ndcg@10", "recall@100"))
    rows = []
    for minutes in args.minutes or [20.0]:
        row = run_once(args.dataset, minutes, args, test, full, hybrid)
        run = row["test"]
        rows.append(row)
        ev = row["report"]["candidates"][0]["heldout"]
        print(
            f"{args.dataset} --minutes {minutes:g}: gate {row['gate']} on {ev['queries']} held-out pseudo-queries "
            f"({ev['before']} -> {ev['after']}, 95% CI of the gain {ev['difference_ci95']}); test nDCG@10 "
            f"{run['ndcg@10']:.4f} vs hybrid {hybrid['ndcg@10']:.4f} ({row['test_gain']:+.4f}, 95% CI "
            f"{row['test_gain_ci95']}); gate right: "
            f"{row['gate_right']}; wall {row['wall_seconds']:.0f} s"
        )
    print(f"\n{args.dataset} test ({len(test.queries)} queries)")
    print(f"{'run':<40} {'nDCG@10':>8} {'R@100':>8}")
    print(f"{'hybrid':<40} {hybrid['ndcg@10']:>8.4f} {hybrid['recall@100']:>8.4f}")
    for row in rows:
        fb = f", {row['feedback_questions']} judged" if row["feedback_questions"] else ""
        label = f"+ adapted reranker ({row['minutes']:g} min{fb}, {row['gate']})"
        print(f"{label:<40} {row['test']['ndcg@10']:>8.4f} {row['test']['recall@100']:>8.4f}")
        after = row["after_gate"]
        print(f"{'  after the gate':<40} {after['ndcg@10']:>8.4f} {after['recall@100']:>8.4f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"dataset": args.dataset, "queries": len(test.queries), "hybrid": hybrid, "runs": rows}
    tag = "-".join(f"{m:g}" for m in args.minutes or [20.0]) + (f"-fb{args.feedback}" if args.feedback else "")
    (RESULTS / f"adapt-{args.dataset}-{tag}.json").write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
