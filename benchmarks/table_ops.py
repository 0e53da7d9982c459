"""Table operations by rules (rag.retrievers.table_ops) on WikiTableQuestions, with the question's own table.

    python benchmarks/table_ops.py --split train --n 1000     # the split the rules were written against
    python benchmarks/table_ops.py --split test --n 400       # reported: a seeded sample of the test set

Each question's table (its CSV, all cells as text) is loaded into DuckDB; the question is parsed into an
operation, its SQL is validated (rag.retrievers.sql_guard) and run; the result cells are scored by denotation
against the target values, as benchmarks/tables.py scores SQL. Reports accuracy (questions no rule parses count as
wrong) with a 95% bootstrap interval, the share parsed, and accuracy by operation kind. The table is given, so
this measures the parser; end to end (finding the table among 2,108) is benchmarks/tables.py.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
from collections import Counter
from pathlib import Path

from reader import interval  # benchmarks/reader.py: mean and 95% bootstrap interval
from tables import norm  # benchmarks/tables.py: WTQ's value normalisation

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--show", type=int, default=0, help="print this many wrong answers (train split only)")
    p.add_argument("--e2e", action="store_true", help="also find the table among all of the split's (BM25 cards)")
    args = p.parse_args()
    import duckdb

    from rag.retrievers.sql_guard import validate_sql
    from rag.retrievers.table_ops import parse

    root = DATA / ("wikitablequestions_train" if args.split == "train" else "wikitablequestions")
    tables = {}
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            tables[doc["_id"]] = doc["text"]
    gold = {}
    for line in (root / "qrels" / f"{args.split}.tsv").open(encoding="utf-8"):
        q, t, *_ = line.rstrip("\n").split("\t")
        if q != "query-id":
            gold[q] = t
    answers = {a["_id"]: a["target_values"] for a in map(json.loads, (root / "answers.jsonl").open(encoding="utf-8"))}
    queries = [json.loads(line) for line in (root / "queries.jsonl").open(encoding="utf-8")]
    queries = [q for q in queries if q["_id"] in gold and gold[q["_id"]] in tables]
    random.Random(0).shuffle(queries)
    con = duckdb.connect()
    right, kinds, parsed, shown = [], Counter(), Counter(), 0
    for q in queries[: args.n]:
        rows = list(csv.reader(io.StringIO(tables[gold[q["_id"]]])))
        labels, body = rows[0], [r + [""] * (len(rows[0]) - len(r)) for r in rows[1:]]
        labels = [lab or f"column {i + 1}" for i, lab in enumerate(labels)]
        if len(set(labels)) < len(labels):
            labels = [f"{lab} {i + 1}" for i, lab in enumerate(labels)]
        op = parse(q["text"], labels, body)
        ok = False
        if op is not None:
            con.execute("DROP TABLE IF EXISTS t")
            con.execute("CREATE TABLE t (" + ", ".join('"' + c.replace('"', '""') + '" VARCHAR' for c in labels) + ")")
            if body:
                con.executemany(
                    "INSERT INTO t VALUES (" + ", ".join("?" * len(labels)) + ")", [r[: len(labels)] for r in body]
                )
            try:
                cells = [c for r in con.execute(validate_sql(op.sql("t"), {"t"})).fetchall()[:50] for c in r]
                ok = bool(cells) and {norm(c) for c in cells if c is not None} == {norm(t) for t in answers[q["_id"]]}
            except Exception:
                ok = False
            parsed[op.kind] += 1
            kinds[op.kind] += ok
            if not ok and args.split == "train" and shown < args.show:
                shown += 1
                print(f"{q['text']!r} -> {op.kind} {op.sql('t')[:160]} | gold {answers[q['_id']]}")
        right.append(float(ok))
    out = {
        "split": args.split,
        "questions": len(right),
        "accuracy": list(interval(right)),
        "parsed": round(sum(parsed.values()) / len(right), 4),
        "by_kind": {k: {"parsed": n, "accuracy": round(kinds[k] / n, 3)} for k, n in parsed.most_common()},
    }
    print(json.dumps(out))
    if args.e2e:
        print(json.dumps(end_to_end(root, args.split, queries[: args.n], answers)))


def end_to_end(root: Path, split: str, queries: list[dict], answers: dict) -> dict:
    """The same questions through TableRetriever(mode="sql") with rules alone (no LLM): the table is found among
    all of the split's tables by their cards (BM25; page titles as card titles, as in benchmarks/tables.py), then
    the rules answer over the best one."""
    import tempfile

    from rag.indexers.collection import Collection
    from rag.indexers.tables import add_tables
    from rag.retrievers.table import TableRetriever

    path = HERE / "results" / "cache" / f"wtq-{split}-bm25"
    if not (path / "manifest.json").exists():
        kb = Collection.create(path, encoder=None)
        with tempfile.TemporaryDirectory() as tmp, gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
            files = []
            for line in f:
                doc = json.loads(line)
                files.append(Path(tmp) / f"{doc['_id']}.csv")
                files[-1].write_text(doc["text"], encoding="utf-8")
            titles = {f"{t['_id']}.csv": t["page_title"] for t in map(json.loads, (root / "tables.jsonl").open())}
            add_tables(kb, files, root=tmp, titles=titles, progress=True)
        kb.close()
    kb = Collection.open(path, read_only=True)
    tables = TableRetriever(kb, mode="sql", search="bm25")
    right, found = [], []
    for q in queries:
        hits, events = tables.retrieve_traced(q["text"])
        cells = [c.strip() for h in hits[:1] for line in h.doc.text.split("\nResult:\n", 1)[1].splitlines()[1:]
                 if not line.startswith("(first") for c in line.split(" | ")]  # fmt: skip
        right.append(float(bool(cells) and {norm(c) for c in cells} == {norm(t) for t in answers[q["_id"]]}))
        found.append(float(bool(events and events[0].get("found"))))
    kb.close()
    return {
        "end_to_end": "rules only, table found by BM25 over the split's table cards",
        "questions": len(right),
        "accuracy": list(interval(right)),
    }


if __name__ == "__main__":
    main()
