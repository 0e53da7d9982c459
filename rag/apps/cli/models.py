"""``rag train reranker|verifier|decomposer|reader`` and ``rag models list``.

Where a trained model goes: ``--out DIR`` if given; else ``<collection>/models/<task>/<name>`` when
``--collection`` is given; else the model home (``$PILOTFISH_MODELS``, default ~/.local/share/pilotfish/models).
``--name`` defaults to ``default``, the name the pipeline loads when no model is named.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rag.errors import ConfigError


def _dest(args: argparse.Namespace, task: str) -> Path:
    from rag.models.registry import model_dir

    return Path(args.out) if args.out else model_dir(task, args.name, args.collection)


def _config(args: argparse.Namespace, max_length: int) -> Any:
    from rag.train.loop import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_pairs=args.batch,
        lr=args.lr,
        max_length=args.max_length or max_length,
        max_steps=args.max_steps,
        seed=args.seed,
        threads=args.threads,
        progress=not args.quiet,
    )


def _report(args: argparse.Namespace, manifest: dict[str, Any], dest: Path) -> int:
    if args.json:
        print(json.dumps({**manifest, "path": str(dest)}, default=str))
    else:
        t = manifest.get("training", {})
        print(
            f"trained {manifest['task']} {manifest['name']!r} from {manifest['base']} in {t.get('seconds')} s "
            f"({t.get('steps', '-')} steps); saved to {dest}"
        )
        for k, v in manifest.get("metrics", {}).items():
            print(f"  {k}: {json.dumps(v)}")
        decision = manifest.get("adoption")
        if decision is not None:
            verdict = "adopted: used by default" if decision["adopted"] else "not adopted: used only where named"
            print(f"{verdict} ({decision['reason']})")
    return 0


def cmd_train_reranker(args: argparse.Namespace) -> int:
    from rag.indexers.collection import Collection
    from rag.train.reranker import train_reranker

    source: dict[str, Any]
    if args.synthesize is not None and args.synthesize < 1:
        raise ConfigError(f"--synthesize needs a positive number of documents, got {args.synthesize}")
    if args.pairs:
        source = {"pairs": args.pairs}
    elif args.qrels:
        source = {"qrels": args.qrels, "split": args.split}
    else:
        source = {"synthesize": args.synthesize}
    dest = _dest(args, "reranker")
    generator = None
    if args.synthesize:
        from rag.models.generate import LocalGenerator

        generator = LocalGenerator(args.llm, threads=args.threads)
    with Collection.open(args.collection, read_only=True) as kb:
        manifest = train_reranker(
            kb,
            source=source,
            dest=dest,
            name=args.name,
            base=args.base,
            force=args.force,
            negatives=args.negatives,
            config=_config(args, 160),
            generator=generator,
            progress=not args.quiet,
        )
    return _report(args, manifest, dest)


def cmd_train_verifier(args: argparse.Namespace) -> int:
    from rag.train.verifier import train_verifier

    dest = _dest(args, "verifier")
    manifest = train_verifier(
        args.data,
        dest=dest,
        name=args.name,
        base=args.base,
        force=args.force,
        max_questions=args.max_questions,
        config=_config(args, 192),
    )
    return _report(args, manifest, dest)


def cmd_train_decomposer(args: argparse.Namespace) -> int:
    from rag.train.decomposer import train_decomposer

    dest = _dest(args, "decomposer")
    manifest = train_decomposer(
        args.data, dest, args.name, force=args.force, base=args.base, seed=args.seed, progress=not args.quiet
    )
    return _report(args, manifest, dest)


def cmd_train_reader(args: argparse.Namespace) -> int:
    from rag.train.reader import train_reader

    if args.minutes < 0:
        raise ConfigError(f"--minutes must be 0 (no limit) or more, got {args.minutes}")
    config = _config(args, 256)
    config.max_seconds = args.minutes * 60
    config.head_lr_scale = 10.0
    manifest = train_reader(
        args.data,
        dest=_dest(args, "reader"),
        name=args.name,
        base=args.base,
        force=args.force,
        config=config,
        unanswerable=args.unanswerable,
        heldout=args.heldout,
        max_questions=args.max_questions,
    )
    return _report(args, manifest, _dest(args, "reader"))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def cmd_models_list(args: argparse.Namespace) -> int:
    from rag.models import adoption
    from rag.models.registry import list_models, models_home

    models = list_models(args.collection)
    chosen = adoption.read(args.collection)["adopted"] if args.collection else {}
    for m in models:
        entry = chosen.get(m.get("task", ""), {})
        current = adoption.adopted_model(args.collection, m["task"]) if m.get("where") == "collection" else None
        if current is not None and current == m.get("name"):
            m["adopted"] = {"at": entry.get("at"), "by": entry.get("by"), "evidence": entry.get("evidence")}
    if args.json:
        print(json.dumps(models, default=str))
        return 0
    if not models:
        where = f"{args.collection}/models or " if args.collection else ""
        print(f"no trained models in {where}{models_home()}; train one with `rag train TASK` (rag train --help)")
        return 0
    print(f"{'task':<11} {'name':<20} {'where':<10} {'base':<10} {'created':<25} metrics at training time")
    for m in models:
        flat = _flatten(m.get("metrics") or {})
        shown = " ".join(f"{k}={v}" for k, v in flat.items() if "uncalibrated" not in k)[:100]
        shown = shown if "error" not in m else f"ERROR {m['error']}"
        base, created = m.get("base", "-"), m.get("created", "-")
        print(f"{m['task']:<11} {m['name']:<20} {m['where']:<10} {base:<10} {created:<25} {shown}")
        if m.get("adopted"):
            ev = m["adopted"]["evidence"] or {}
            kind = ev.get("queries_kind", "held-out training queries")
            print(f"{'':<11} ADOPTED {m['adopted']['at']} by {m['adopted']['by']}: {ev.get('metric')} "
                  f"{ev.get('after')} against {ev.get('before')} unadapted ({ev.get('queries')} {kind})")  # fmt: skip
        print(f"{'':<11} {m['path']}")
    return 0


def _common(p: argparse.ArgumentParser, collection_required: bool = False) -> None:
    p.add_argument("--collection", required=collection_required, help="collection (models are saved into it)")
    p.add_argument("--name", default="default", help="registry name (default: default)")
    p.add_argument("--out", help="save the model in this directory instead")
    p.add_argument("--base", default="default", help="base model: HF id or path (default: the shipped MiniLM)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")


def _loop(p: argparse.ArgumentParser, lr: float, epochs: float = 1.0) -> None:
    p.add_argument("--epochs", type=float, default=epochs)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: full epochs)")
    p.add_argument("--batch", type=int, default=16, help="pairs per step")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument(
        "--max-length",
        type=int,
        default=0,
        help="tokens per pair (default: 160 reranker, 192 verifier, 256 reader)",
    )


def add_parsers(sub: Any) -> None:
    tr = sub.add_parser("train", help="train a small model: reranker, verifier, decomposer, reader")
    trs = tr.add_subparsers(dest="what", required=True)

    r = trs.add_parser("reranker", help="fine-tune a cross-encoder reranker on the collection's domain")
    _common(r, collection_required=True)
    _loop(r, 7e-5, epochs=1.5)  # the settings of the SciFact figure in benchmarks/README.md
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help="JSONL {query, doc_id|passage, label} or TSV query, doc_id|passage, label")
    src.add_argument("--qrels", help="BEIR folder with queries.jsonl and qrels/<split>.tsv")
    src.add_argument("--synthesize", type=int, metavar="N", help="the LLM writes queries for N sampled documents")
    r.add_argument("--split", default="train", help="qrels split (default: train)")
    r.add_argument("--negatives", type=int, default=3, help="hard negatives per positive")
    r.add_argument("--llm", default="default", help="LLM for --synthesize (default: the shipped SmolLM2-135M)")
    r.set_defaults(func=cmd_train_reranker)

    v = trs.add_parser("verifier", help="train a claim verifier on planted-error claims from QA data")
    _common(v)
    _loop(v, 7e-5)
    v.add_argument("--data", action="append", required=True, help="QA folder (corpus, queries, qrels, answers)")
    v.add_argument("--max-questions", type=int, default=1000, help="questions used (3 claims each)")
    v.set_defaults(func=cmd_train_verifier)

    d = trs.add_parser("decomposer", help="train the question-type classifier of the decomposer")
    _common(d)
    d.add_argument("--data", required=True, help="the shared data folder, or a JSONL {question, label}")
    d.set_defaults(func=cmd_train_decomposer)

    rd = trs.add_parser("reader", help="train the extractive reader on SQuAD-style QA folders")
    _common(rd)
    _loop(rd, 1e-4)
    rd.add_argument("--data", action="append", required=True, help="QA folder (corpus, queries, qrels, answers)")
    rd.add_argument("--minutes", type=float, default=60.0, help="time budget for training (0: no limit; default 60)")
    rd.add_argument("--max-questions", type=int, default=0, help="train on at most this many questions (0: all)")
    rd.add_argument("--heldout", type=int, default=600, help="questions of whole articles held out (default 600)")
    rd.add_argument("--unanswerable", type=float, default=0.2, help="share of extra no-answer pairs (default 0.2)")
    rd.set_defaults(func=cmd_train_reader)

    mo = sub.add_parser("models", help="list trained small models")
    mos = mo.add_subparsers(dest="what", required=True)
    ml = mos.add_parser("list", help="models in the collection and the model home")
    ml.add_argument("--collection")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models_list)
