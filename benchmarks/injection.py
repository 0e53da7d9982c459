"""Injection figures: the attack corpus (rag/testing/attacks.py) against the SQL validator and the injection detector,
and the detector's false positives on real text.

    SQL: per expected outcome, how many attacks the validator rejects; the time bombs run on a 1,000-row DuckDB
        table with a 0.5 s timeout (wall time until stopped) and the row-limited queries (rows kept)
    planted instructions: flagged per technique (documents), tool outputs, questions, table cells, and the
        "subtle" plain-statement instructions the detector is not expected to catch
    false positives: the hand-written near misses, the test fixtures (tests/data), and every passage and
        question of the shared benchmark corpora (../shared/data: SciFact, NFCorpus, SQuAD, HotpotQA, NQ,
        WikiTableQuestions tables as CSV text), with the detector's time per passage

    python benchmarks/injection.py            # --no-shared to skip ../shared/data; --show 20 to list flags

End-to-end behaviour (nothing runs outside the allow-list, tables unchanged, tools unconfirmed) is asserted by
tests/test_injection.py; this script prints the figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb

from rag.errors import UnsafeQueryError
from rag.retrievers.sql_guard import validate_sql
from rag.retrievers.table_sql import (
    extract_sql,
    run_sql,
)
from rag.testing.attacks import (
    BENIGN_NEAR_MISSES,
    CELL_PAYLOADS,
    DOC_INJECTIONS,
    DOC_SUBTLE,
    QUESTION_INJECTIONS,
    SQL_ATTACKS,
    TOOL_OUTPUT_INJECTIONS,
)
from rag.text.injection import injection_match

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
FIXTURES = HERE.parent / "tests" / "data"


def sql_figures() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA tbl")
    con.execute(
        "CREATE TABLE tbl.staff AS SELECT 'p' || i AS name, i % 3 AS city, 3000 + i AS salary FROM range(1000) t(i)"
    )
    by: dict[str, list[str]] = {}
    for a in SQL_ATTACKS:
        sql = extract_sql(a.sql.format(t="staff", leak="/tmp/pilotfish-leak.csv"))  # what the table retriever takes
        try:
            safe = validate_sql(sql, ["staff"])
        except UnsafeQueryError:
            by.setdefault(a.expect, []).append("rejected")
            continue
        if a.expect in ("timeout", "limit"):
            t = time.perf_counter()
            try:
                res = run_sql(con, safe, limit=20, timeout=0.5)
                outcome = f"ok, {len(res.rows)} rows{' (cut)' if res.truncated else ''}"
            except UnsafeQueryError:
                outcome = "timeout"
            by.setdefault(a.expect, []).append(f"{outcome} in {time.perf_counter() - t:.2f} s ({a.name})")
        else:
            by.setdefault(a.expect, []).append("validated")
    print(f"SQL attacks: {len(SQL_ATTACKS)}")
    for expect, outcomes in by.items():
        counts = Counter(o if o in ("rejected", "validated") else "ran" for o in outcomes)
        print(f"  expected {expect:9s} {len(outcomes):3d}: {dict(counts)}")
        for o in outcomes:
            if o not in ("rejected", "validated"):
                print(f"      {o}")


def flag_figures(show: int) -> None:
    print(f"\nplanted instructions in documents: {len(DOC_INJECTIONS)}")
    total, hit = Counter(k for k, _ in DOC_INJECTIONS), Counter(k for k, t in DOC_INJECTIONS if injection_match(t))
    for k in total:
        print(f"  {k:13s} {hit[k]:3d} / {total[k]:3d} flagged")
    print(f"  all           {sum(hit.values()):3d} / {len(DOC_INJECTIONS):3d} flagged")
    for name, texts in [
        ("tool outputs", TOOL_OUTPUT_INJECTIONS),
        ("questions", QUESTION_INJECTIONS),
        ("table cells (prompt injections among SQL payloads)", CELL_PAYLOADS),
        ("subtle plain-statement instructions (not expected)", DOC_SUBTLE),
    ]:
        print(f"{name}: {sum(bool(injection_match(t)) for t in texts)} / {len(texts)} flagged")
    near = [t for t in BENIGN_NEAR_MISSES if injection_match(t)]
    print(f"\nnear misses (benign text using attack words): {len(near)} / {len(BENIGN_NEAR_MISSES)} flagged")
    fixtures = list(_fixture_texts())
    bad = [t for t in fixtures if injection_match(t)]
    print(f"tests/data passages and questions: {len(bad)} / {len(fixtures)} flagged")
    for t in (near + bad)[:show]:
        print(f"    {injection_match(t)!r} in {t[:100]!r}")


def _fixture_texts() -> Iterator[str]:
    from rag.connectors.files import load_path

    yield from (d.text for d in load_path(FIXTURES / "docs").docs)
    for name in ("qa", "beir"):
        for line in (FIXTURES / name / "corpus.jsonl").read_text().splitlines():
            r = json.loads(line)
            yield f"{r.get('title', '')}\n{r['text']}"
        yield from (json.loads(x)["text"] for x in (FIXTURES / name / "queries.jsonl").read_text().splitlines() if x)


def _shared_texts(d: Path) -> Iterator[tuple[str, str]]:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        p = d / name
        if p.exists():
            with gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else p.open(encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    yield "passages", f"{r.get('title', '')}\n{r['text']}"
    q = d / "queries.jsonl"
    if q.exists():
        with q.open(encoding="utf-8") as f:
            yield from (("questions", json.loads(line)["text"]) for line in f)


def shared_figures(show: int) -> None:
    if not SHARED.is_dir():
        print(f"\n{SHARED} not found: no false-positive figures on the shared corpora")
        return
    print(f"\nfalse positives on the shared corpora ({SHARED}):")
    total_n, total_flagged, total_s, total_chars = 0, 0, 0.0, 0
    for d in sorted(p for p in SHARED.iterdir() if p.is_dir()):
        n, flagged, secs = Counter[str](), Counter[str](), 0.0
        for kind, text in _shared_texts(d):
            t = time.perf_counter()
            m = injection_match(text)
            secs += time.perf_counter() - t
            n[kind] += 1
            total_chars += len(text)
            if m:
                flagged[kind] += 1
                if show > 0:
                    show -= 1
                    print(f"    {d.name}: {m!r} in {text[:100]!r}")
        for kind in n:
            print(f"  {d.name:32s} {kind:9s} {flagged[kind]:4d} / {n[kind]:6d} flagged")
        total_n, total_flagged, total_s = (
            total_n + sum(n.values()),
            total_flagged + sum(flagged.values()),
            total_s + secs,
        )
    rate = total_flagged / max(total_n, 1)
    print(f"  all: {total_flagged} / {total_n} flagged ({100 * rate:.3f}%)")
    per_text, per_char = 1e3 * total_s / max(total_n, 1), 1e6 * total_s / max(total_chars, 1)
    print(f"  detector time: {per_text:.2f} ms per text, {per_char:.2f} µs per character")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-shared", action="store_true", help="skip the shared corpora")
    ap.add_argument("--show", type=int, default=10, help="list up to this many flagged benign texts")
    args = ap.parse_args()
    sql_figures()
    flag_figures(args.show)
    if not args.no_shared:
        shared_figures(args.show)


if __name__ == "__main__":
    main()
