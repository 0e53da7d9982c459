"""What the ``rag`` subcommands share: opening a collection, filters, JSON output, the pipeline's options."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_PARTIAL = 3
"""Exit status of a command that did its work but skipped some inputs (listed on stderr)."""


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None, default=str))


def open_collection(args: argparse.Namespace, read_only: bool = True) -> Any:
    from rag.indexers.collection import Collection

    return Collection.open(args.collection, read_only=read_only)


def filters_from(args: argparse.Namespace) -> dict[str, Any] | None:
    from rag.indexers.filters import merge_cli_filters

    return merge_cli_filters(args.filter) if args.filter else None


def eval_collection(args: argparse.Namespace, corpus: Sequence[Any]) -> tuple[Any, Any]:
    """The collection ``--collection`` names (indexing ``corpus`` into it when new), or a temporary one;
    returns (collection, temporary directory or None)."""
    from rag.indexers.collection import Collection, collection_exists, is_store_url

    tmp = None
    if args.collection and collection_exists(args.collection):
        return Collection.open(args.collection, read_only=True), None  # evaluation only reads
    if args.collection:
        path = args.collection if is_store_url(args.collection) else Path(args.collection)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="rag-eval-")
        path = Path(tmp.name) / "kb"
    enc = None if args.mode == "bm25" else args.encoder
    kb = Collection.create(path, encoder=enc, chunk_size=args.chunk_size)
    t0 = time.perf_counter()
    kb.add(corpus, progress=not args.quiet)
    if not args.quiet:
        print(f"indexed {len(corpus)} documents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return kb, tmp


def add_adapted_arg(a: argparse.ArgumentParser) -> None:
    """``--adapted on|off``: whether ``auto`` picks the models the collection adopted (``rag train``)."""
    a.add_argument(
        "--adapted",
        default="on",
        choices=["on", "off"],
        help="use the models the collection adopted (default on; off: the unadapted pipeline)",
    )


def reranked(kb: Any, retriever: Any, spec: str | None, adapted: bool, depth: int) -> tuple[Any, str | None]:
    """``retriever`` reranked (its top ``depth``) by ``spec``: a model, ``auto`` (the collection's adopted reranker,
    unless ``adapted`` is off) or ``none``; returns (retriever, the reranker's name or None)."""
    from rag.models.adoption import adopted_model

    name = (adopted_model(kb.model_root, "reranker") if adapted else None) if spec == "auto" else spec
    if name in (None, "none"):
        return retriever, None
    from rag.models.rerank import CrossEncoderReranker, Reranked  # torch: loaded only to rerank

    reranker = CrossEncoderReranker(name, collection=kb.model_root, max_candidates=depth)
    return Reranked(retriever, reranker, candidates=depth), name


def add_pipeline_args(a: argparse.ArgumentParser) -> None:
    """The options that shape the pipeline (``rag ask`` and ``rag serve``)."""
    a.add_argument(
        "--llm",
        default="local",
        help="local (SmolLM2-135M), hf:<id or path>, openai:<model>, or none (the extractive reader answers alone)",
    )
    a.add_argument(
        "--reader",
        default="auto",
        metavar="MODEL|auto|none",
        help="extractive reader (rag train reader) for --llm none and the cascade's extractive level; "
        "auto (default): the one registered as default, if any",
    )
    a.add_argument("--base-url", help="OpenAI-compatible server (default $OPENAI_BASE_URL); key: $OPENAI_API_KEY")
    a.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM request (openai:)")
    a.add_argument("--mode", choices=["bm25", "dense", "hybrid"], help="default hybrid (bm25 without a dense index)")
    a.add_argument("--k", type=int, default=5, help="passages in the prompt")
    a.add_argument("--candidates", type=int, default=20, help="passages retrieved and reranked")
    a.add_argument(
        "--rerank",
        default="auto",
        metavar="MODEL|auto|none",
        help="reranker: registry name, path or HF id; auto (default): the collection's adopted one, if any",
    )
    add_adapted_arg(a)
    a.add_argument("--decompose", metavar="rules|MODEL", help="split the question: rules or a trained classifier")
    a.add_argument("--verifier", default="lexical", help="lexical (default), a trained verifier, or none")
    a.add_argument("--policy", default="flag", choices=["flag", "repair", "strict"])
    a.add_argument(
        "--tables",
        default="rows",
        choices=["rows", "sql", "off"],
        help="table questions: best rows (default), sql (the LLM writes a validated query), or off",
    )
    a.add_argument("--tools", default="off", choices=["off", "builtin"], help="builtin: calculator and date tools")
    a.add_argument("--max-new-tokens", type=int, default=256)
    a.add_argument("--threads", type=int, default=None, help="torch threads for a local LLM")


def pipeline_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``RAG.from_collection`` from the options :func:`add_pipeline_args` declares."""
    from rag.models.generate import make_generator

    options: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if args.llm.startswith("openai:"):
        options.update(base_url=args.base_url, timeout=args.timeout)
    else:
        options["threads"] = args.threads
    tools = None
    if args.tools == "builtin":
        from rag.tools.builtin import BUILTIN_TOOLS

        tools = BUILTIN_TOOLS
    return {
        "llm": None if args.llm == "none" else make_generator(args.llm, **options),
        "reader": None if args.reader == "none" else args.reader,
        "mode": args.mode,
        "reranker": None if args.rerank == "none" else args.rerank,
        "adapted": args.adapted == "on",
        "decomposer": args.decompose,
        "verifier": None if args.verifier == "none" else args.verifier,
        "policy": args.policy,
        "k": args.k,
        "candidates": max(args.k, args.candidates),
        "max_new_tokens": args.max_new_tokens,
        "tables": None if args.tables == "off" else args.tables,
        "tools": tools,
    }


def build_pipeline(args: argparse.Namespace) -> Any:
    from rag.answer.pipeline import RAG

    return RAG.from_collection(args.collection, **pipeline_options(args))
