"""The extractive reader (``rag train reader``) on ../shared/data, with the evidence given and end to end.

    python benchmarks/reader.py                          # the reader registered as "default" (model home)
    python benchmarks/reader.py --reader DIR --n 300 --e2e-mode bm25

1. **Gold evidence** (a seeded sample of ``--gold-n`` questions per set): SQuAD v1.1 dev with its paragraph,
   NQ-open with its oracle passage, HotpotQA with its two supporting paragraphs; EM and token F1 (SQuAD
   normalisation) with 95% bootstrap intervals. Inference milliseconds per question over 5 passages (the gold
   paragraph and 4 others), one question at a time, p50/p95.
2. **End to end**: ``--n`` questions per set (seeded sample), retrieval over the set's whole corpus
   (``--e2e-mode``: hybrid is the default pipeline's; bm25 is much cheaper to index on CPU), top 5, the reader
   alone (``RAG(..., llm=None)``, lexical verifier, ``flag`` policy): F1 with its interval, the share answered,
   abstention precision (an abstention is right when no retrieved passage holds a gold answer), gold-in-top-5, and
   per-stage ms.
3. With ``--int8``: the SQuAD gold-evidence row again with the reader's linear layers quantized to int8.

None of these questions is used for training: the reader trains on SQuAD *train* (other articles), and holds out
whole train articles for its own scores and calibration.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.datasets import load_answers, load_beir
from rag.eval.qa import exact_match, token_f1

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
CACHE = HERE / "results" / "cache"
SETS = {"squad": "squad_v1.1_dev", "nq": "nq_open_oracle", "hotpotqa": "hotpotqa_dev_distractor_sample"}


def interval(values: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% bootstrap interval (2,000 resamples)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (2000, len(x)))].mean(axis=1)
    return (
        round(float(x.mean()), 4),
        round(float(np.percentile(means, 2.5)), 4),
        round(float(np.percentile(means, 97.5)), 4),
    )


def sample(ids: list[str], n: int, seed: int = 0) -> list[str]:
    ids = sorted(ids)
    random.Random(seed).shuffle(ids)
    return ids[:n]


def gold(reader: Any, name: str, n: int) -> dict[str, Any]:
    data = load_beir(DATA / SETS[name])
    answers = load_answers(DATA / SETS[name] / "answers.jsonl")
    docs = {d.id: d.text for d in data.corpus}
    all_docs = list(docs)
    rng = random.Random(1)
    em, f1, ms = [], [], []
    for qid in sample([q for q in data.queries if q in answers], n):
        q, golds = data.queries[qid], answers[qid]
        passages = [docs[d] for d in data.qrels[qid] if d in docs]
        spans = reader.read(q, passages)
        pred = spans[0].text if spans else ""
        em.append(exact_match(pred, golds))
        f1.append(token_f1(pred, golds))
        five = (passages + [docs[d] for d in rng.sample(all_docs, 5)])[:5]
        t = time.perf_counter()
        reader.read(q, five)
        ms.append((time.perf_counter() - t) * 1000)
    return {
        "questions": len(f1),
        "em": interval(em),
        "f1": interval(f1),
        "ms_per_question_5_passages": {
            "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1),
        },
    }


def end_to_end(reader: Any, name: str, n: int, mode: str) -> dict[str, Any]:
    from rag.answer.pipeline import RAG
    from rag.indexers.collection import Collection
    from rag.models.verify import NLIVerifier

    data = load_beir(DATA / SETS[name])
    answers = load_answers(DATA / SETS[name] / "answers.jsonl")
    path = CACHE / f"reader-{name}-{mode}"
    if not (path / "manifest.json").exists():
        kb = Collection.create(path, encoder="default" if mode != "bm25" else None, chunk_size=0)
        kb.add(data.corpus, progress=True)
        kb.close()
    kb = Collection.open(path, read_only=True)
    pipeline = RAG(
        kb.retriever(mode), None, reader=reader, verifier=NLIVerifier(None), k=5, candidates=20, min_overlap=0
    )
    f1, answered, held, right_abstain, abstained = [], 0, 0, 0, 0
    stage_ms: dict[str, list[float]] = {}
    for qid in sample([q for q in data.queries if q in answers], n):
        golds = answers[qid]
        a = pipeline.ask(data.queries[qid])
        f1.append(0.0 if a.abstained else token_f1(a.text, golds))
        found = any(any(g.lower() in h.doc.text.lower() for g in golds) for h in a.hits[:5])
        held += found
        if a.abstained:
            abstained += 1
            right_abstain += not found
        else:
            answered += 1
        for s in a.trace.get("stages", []):
            stage_ms.setdefault(s["stage"], []).append(s["ms"])
    kb.close()
    return {
        "questions": len(f1),
        "retrieval": mode,
        "f1": interval(f1),
        "answered": round(answered / max(1, len(f1)), 4),
        "gold_in_top5": round(held / max(1, len(f1)), 4),
        "abstention_precision": round(right_abstain / abstained, 4) if abstained else None,
        "abstained": abstained,
        "stage_ms_p50": {k: round(float(np.percentile(v, 50)), 1) for k, v in stage_ms.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default="default", help="registry name, directory or HF id (default: default)")
    p.add_argument("--gold-n", type=int, default=1000, help="questions per set with gold evidence")
    p.add_argument("--n", type=int, default=300, help="questions per set end to end")
    p.add_argument("--e2e-mode", default="bm25", choices=["bm25", "dense", "hybrid"])
    p.add_argument("--sets", default="squad,nq,hotpotqa")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--int8", action="store_true", help="also measure SQuAD with int8 linear layers")
    args = p.parse_args()
    import torch

    from rag.models.reader import Reader

    torch.set_num_threads(args.threads)
    reader = Reader(args.reader)
    reader.load()
    out: dict[str, Any] = {"reader": reader.path, "gold": {}, "end_to_end": {}}
    for name in args.sets.split(","):
        out["gold"][name] = gold(reader, name, args.gold_n)
        print(json.dumps({"gold": name, **out["gold"][name]}), flush=True)
    if args.int8:  # the same SQuAD questions with int8 linear layers
        quantized = Reader(args.reader, int8=True)
        out["gold"]["squad int8"] = gold(quantized, "squad", args.gold_n)
        print(json.dumps({"gold": "squad int8", **out["gold"]["squad int8"]}), flush=True)
    for name in args.sets.split(","):
        out["end_to_end"][name] = end_to_end(reader, name, args.n, args.e2e_mode)
        print(json.dumps({"end_to_end": name, **out["end_to_end"][name]}), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "reader.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
