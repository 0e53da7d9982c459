"""Multi-hop bridging with the extractive reader on HotpotQA (dev distractor sample, all 13,179 paragraphs, BM25).

    python benchmarks/multihop_reader.py --n 300          # a seeded sample of 300 questions

For each question, the top 10 of: BM25 alone; MultiHopRetriever (rule decomposer, bridge entities read from
titles and capitalised phrases); the same with the reader (its answer from each first-hop passage fills a query
of its own). Reports the share of questions with **both** supporting paragraphs in the top 10, by type (bridge /
comparison), with 95% bootstrap intervals, and the reader's answer F1 over the top 5 of BM25 and of
multi-hop + reader (no LLM). The reader never trained on HotpotQA.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from reader import interval  # benchmarks/reader.py: mean and 95% bootstrap interval

from rag.datasets import load_answers, load_beir
from rag.eval.qa import token_f1

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "hotpotqa_dev_distractor_sample"
CACHE = HERE / "results" / "cache"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default="default")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    from rag.indexers.collection import Collection
    from rag.models.decompose.rules import RuleDecomposer
    from rag.models.reader import Reader
    from rag.retrievers.multihop import MultiHopRetriever

    torch.set_num_threads(args.threads)
    data = load_beir(DATA)
    answers = load_answers(DATA / "answers.jsonl")
    kinds = {}
    for line in (DATA / "meta.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        kinds[m["_id"]] = m["type"]
    path = CACHE / "hotpotqa-bm25"
    if not (path / "manifest.json").exists():
        kb = Collection.create(path, encoder=None, chunk_size=0)
        kb.add(data.corpus, progress=True)
        kb.close()
    kb = Collection.open(path, read_only=True)
    reader = Reader(args.reader)
    bm25 = kb.retriever("bm25")
    systems = {
        "bm25": bm25,
        "multihop": MultiHopRetriever(bm25, decomposer=RuleDecomposer()),
        "multihop+reader": MultiHopRetriever(bm25, decomposer=RuleDecomposer(), reader=reader),
    }
    qids = sorted(q for q in data.queries if q in answers)
    random.Random(0).shuffle(qids)
    both: dict[str, dict[str, list[float]]] = {s: {} for s in systems}
    f1: dict[str, list[float]] = {"bm25": [], "multihop+reader": []}
    for qid in qids[: args.n]:
        q, gold = data.queries[qid], set(data.qrels[qid])
        for name, retriever in systems.items():
            hits = retriever.retrieve(q, k=10)
            found = {str(h.doc.meta.get("parent", h.doc.id)) for h in hits}
            both[name].setdefault(kinds.get(qid) or "untyped", []).append(float(gold <= found))
            if name in f1:
                spans = reader.read(q, hits[:5])
                f1[name].append(token_f1(spans[0].text if spans else "", answers[qid]))
    out: dict[str, Any] = {"questions": args.n, "both@10": {}, "reader_f1_top5": {}}
    for name, by_kind in both.items():
        out["both@10"][name] = {k: interval(v) for k, v in sorted(by_kind.items())} | {
            "all": interval([x for v in by_kind.values() for x in v])
        }
    for name, v in f1.items():
        out["reader_f1_top5"][name] = interval(v)
    print(json.dumps(out, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "multihop_reader.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    kb.close()


if __name__ == "__main__":
    main()
