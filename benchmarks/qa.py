"""Answer quality of ``ask`` on ../shared/data (HotpotQA sample, NQ-open oracle, SQuAD dev), one row per pipeline:

    (a) the frozen LLM alone (closed book)
    (b) standard RAG: hybrid top-5
    (c) + reranker (cross-encoder over the top 20)
    (d) + decomposer / iterative retrieval (rules + two-hop retrieval)
    (e) + verifier repair (lexical calibrated verifier; unsupported claims re-retrieved and regenerated)
    (f) (d) + verifier strict (abstain unless every claim is supported: the abstention figures)

    python benchmarks/qa.py --n 30                   # 30 questions per dataset (the first 30 by id order)
    python benchmarks/qa.py --n 30 --report-only     # the figures of the questions answered so far
    python benchmarks/qa.py --latency 50             # the retrieval part of ask alone (run on an idle machine)
    python benchmarks/qa.py --n 30 --llm openai:MODEL --base-url http://127.0.0.1:8001/v1

EM / F1 (SQuAD normalisation, best over gold answers; abstentions score 0), abstention rate and precision (an
abstention is right when row (d) answered that question with F1 < 0.5), per-stage p50/p95 ms and tokens. Every
answer is cached in benchmarks/results/qa-cache.jsonl by (llm, dataset, row, question), so a rerun resumes.
Published anchors (FlashRAG, Llama3-8B, e5 top-5): HotpotQA F1 no retrieval 28.4 -> standard RAG 35.3 (+24%).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag import Collection
from rag.datasets import load_answers, load_beir
from rag.eval.qa import exact_match, token_f1

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
RESULTS = HERE / "results"
CACHE = RESULTS / "cache"
SETS = {"hotpotqa": "hotpotqa_dev_distractor_sample", "nq": "nq_open_oracle", "squad": "squad_v1.1_dev"}
ROWS = (
    "a LLM alone",
    "b RAG hybrid top-5",
    "c + reranker",
    "d + decomposer/multi-hop",
    "e + verifier repair",
    "f d + verifier strict",
)
CLOSED_BOOK = "Answer the question in a few words.\nQuestion: {q}\nAnswer:"


def collection(name: str) -> Collection:
    path = CACHE / f"qa-{name}-hybrid"
    if not (path / "manifest.json").exists():
        kb = Collection.create(path, encoder="default", chunk_size=0)
        kb.add(load_beir(DATA / SETS[name]).corpus, progress=True)
        kb.close()
    return Collection.open(path, read_only=True)


def pipelines(kb: Collection, gen: Any, reranker: Any) -> dict[str, Any]:
    from rag.answer.pipeline import RAG
    from rag.models.decompose.rules import RuleDecomposer
    from rag.models.verify import NLIVerifier
    from rag.retrievers.multihop import MultiHopRetriever

    hybrid = kb.retriever("hybrid")
    multihop = MultiHopRetriever(hybrid, decomposer=RuleDecomposer())
    common = {"k": 5, "candidates": 20, "max_new_tokens": 48}
    return {
        ROWS[1]: RAG(hybrid, gen, min_overlap=0, **common),
        ROWS[2]: RAG(hybrid, gen, reranker=reranker, min_overlap=0, **common),
        ROWS[3]: RAG(multihop, gen, reranker=reranker, min_overlap=0, **common),
        ROWS[4]: RAG(multihop, gen, reranker=reranker, verifier=NLIVerifier(None), policy="repair", **common),
        ROWS[5]: RAG(multihop, gen, reranker=reranker, verifier=NLIVerifier(None), policy="strict", **common),
    }


def run(args: argparse.Namespace) -> None:
    from rag.models.generate import make_generator
    from rag.models.rerank import CrossEncoderReranker

    options: dict[str, Any] = {"max_new_tokens": 48}
    if args.base_url:
        options["base_url"] = args.base_url
    elif not args.llm.startswith("openai:"):
        options["threads"] = args.threads
    gen = make_generator(args.llm, **options)
    reranker = CrossEncoderReranker(args.reranker, max_candidates=20) if args.reranker else None
    cache_path = RESULTS / "qa-cache.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache: dict[tuple[str, ...], dict[str, Any]] = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            r = json.loads(line)
            cache[(r["llm"], r["set"], r["row"], r["qid"])] = r
    out: dict[str, Any] = {"llm": args.llm, "n": args.n, "reranker": args.reranker, "sets": {}}
    names = args.sets.split(",")
    sets: dict[str, Any] = {}
    for name in names:
        data = load_beir(DATA / SETS[name])
        answers = load_answers(DATA / SETS[name] / "answers.jsonl")
        qids = sorted(q for q in data.queries if q in answers)[: args.n]
        sets[name] = (data, answers, qids)
    if args.latency:
        latency(args.latency, reranker)
        return
    if not args.report_only:
        gen.generate("Hello", max_new_tokens=1)  # load the models before timing anything
        with cache_path.open("a") as log:
            rags = {}
            for name in names:
                kb = collection(name)
                kb.load()
                rags[name] = pipelines(kb, gen, reranker)
                rags[name][ROWS[2]].retrieve("warm up")
            for i in range(args.n):  # question i of every set, then i + 1: any prefix is a balanced sample
                for name in names:
                    data, _, qids = sets[name]
                    if i < len(qids):
                        for row in ROWS:
                            key = (args.llm, name, row, qids[i])
                            if key not in cache:
                                cache[key] = answer(gen, rags[name], row, data.queries[qids[i]])
                                cache[key].update(llm=args.llm, set=name, row=row, qid=qids[i])
                                log.write(json.dumps(cache[key]) + "\n")
                                log.flush()
    for name in names:
        _, answers, qids = sets[name]
        done = [q for q in qids if all((args.llm, name, row, q) in cache for row in ROWS)]
        out["sets"][name] = report(name, done, answers, cache, args.llm)
    (RESULTS / "qa.json").write_text(json.dumps(out, indent=2) + "\n")


def latency(n: int, reranker: Any) -> None:
    """The retrieval part of ``ask`` (hybrid top 20, reranked) on the HotpotQA collection (13,179 chunks), with
    nothing else in the process: p50 / p95 ms over ``n`` questions."""
    from rag.answer.pipeline import RAG

    kb = collection("hotpotqa")
    kb.load()
    data = load_beir(DATA / SETS["hotpotqa"])
    rag = RAG(kb.retriever("hybrid"), None, reranker=reranker, k=5, candidates=20)
    questions = list(data.queries.values())[: n + 3]
    for q in questions[:3]:  # warm-up: model and index loading are not part of a query
        rag.retrieve(q)
    ms = []
    for q in questions[3:]:
        t = time.perf_counter()
        rag.retrieve(q)
        ms.append((time.perf_counter() - t) * 1e3)
    print(f"retrieval part of ask, hybrid top 20 + rerank, {kb.num_chunks} chunks, {n} questions: "
          f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms")  # fmt: skip


def answer(gen: Any, rags: dict[str, Any], row: str, q: str) -> dict[str, Any]:
    """One question through one row's pipeline: text, abstained, per-stage ms and tokens."""
    t = time.perf_counter()
    if row == ROWS[0]:
        text = gen.generate(CLOSED_BOOK.format(q=q))
        r = {"text": text, "abstained": False, "stages": {"generate": (time.perf_counter() - t) * 1e3}}
        r["tokens"] = {"prompt": 0, "completion": len(text.split())}
    else:
        a = rags[row].ask(q)
        stages: dict[str, float] = {}
        for s in a.trace["stages"]:
            stages[s["stage"]] = stages.get(s["stage"], 0.0) + s["ms"]
        r = {"text": a.text if not a.abstained else "", "abstained": a.abstained, "stages": stages}
        r["tokens"] = {"prompt": a.trace["prompt_tokens"], "completion": a.trace["completion_tokens"]}
    r["ms"] = (time.perf_counter() - t) * 1e3
    return r


def report(name: str, qids: list[str], answers: dict[str, list[str]], cache: dict[Any, Any], llm: str) -> Any:
    rows: dict[str, Any] = {}
    if not qids:
        print(f"\n{name}: no question answered by every row yet")
        return rows
    f1_d = {q: token_f1(cache[(llm, name, ROWS[3], q)]["text"], answers[q]) for q in qids}
    print(f"\n{name}: {len(qids)} questions; LLM {llm}")
    print(f"{'pipeline':<28} {'EM':>6} {'F1':>6} {'abst':>6} {'abstP':>6} {'ms p50':>8} {'ms p95':>8} {'tok in':>7}")
    for row in ROWS:
        rs = [cache[(llm, name, row, q)] for q in qids]
        em = np.mean([exact_match(r["text"], answers[q]) if r["text"] else 0.0 for r, q in zip(rs, qids, strict=True)])
        f1 = np.mean([token_f1(r["text"], answers[q]) if r["text"] else 0.0 for r, q in zip(rs, qids, strict=True)])
        abst = [q for r, q in zip(rs, qids, strict=True) if r["abstained"]]
        prec = float(np.mean([f1_d[q] < 0.5 for q in abst])) if abst else float("nan")
        ms = [r["ms"] for r in rs]
        stages = sorted({s for r in rs for s in r["stages"]})
        per_stage = {s: [r["stages"].get(s, 0.0) for r in rs] for s in stages}
        rows[row] = {
            "em": round(float(em), 4),
            "f1": round(float(f1), 4),
            "abstained": len(abst) / len(qids),
            "abstain_precision": prec,
            "ms_p50": float(np.percentile(ms, 50)),
            "ms_p95": float(np.percentile(ms, 95)),
            "stage_ms_p50_p95": {
                s: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for s, v in per_stage.items()
            },
            "prompt_tokens_mean": float(np.mean([r["tokens"]["prompt"] for r in rs])),
            "completion_tokens_mean": float(np.mean([r["tokens"]["completion"] for r in rs])),
        }
        m = rows[row]
        print(
            f"{row:<28} {m['em']:>6.3f} {m['f1']:>6.3f} {m['abstained']:>6.1%} {prec:>6.2f} {m['ms_p50']:>8.0f} "
            f"{m['ms_p95']:>8.0f} {m['prompt_tokens_mean']:>7.0f}"
        )
    for row in ROWS[1:]:
        retrieval = [
            sum(v for s, v in cache[(llm, name, row, q)]["stages"].items() if s in ("decompose", "retrieve", "rerank"))
            for q in qids
        ]
        stage = {s: f"{p50:.0f}/{p95:.0f}" for s, (p50, p95) in rows[row]["stage_ms_p50_p95"].items()}
        print(f"  {row}: retrieval part p50 {np.percentile(retrieval, 50):.0f} ms; stages p50/p95 ms {stage}")
        rows[row]["retrieval_ms_p50"] = float(np.percentile(retrieval, 50))
    a, e = rows[ROWS[0]]["f1"], rows[ROWS[4]]["f1"]
    rel = f"{(e - a) / a:+.0%} relative" if a > 0 else "relative gain undefined: (a) scored 0"
    print(f"  (e) vs (a) F1: {e - a:+.3f} absolute, {rel} (FlashRAG, Llama3-8B, HotpotQA: +24% relative)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="questions per dataset")
    ap.add_argument("--sets", default="hotpotqa,nq,squad")
    ap.add_argument("--llm", default="local")
    ap.add_argument("--base-url")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--report-only", action="store_true", help="print the figures of the cached answers")
    ap.add_argument("--latency", type=int, default=0, help="only time the retrieval part of ask on N questions")
    ap.add_argument(
        "--reranker",
        default=str(RESULTS / "models" / "reranker" / "scifact-qrels"),
        help="reranker for rows c-e (default: the one small_models.py trains on SciFact; '' for none)",
    )
    run(ap.parse_args())


if __name__ == "__main__":
    main()
