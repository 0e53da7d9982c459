"""``rag ask`` (answer a question from a collection with citations and verified claims) and ``rag llm-serve``
(an OpenAI-compatible endpoint in front of a local model)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rag.apps.cli.common import add_pipeline_args, build_pipeline, filters_from
from rag.types import Answer

MARK = {"supported": "ok", "unsupported": "UNSUPPORTED", "contradicted": "CONTRADICTED", "unchecked": "unchecked"}


def print_answer(answer: Answer, *, with_text: bool = True) -> None:
    if with_text:
        print(answer.text)
    if answer.abstained:
        print(f"\n[abstained: {answer.trace.get('abstain_reason', '')}]")
    if answer.claims:
        print("\nclaims:")
        for c in answer.claims:
            cites = ", ".join(c.citations) or "-"
            print(f"  [{MARK[c.verdict]} {c.support:.2f}] {c.text}  (cites: {cites})")
    if answer.hits:
        print("\nsources:")
        for i, h in enumerate(answer.hits, 1):
            title = h.doc.meta.get("title") or h.doc.meta.get("source") or ""
            print(f"  [{i}] {h.doc.id}" + (f"  ({title})" if title and title != h.doc.id else ""))
            if h.doc.meta.get("sql"):
                print(f"      SQL: {h.doc.meta['sql']}")
    for stage in answer.trace.get("stages", []):  # what a table or tool route tried and could not use
        for r in stage.get("routes", []):
            for ev in r.get("events", []):
                if ev.get("status") not in (None, "ok"):
                    what = ev.get("sql") or ev.get("tool") or r["query"]
                    print(f"note: {r['kind']} route {ev['status']}: {what} ({ev.get('error', '')})", file=sys.stderr)
    for step in answer.trace.get("cascade", []):
        print(f"cascade: {step['level']} confidence {step['confidence']:.2f} (cost {step['cost']:g})")
    flagged = answer.trace.get("flagged_injection")
    if flagged:
        print(f"\nwarning: evidence that reads like instructions to the model was quoted, not obeyed: {flagged}")
    print(f"\n{answer.trace.get('total_ms', 0) / 1000:.1f} s", file=sys.stderr)


def cmd_ask(args: argparse.Namespace) -> int:
    rag = build_pipeline(args)
    if args.cascade:
        from rag.answer.cascade import Cascade, levels_from

        levels = levels_from(rag, args.cascade, max_new_tokens=args.max_new_tokens, base_url=args.base_url,
                             timeout=args.timeout, threads=args.threads)  # fmt: skip
        rag = Cascade(levels, threshold=args.threshold, budget=args.budget)
        if args.stream:
            print("error: --stream does not combine with --cascade (a level may be discarded)", file=sys.stderr)
            return 2
    filters = filters_from(args)
    if args.stream and not args.json:
        answer, streamed = None, []
        for ev in rag.stream(args.question, filters):
            if ev.type == "token":
                streamed.append(ev.text)
                print(ev.text, end="", flush=True)
            elif ev.type == "answer":
                answer = ev.answer
        assert answer is not None
        print()
        if answer.text != "".join(streamed).strip():  # abstained, repaired, or a copied evidence list tidied
            print(f"\nfinal answer ({'abstained' if answer.abstained else args.policy}): {answer.text}")
        print_answer(answer, with_text=False)
        return 0
    if args.stream:  # --json --stream: one JSON object per event
        for ev in rag.stream(args.question, filters):
            if ev.type == "token":
                print(json.dumps({"type": "token", "text": ev.text}), flush=True)
            elif ev.type == "hits":
                print(json.dumps({"type": "hits", "hits": [h.to_dict() for h in ev.hits]}), flush=True)
            elif ev.answer is not None:
                print(json.dumps({"type": "answer", "answer": ev.answer.to_dict()}, default=str), flush=True)
        return 0
    answer = rag.ask(args.question, filters)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, default=str))
    else:
        print_answer(answer)
    return 0


def cmd_llm_serve(args: argparse.Namespace) -> int:
    from rag.apps.llm_server import LLMServer
    from rag.models.generate import make_generator

    server = LLMServer(make_generator(args.llm, max_new_tokens=args.max_new_tokens), host=args.host, port=args.port)
    print(f"serving {server.model_name} at {server.url} (OpenAI chat completions); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.close()
    return 0


def add_parsers(sub: Any) -> None:
    a = sub.add_parser("ask", help="answer a question from a collection, with citations and verified claims")
    a.add_argument("question")
    a.add_argument("--collection", "--store", required=True)
    add_pipeline_args(a)
    a.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE")
    a.add_argument("--cascade", metavar="LEVELS", help="escalate: e.g. extractive,local,openai:MODEL (cheapest first)")
    a.add_argument("--threshold", type=float, default=0.5, help="cascade: confidence needed to answer")
    a.add_argument("--budget", type=float, default=float("inf"), help="cascade: most cost per question")
    a.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_ask)

    s = sub.add_parser("llm-serve", help="serve a local LLM as an OpenAI-compatible chat-completions endpoint")
    s.add_argument("--llm", default="local")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8001)
    s.add_argument("--max-new-tokens", type=int, default=256)
    s.set_defaults(func=cmd_llm_serve)
