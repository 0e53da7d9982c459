"""Tables on WikiTableQuestions (../shared/data/wikitablequestions): finding the table, then answering.

    python benchmarks/tables.py                      # retrieval on all 4,344 test questions + answers on 40
    python benchmarks/tables.py --n 100 --llm openai:MODEL --base-url http://127.0.0.1:8001/v1
    python benchmarks/tables.py --report-only        # the figures of the answers cached so far

1. Table retrieval: each test question against the cards of all 2,108 tables (BM25, dense, hybrid over the same
   collection): recall@1, recall@5 and p50 ms per question.
2. Answer accuracy on a sample (``--n`` questions drawn with a fixed seed), end to end from the retrieved tables:
   rows-only (the 10 best rows go to the LLM through ``RAG``) and SQL (the LLM writes a query over the top-3
   tables' schemas; validated, run with a limit and a timeout, one repair round; the result's cells are the
   answer, scored by denotation as in the WikiTableQuestions evaluator). Reports how many generated queries were
   rejected by the validator, failed in execution, timed out, or were not SQL at all.

Scoring: values are normalised (case, whitespace, punctuation at the ends, ``1,000`` → 1000, ``2.0`` → 2); a SQL
answer is right when the set of result cells equals the set of target values; a rows-only (free text) answer is
right when it equals the target (strict) or contains every target value (lenient). Published anchors:
execution-based systems ≈ 40–60% accuracy (see ../shared/data/README.md). Every answer is cached in
benchmarks/results/tables-cache.jsonl by (llm, row, question id), so a rerun resumes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag import Collection
from rag.indexers.tables import add_tables
from rag.retrievers.table import TableRetriever

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "wikitablequestions"
RESULTS = HERE / "results"
CACHE_FILE = RESULTS / "tables-cache.jsonl"


def load() -> tuple[list[dict[str, Any]], dict[str, str], dict[str, list[str]]]:
    queries = [json.loads(line) for line in (DATA / "queries.jsonl").open()]
    gold = {}
    for line in (DATA / "qrels" / "test.tsv").open():
        q, t, *_ = line.rstrip("\n").split("\t")
        if q != "query-id":
            gold[q] = t
    answers = {}
    for line in (DATA / "answers.jsonl").open():
        a = json.loads(line)
        answers[a["_id"]] = [str(v) for v in a["target_values"]]
    return queries, gold, answers


def collection() -> Collection:
    path = RESULTS / "cache" / "wtq-tables"
    if not (path / "manifest.json").exists():
        titles = {}
        for line in (DATA / "tables.jsonl").open():
            t = json.loads(line)
            titles[f"{t['_id']}.csv"] = t["page_title"]
        kb = Collection.create(path, encoder="default")
        with tempfile.TemporaryDirectory() as tmp, gzip.open(DATA / "corpus.jsonl.gz", "rt") as f:
            files = []
            for line in f:
                doc = json.loads(line)
                p = Path(tmp) / f"{doc['_id']}.csv"
                p.write_text(doc["text"], encoding="utf-8")
                files.append(p)
            t0 = time.perf_counter()
            report = add_tables(kb, files, root=tmp, titles=titles, progress=True)
            print(
                f"stored {len(report.cards)} tables in {time.perf_counter() - t0:.0f}s; skipped {len(report.skipped)}"
            )
            for s in report.skipped[:5]:
                print(f"  {s.path}: {s.reason}")
        kb.close()
    return Collection.open(path, read_only=True)


def retrieval(kb: Collection, queries: list[dict[str, Any]], gold: dict[str, str]) -> dict[str, Any]:
    out = {}
    for search in ("bm25", "dense", "hybrid"):
        tr = TableRetriever(kb, search=search, k_tables=5)
        r1 = r5 = 0
        ms = []
        for q in queries:
            t0 = time.perf_counter()
            found = [t.id.removesuffix(".csv") for t in tr.find_tables(q["text"], k=5)]
            ms.append((time.perf_counter() - t0) * 1000)
            r1 += found[:1] == [gold[q["_id"]]]
            r5 += gold[q["_id"]] in found
        n = len(queries)
        out[search] = {"recall@1": r1 / n, "recall@5": r5 / n, "p50_ms": float(np.median(ms)), "n": n}
        print(f"{search:7s} recall@1 {r1 / n:.4f}  recall@5 {r5 / n:.4f}  p50 {np.median(ms):.1f} ms  (n={n})")
    return out


def norm(value: Any) -> str:
    s = " ".join(str(value).lower().split()).strip(" .,;:!?\"'")
    num = s.replace(",", "")
    if re.fullmatch(r"-?\d+(\.\d+)?", num):
        f = float(num)
        return str(int(f)) if f.is_integer() else str(f)
    return s


def cells_match(cells: list[Any], targets: list[str]) -> bool:
    return bool(cells) and {norm(c) for c in cells} == {norm(t) for t in targets}


def text_match(answer: str, targets: list[str]) -> tuple[bool, bool]:
    a = norm(answer)
    strict = (
        a == norm(targets[0]) if len(targets) == 1 else {norm(p) for p in answer.split(",")} == set(map(norm, targets))
    )
    lenient = all(norm(t) in a or norm(t) in answer.lower().replace(",", "") for t in targets)
    return strict, lenient


def answer_one(row: str, q: dict[str, Any], kb: Collection, gen: Any) -> dict[str, Any]:
    from rag.answer.pipeline import RAG

    t0 = time.perf_counter()
    if row == "rows":
        rag = RAG(TableRetriever(kb, mode="rows"), gen, k=10, candidates=10, min_overlap=0.0, max_new_tokens=32)
        a = rag.ask(q["text"])
        return {"answer": a.text, "abstained": a.abstained, "ms": (time.perf_counter() - t0) * 1000}
    tr = TableRetriever(kb, mode="sql", generator=gen, k_tables=3, retries=1)
    hits, events = tr.retrieve_traced(q["text"])
    result = hits[0].doc.text.split("\nResult:\n", 1)[1].splitlines()[1:] if hits else []
    cells = [c.strip() for line in result if not line.startswith("(first") for c in line.split(" | ")]
    statuses = [e["status"] for e in events if e.get("step") == "sql"]
    return {
        "cells": cells,
        "statuses": statuses,
        "sql": [e.get("sql") for e in events[1:]],
        "ms": (time.perf_counter() - t0) * 1000,
    }


def report(
    cache: dict[tuple[str, str, str], dict[str, Any]], llm: str, ids: list[str], answers: dict[str, list[str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = [cache[(llm, "rows", i)] for i in ids if (llm, "rows", i) in cache]
    if rows:
        got = [text_match(r["answer"], answers[i]) for i, r in zip(ids, rows, strict=False)]
        out["rows"] = {
            "n": len(rows),
            "accuracy_strict": sum(s for s, _ in got) / len(rows),
            "accuracy_lenient": sum(le for _, le in got) / len(rows),
            "abstained": sum(r["abstained"] for r in rows) / len(rows),
            "p50_ms": float(np.median([r["ms"] for r in rows])),
        }
    done = [(i, cache[(llm, "sql", i)]) for i in ids if (llm, "sql", i) in cache]
    if done:
        attempts = [s for _, r in done for s in r["statuses"]]
        out["sql"] = {
            "n": len(done),
            "accuracy": sum(cells_match(r["cells"], answers[i]) for i, r in done) / len(done),
            "answered": sum(bool(r["cells"]) for _, r in done) / len(done),
            "queries_written": len(attempts),
            **{s: attempts.count(s) for s in ("ok", "rejected", "error", "timeout")},
            "p50_ms": float(np.median([r["ms"] for _, r in done])),
        }
    for row, fig in out.items():
        print(f"{row}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fig.items()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="questions answered per row (a seeded sample)")
    ap.add_argument("--llm", default="local")
    ap.add_argument("--base-url")
    ap.add_argument("--skip-retrieval", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    queries, gold, answers = load()
    kb = collection()
    figures: dict[str, Any] = {"tables": len(kb), "questions": len(queries)}
    if not (args.skip_retrieval or args.report_only):
        figures["retrieval"] = retrieval(kb, queries, gold)
    sample = random.Random(0).sample(queries, args.n)
    ids = [q["_id"] for q in sample]
    cache: dict[tuple[str, str, str], dict[str, Any]] = {}
    if CACHE_FILE.exists():
        for line in CACHE_FILE.open():
            r = json.loads(line)
            cache[(r["llm"], r["row"], r["id"])] = r
    if not args.report_only:
        from rag.models.generate import make_generator

        options: dict[str, Any] = {"max_new_tokens": 64}
        if args.base_url:
            options["base_url"] = args.base_url
        gen = make_generator(args.llm, **options)
        with CACHE_FILE.open("a") as f:
            for n, q in enumerate(sample, 1):
                for row in ("rows", "sql"):
                    if (args.llm, row, q["_id"]) not in cache:
                        r = {"llm": args.llm, "row": row, "id": q["_id"], **answer_one(row, q, kb, gen)}
                        cache[(args.llm, row, q["_id"])] = r
                        f.write(json.dumps(r) + "\n")
                        f.flush()
                print(f"answered {n}/{len(sample)}", end="\r", flush=True)
        print()
    figures["answers"] = report(cache, args.llm, ids, answers)
    (RESULTS / "tables.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
