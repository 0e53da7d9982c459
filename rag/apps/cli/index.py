"""``rag index``, ``search``, ``eval retrieval``, ``reindex``, ``info``, ``check`` and ``delete``: a collection's
documents and indexes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.apps.cli.common import EXIT_PARTIAL, add_adapted_arg, filters_from, open_collection, print_json, reranked


@dataclass
class _Sources:
    """What ``rag index`` read from its PATH: files found, documents parsed, tables to load, inputs skipped."""

    files: list[Path] = field(default_factory=list)
    docs: list[Any] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    root: Path | None = None


def _read_sources(args: argparse.Namespace) -> _Sources:
    """The files (or a database's tables) under ``args.path``; documents are parsed here unless Ray reads them."""
    from tqdm import tqdm

    from rag.connectors.common import Skipped
    from rag.connectors.files import iter_files, read_file
    from rag.connectors.postgres import is_postgres_url, read_postgres
    from rag.connectors.tables import is_table_file
    from rag.errors import SourceError

    src = _Sources()
    if is_postgres_url(args.path):  # the tables of a database, read-only
        src.tables.extend(read_postgres(args.path, schema=args.pg_schema))
    else:
        path = Path(args.path)
        src.root = path if path.is_dir() else path.parent
        src.files = list(iter_files(path))
    src.tables.extend(f for f in src.files if is_table_file(f))
    to_read = [] if args.ray else [f for f in src.files if not is_table_file(f)]
    for f in tqdm(to_read, desc="reading", unit="file", disable=None if not args.quiet else True):
        try:
            got, bad = read_file(f, root=src.root)
            src.docs.extend(got)
            src.skipped.extend(bad)
        except SourceError as e:
            src.skipped.append(Skipped(e.source, e.reason))
    return src


def _target(args: argparse.Namespace) -> Any:
    """The collection ``--collection`` names, created with the indexing options when it does not exist."""
    from rag.indexers.collection import Collection, collection_exists

    if collection_exists(args.collection):
        return Collection.open(args.collection)
    encoder = None if args.encoder.lower() == "none" else args.encoder
    dense = {"dense": args.dense} if args.dense else {}
    return Collection.create(
        args.collection, encoder=encoder, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap, **dense
    )


def _ingest(args: argparse.Namespace, kb: Any, src: _Sources) -> dict[str, Any]:
    """Write the documents (through Ray when asked) and the tables into ``kb``; the summary ``--json`` prints."""
    from rag.connectors.common import Skipped
    from rag.connectors.tables import is_table_file
    from rag.indexers.tables import add_tables

    totals: Counter[str] = Counter()
    if args.ray:  # read, chunk and embed on a Ray cluster; write here
        from rag.indexers.ray import index_with_ray

        texts = [f for f in src.files if not is_table_file(f)]
        res, bad = index_with_ray(kb, texts, root=src.root, address=args.ray, workers=args.workers,
                                  write_batch=args.batch, progress=not args.quiet)  # fmt: skip
        totals.update(vars(res))
        src.skipped.extend(bad)
    with kb.bulk_load(len(src.docs)):  # a large ingest: the store may build its ANN index once, at the end
        for i in range(0, len(src.docs), args.batch):
            totals.update(vars(kb.add(src.docs[i : i + args.batch], progress=not args.quiet)))
    n_docs = totals["added"] + totals["updated"] + totals["unchanged"]  # documents read (tables come next)
    if src.tables and not kb.supports_tables:
        why = "tables need a directory collection (the PostgreSQL store keeps documents only)"
        src.skipped.extend(Skipped(str(getattr(t, "source", t)), why) for t in src.tables)
        src.tables = []
    report = add_tables(kb, src.tables, root=src.root, progress=not args.quiet)
    src.skipped.extend(report.skipped)
    if report.result is not None:
        totals.update(vars(report.result))
    return {
        "collection": kb.location,
        "files": len(src.files),
        "documents": n_docs,
        "tables": len(report.cards),
        **totals,
        "skipped": [{"path": s.path, "reason": s.reason} for s in src.skipped],
        "total_documents": len(kb),
        "total_chunks": kb.num_chunks,
    }


def cmd_index(args: argparse.Namespace) -> int:
    src = _read_sources(args)
    with _target(args) as kb:
        summary = _ingest(args, kb, src)
    if args.json:
        print_json(summary)
    else:
        bad_files = sum(1 for s in src.skipped if not s.path.rsplit(":", 1)[-1].isdigit())  # not JSONL lines
        tables = summary["tables"]
        print(
            f"{summary['files']} files read ({bad_files} skipped), {tables} table{'' if tables == 1 else 's'}: "
            f"{summary.get('added', 0)} documents added, {summary.get('updated', 0)} updated, "
            f"{summary.get('unchanged', 0)} unchanged; {summary.get('chunks_added', 0)} chunks written. "
            f"{summary['collection']} holds {summary['total_documents']} documents in {summary['total_chunks']} chunks."
        )
    if src.skipped:
        print(f"skipped {len(src.skipped)}:", file=sys.stderr)
        for s in src.skipped:
            print(f"  {s.path}: {s.reason}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with open_collection(args) as kb:
        retriever, reranker = reranked(
            kb, kb.retriever(args.mode, k=args.k), args.rerank, args.adapted == "on", args.rerank_depth
        )
        kb.load()  # model and index loading are not part of the query time
        filters = filters_from(args)
        t0 = time.perf_counter()
        hits = retriever.retrieve(args.query, k=args.k, filters=filters)
        took = (time.perf_counter() - t0) * 1000
    if args.json:
        print_json({"query": args.query, "hits": [h.to_dict() for h in hits], "took_ms": round(took, 2)})
        return 0
    if not hits:
        print("no results")
    for i, h in enumerate(hits, 1):
        m = h.doc.meta
        source = m.get("source") if m.get("source") != m.get("parent", h.doc.id) else None
        where = ", ".join(str(x) for x in (source, f"p. {m['page']}" if m.get("page") else None) if x)
        snippet = " ".join(h.doc.text.split())
        snippet = snippet[:240] + ("..." if len(snippet) > 240 else "")
        print(f"{i:>2}. {h.score:.4f}  {h.doc.id}" + (f"  ({where})" if where else ""))
        print(f"    {snippet}")
    print(f"{len(hits)} hits in {took:.1f} ms ({args.mode}{f', reranked by {reranker}' if reranker else ''})")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    with open_collection(args, read_only=False) as kb:
        res = kb.rebuild(progress=True)
        print(f"rebuilt the indexes of {kb.location} from {res.chunks_added} chunks")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with open_collection(args) as kb:
        m = kb.manifest
        info = {
            "path": kb.location,
            "documents": len(kb),
            "chunks": kb.num_chunks,
            "generation": kb.generation,
            "encoder": m["encoder"],
            "params": m["params"],
            "fields": sorted(kb.fields()),
            **({"payloads": m["payloads"]} if "payloads" in m else {"schema_version": m.get("schema_version")}),
        }
    print_json(info) if args.json else print(json.dumps(info, indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    with open_collection(args) as kb:
        problems = kb.check()
        where = kb.location
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{where}: {'damaged, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
    return 1 if problems else 0


def cmd_delete(args: argparse.Namespace) -> int:
    with open_collection(args, read_only=False) as kb:
        res = kb.delete(args.ids)
        print(f"deleted {res.deleted} documents ({res.chunks_removed} chunks) from {kb.location}")
    return 0


def _add_index(sub: Any) -> None:
    """``rag index``."""
    ix = sub.add_parser(
        "index", help="index a file or folder (documents and tables), or the tables of a postgresql:// database"
    )
    ix.add_argument("path", help="file, folder, or postgresql://user@host:port/db (its tables, read-only)")
    ix.add_argument("--pg-schema", default="public", help="schema whose tables a postgresql:// path reads")
    ix.add_argument(
        "--collection",
        "--store",
        required=True,
        help="collection directory, or postgresql://... URL (--store); created if missing",
    )
    ix.add_argument("--encoder", default="default", help="HF id or path of the embedder; 'none' for BM25 only")
    ix.add_argument("--chunk-size", type=int, default=200, help="words per chunk (0: whole documents)")
    ix.add_argument("--chunk-overlap", type=int, default=40)
    ix.add_argument("--dense", choices=["flat", "hnsw", "ivf"],
                    help="dense index of a new collection (default: flat in a directory, hnsw in a store)")  # fmt: skip
    ix.add_argument("--batch", type=int, default=5000, help="documents per write")
    ix.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="read, chunk and embed on Ray: a local cluster, or the one at ADDRESS (auto, ray://...)",
    )
    ix.add_argument("--workers", type=int, help="Ray actors chunking and embedding (default: CPUs, or GPUs)")
    ix.add_argument("--json", action="store_true")
    ix.add_argument("--quiet", action="store_true")
    ix.set_defaults(func=cmd_index)


def _add_search(sub: Any) -> None:
    """``rag search``."""
    se = sub.add_parser("search", help="search a collection")
    se.add_argument("query")
    se.add_argument("--collection", "--store", required=True)
    se.add_argument("--mode", default="hybrid", choices=["bm25", "dense", "hybrid"])
    se.add_argument("--k", type=int, default=10)
    se.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="metadata filter: FIELD=V, FIELD!=V, FIELD>=V, FIELD<V ...; repeat a field for OR",
    )
    se.add_argument(
        "--rerank",
        default="none",
        metavar="MODEL|auto|none",
        help="rerank the hits: a model, or auto (the collection's adopted reranker, if any); default none",
    )
    se.add_argument("--rerank-depth", type=int, default=30, help="first-stage hits reranked (default 30)")
    add_adapted_arg(se)
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)


def _add_maintenance(sub: Any) -> None:
    """``rag reindex``, ``info``, ``check`` and ``delete``."""
    ri = sub.add_parser("reindex", help="rebuild a collection's indexes from its document store")
    ri.add_argument("--collection", "--store", required=True)
    ri.set_defaults(func=cmd_reindex)

    inf = sub.add_parser("info", help="show a collection's statistics and settings")
    inf.add_argument("--collection", "--store", required=True)
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(func=cmd_info)

    ck = sub.add_parser("check", help="check a collection's integrity (checksums, store, indexes); exit 1 if damaged")
    ck.add_argument("--collection", "--store", required=True)
    ck.set_defaults(func=cmd_check)

    de = sub.add_parser("delete", help="delete documents by id")
    de.add_argument("ids", nargs="+")
    de.add_argument("--collection", "--store", required=True)
    de.set_defaults(func=cmd_delete)


def add_parsers(sub: Any) -> None:
    """``rag index`` and ``rag search``."""
    _add_index(sub)
    _add_search(sub)


def add_maintenance_parsers(sub: Any) -> None:
    """``rag reindex``, ``info``, ``check`` and ``delete``."""
    _add_maintenance(sub)
