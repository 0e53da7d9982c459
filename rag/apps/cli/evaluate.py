"""``rag eval retrieval`` (nDCG, recall, MRR, MAP on a BEIR folder) and ``rag eval cascade`` (the cost/quality
curve of an escalation cascade on a QA folder)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rag.apps.cli.common import add_adapted_arg, eval_collection, print_json, reranked


def cmd_eval(args: argparse.Namespace) -> int:
    from rag.datasets import load_beir
    from rag.eval.retrieval import evaluate_retriever

    data = load_beir(args.dataset, args.split)
    queries = dict(list(data.queries.items())[: args.max_queries] if args.max_queries else data.queries)
    qrels = {q: data.qrels[q] for q in queries}
    kb, tmp = eval_collection(args, data.corpus)
    try:
        retriever, reranker = reranked(
            kb, kb.retriever(args.mode), args.rerank, args.adapted == "on", args.rerank_depth
        )
        t0 = time.perf_counter()
        scores = evaluate_retriever(retriever, queries, qrels, progress=not args.quiet)
        took = time.perf_counter() - t0
    finally:
        kb.close()
        if tmp is not None:
            tmp.cleanup()
    result = {
        "dataset": str(args.dataset),
        "split": args.split,
        "mode": args.mode,
        "rerank": reranker,
        "queries": len(queries),
        **{k: round(v, 4) for k, v in scores.items()},
        "seconds": round(took, 2),
    }
    if args.json:
        print_json(result)
    else:
        rr = f", reranked top {args.rerank_depth} with {reranker}" if reranker else ""
        print(f"{args.dataset} ({args.split}, {len(queries)} queries), mode={args.mode}{rr}")
        for k, v in scores.items():
            print(f"  {k:<11} {v:.4f}")
    return 0


def cmd_eval_cascade(args: argparse.Namespace) -> int:
    from rag.answer import assemble
    from rag.answer.cascade import evaluate_cascade, levels_from
    from rag.answer.pipeline import RAG
    from rag.datasets import load_answers, load_beir
    from rag.models.verify import NLIVerifier

    data = load_beir(args.dataset, args.split)
    answers = load_answers(f"{args.dataset}/answers.jsonl")
    questions = {q: t for q, t in data.queries.items() if q in answers}
    questions = dict(list(questions.items())[: args.max_queries] if args.max_queries else questions.items())
    kb, tmp = eval_collection(args, data.corpus)
    try:
        reranker = None
        if args.rerank:
            from rag.models.rerank import CrossEncoderReranker

            reranker = CrossEncoderReranker(args.rerank, collection=kb.model_root, max_candidates=20)
        verifier = NLIVerifier(None if args.verifier == "lexical" else args.verifier, collection=kb.model_root)
        reader = assemble.reader(None if args.reader == "none" else args.reader, kb.model_root)
        # no LLM in the base: the extractive level reads (or quotes a sentence without a reader), and levels_from
        # gives each LLM level its own generator
        base = RAG(kb.retriever(args.mode), None, reranker=reranker, verifier=verifier, reader=reader, k=5,
                   candidates=20, max_new_tokens=args.max_new_tokens)  # fmt: skip
        levels = levels_from(base, args.levels, max_new_tokens=args.max_new_tokens, base_url=args.base_url)
        result = evaluate_cascade(levels, questions, answers, progress=not args.quiet)
    finally:
        kb.close()
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.dataset}: {result['questions']} questions; levels (cost): "
          + ", ".join(f"{n} ({lv[2]:g})" for n, lv in zip(result["levels"], levels, strict=True)))  # fmt: skip
    for n, r in result["alone"].items():
        print(f"  {n} alone: F1 {r['f1']:.3f}")
    head = "  ".join(f"{n[:12]:>12}" for n in result["levels"])
    print(f"{'threshold':>9}  {head}  {'abstain':>7}  {'F1':>6}  {'F1 ans':>6}  {'cost/q':>6}")
    for row in result["curve"]:
        counts = "  ".join(f"{row['answered_by'][n]:>12}" for n in result["levels"])
        print(
            f"{row['threshold']:>9.2f}  {counts}  {row['abstained']:>7}  {row['f1']:>6.3f}  "
            f"{row['f1_answered']:>6.3f}  {row['cost_per_question']:>6.2f}"
        )
    if args.target is not None:
        ok = [r for r in result["curve"] if r["f1_answered"] >= args.target and r["abstained"] < result["questions"]]
        best = min(ok, key=lambda r: (r["cost_per_question"], r["abstained"]), default=None)
        print(
            f"target F1 on answered questions >= {args.target}: "
            + (f"threshold {best['threshold']:.2f} (cost {best['cost_per_question']:.2f} / question, "
               f"{best['abstained']} abstained)" if best else "not reached at any threshold")
        )  # fmt: skip
    return 0


def add_eval_retrieval(evs: Any) -> None:
    """``rag eval retrieval``."""
    er = evs.add_parser("retrieval", help="nDCG@10, recall@100, MRR@10, MAP@10")
    er.add_argument("--dataset", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    er.add_argument("--mode", default="hybrid", choices=["bm25", "dense", "hybrid"])
    er.add_argument("--split", default="test")
    er.add_argument("--encoder", default="default")
    er.add_argument("--chunk-size", type=int, default=0, help="0 (default) indexes each document whole")
    er.add_argument("--collection", "--store", help="reuse (or create and keep) the collection here")
    er.add_argument("--max-queries", type=int, default=0)
    er.add_argument(
        "--rerank",
        default="auto",
        metavar="MODEL|auto|none",
        help="rerank with this reranker (registry name, path or HF id); auto (default): the collection's adopted one",
    )
    add_adapted_arg(er)
    er.add_argument("--rerank-depth", type=int, default=30, help="first-stage hits reranked (default 30)")
    er.add_argument("--json", action="store_true")
    er.add_argument("--quiet", action="store_true")
    er.set_defaults(func=cmd_eval)


def add_eval_cascade(evs: Any) -> None:
    c = evs.add_parser("cascade", help="cost/quality curve of an escalation cascade on a QA folder")
    c.add_argument("--dataset", required=True, help="QA folder: BEIR files plus answers.jsonl")
    c.add_argument(
        "--levels",
        default="extractive,local",
        help="cheapest first: extractive (cost 0), local or hf:ID (cost 1), openai:M (cost 10)",
    )
    c.add_argument("--base-url", help="OpenAI-compatible server for openai: levels")
    c.add_argument("--collection", "--store", help="reuse (or create and keep) the collection here")
    c.add_argument("--mode", default="hybrid", choices=["bm25", "dense", "hybrid"])
    c.add_argument("--encoder", default="default")
    c.add_argument("--chunk-size", type=int, default=0)
    c.add_argument("--split", default="test")
    c.add_argument("--rerank", metavar="MODEL")
    c.add_argument("--verifier", default="lexical")
    c.add_argument(
        "--reader",
        default="auto",
        metavar="MODEL|auto|none",
        help="the extractive level's reader; auto (default): the one registered as default, if any (else the "
        "evidence sentence closest to the question)",
    )
    c.add_argument("--max-queries", type=int, default=30)
    c.add_argument("--max-new-tokens", type=int, default=48)
    c.add_argument("--target", type=float, help="print the cheapest threshold reaching this F1 on answered questions")
    c.add_argument("--json", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_eval_cascade)


def add_parsers(sub: Any) -> None:
    """The ``eval`` group: ``retrieval`` and ``cascade``."""
    ev = sub.add_parser("eval", help="evaluate on a BEIR-format dataset")
    evs = ev.add_subparsers(dest="what", required=True)
    add_eval_retrieval(evs)
    add_eval_cascade(evs)
