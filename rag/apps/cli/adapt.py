"""``rag adapt``: fit the collection's reranker to its documents without labels (:mod:`rag.train.adapt`).

Prints the stages with the time used and left, then the decision; ``--json`` prints the report: every candidate
with its held-out pseudo-query scores before and after, ``adopted`` and ``rejected`` (with the reason). Running it
again after an interruption resumes from the last finished stage; ``--restart`` starts over.
"""

from __future__ import annotations

import argparse
from typing import Any

from rag.apps.cli.common import print_json
from rag.errors import ConfigError


def cmd_adapt(args: argparse.Namespace) -> int:
    from rag.indexers.collection import Collection
    from rag.train.adapt import AdaptConfig, adapt

    if args.minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {args.minutes}")
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    config = AdaptConfig(
        minutes=args.minutes,
        sources=sources,
        train_queries=args.queries,
        heldout_queries=args.heldout,
        llm=args.llm,
        llm_queries=args.llm_queries,
        max_steps=args.max_steps,
        seed=args.seed,
        threads=args.threads,
        progress=not args.quiet,
        keep_rejected=args.keep_rejected,
    )
    with Collection.open(args.collection, read_only=True) as kb:
        report = adapt(kb, config, name=args.name, restart=args.restart)
    if args.json:
        print_json(report)
        return 0
    _print(report)
    return 0


def _print(report: dict[str, Any]) -> None:
    for c in report["candidates"]:
        ev, pq, t = c["heldout"], c["pseudo_queries"], c["training"]
        lo, hi = ev["difference_ci95"]
        extra = [f"{c['feedback_questions']} judged questions"] if c.get("feedback_questions") else []
        extra += [f"{c['llm_queries']['kept']} LLM-written queries"] if c.get("llm_queries") else []
        print(
            f"{c['task']} {c['name']!r}: trained {t['steps']} steps ({t['seconds']} s, {t['device']}) on "
            f"{pq['train']} pseudo-queries{''.join(f' + {e}' for e in extra)} ({pq['heldout']} more held out; "
            f"by source: {', '.join(f'{k} {v}' for k, v in pq['by_source'].items())})"
        )
        print(
            f"  held-out pseudo-queries ({ev['queries']}): nDCG@10 {ev['before']} unadapted -> {ev['after']} adapted "
            f"(gain 95% interval {lo:+.4f} to {hi:+.4f}; blend {ev['blend']})"
        )
    for task in report["adopted"]:
        print(f"adopted: the {task} is used by default (rag ask, rag serve, rag search --rerank auto)")
    for r in report["rejected"]:
        print(f"not adopted: {r['task']} ({r['reason']}); the unadapted pipeline stays in use")
    print(f"done in {report['seconds'] / 60:.1f} min")


def add_parsers(sub: Any) -> None:
    a = sub.add_parser("adapt", help="fit the small models to a collection from its own text, no labels needed")
    a.add_argument("--collection", required=True, help="collection folder")
    a.add_argument("--minutes", type=float, default=20.0, help="time budget (default: 20)")
    a.add_argument("--sources", default="sentence,title,crop", help="pseudo-query sources (default: all three)")
    a.add_argument("--queries", type=int, default=2000, help="training pseudo-queries at most (default: 2000)")
    a.add_argument("--heldout", type=int, default=200, help="held-out pseudo-queries for the gate (default: 200)")
    a.add_argument("--llm", default=None, help="also train on queries this LLM writes: local, hf:ID, openai:MODEL")
    a.add_argument("--llm-queries", type=int, default=200, help="documents the LLM writes a query for (default: 200)")
    a.add_argument("--name", default="adapted", help="name of the adapted model (default: adapted)")
    a.add_argument("--max-steps", type=int, default=0, help="stop training after this many steps (0: the budget)")
    a.add_argument("--keep-rejected", action="store_true", help="keep a rejected model as NAME-rejected (not used)")
    a.add_argument("--restart", action="store_true", help="start over instead of resuming an interrupted run")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=None, help="torch threads")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.add_argument("--quiet", action="store_true", help="no progress")
    a.set_defaults(func=cmd_adapt)
