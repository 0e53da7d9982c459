"""Readers searching while a writer adds, updates and deletes: in threads of one process (a directory collection),
and in threads of several processes while another process writes (the PostgreSQL store). Every result must come
from one committed state.

The writer works in batches of ``SIZE`` documents that share a marker word; one write adds a batch, updates a
whole earlier batch, or deletes one. So in any committed state each batch has all ``SIZE`` documents or none,
and all of them are updated or none are. A search that sees part of a batch, or part of an update, saw a write
half-applied. (A directory collection belongs to one process; other processes reach it through ``rag serve``,
see tests/test_server.py and tests/test_server_load.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

from rag import Collection, Doc
from tests.support.crash_harness import HashEncoder

SIZE, BATCHES = 30, 24


def batch(b: int, updated: bool = False) -> list[Doc]:
    word = "revised" if updated else "original"
    return [Doc(f"everything batch{b} {word} item {i} about rivers", id=f"b{b}-{i}") for i in range(SIZE)]


def plan(batches: int = BATCHES) -> list[tuple[str, list, str, bool | None]]:
    """The writes, one commit each: (method, its argument, the batch, revised after it / None: deleted)."""
    ops: list[tuple[str, list, str, bool | None]] = []
    for b in range(batches):
        ops.append(("add", batch(b), f"b{b}", False))
        if b % 3 == 1:
            ops.append(("update", batch(b - 1, updated=True), f"b{b - 1}", True))
        if b % 4 == 3:
            ops.append(("delete", [d.id for d in batch(b - 3)], f"b{b - 3}", None))
    return ops


def write_batches(kb: Collection) -> None:
    for method, arg, _, _ in plan():
        getattr(kb, method)(arg)


def committed_states() -> list[dict[str, bool]]:
    """Every state a reader may see, as {batch: revised}: before the first write and after each one."""
    state: dict[str, bool] = {}
    states = [dict(state)]
    for _, _, b, revised in plan():
        if revised is None:
            del state[b]
        else:
            state[b] = revised
        states.append(dict(state))
    return states


STATES = committed_states()


def violations(hits: list[tuple[str, str]]) -> list[str]:
    """``hits`` as (id, text): what no committed state could show (part of a batch, part of an update, or a
    combination of batches that never existed together)."""
    per_batch = Counter(i.split("-")[0] for i, _ in hits)
    revised = Counter(i.split("-")[0] for i, t in hits if " revised " in t)
    out = [f"{b}: {n} of {SIZE} documents" for b, n in per_batch.items() if n != SIZE]
    out += [f"{b}: {n} of {SIZE} revised" for b, n in revised.items() if n not in (0, SIZE)]
    seen = {b: revised[b] == SIZE for b in per_batch}
    return out or ([] if seen in STATES else [f"never committed together: {sorted(seen.items())}"])


def test_threads_search_while_a_writer_adds_updates_and_deletes(tmp_path: Path) -> None:
    kb = Collection.create(tmp_path / "kb", encoder=HashEncoder(), chunk_size=0)
    kb.add([Doc("everything seed document", id="seed")])
    done = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def reader(mode: str) -> None:
        while not done.is_set():
            try:
                hits = kb.search("everything batch rivers", mode=mode, k=10_000)
            except Exception as e:  # any error is a failure
                errors.append(f"{mode}: {type(e).__name__}: {e}")
                return
            bad = violations([(h.doc.id, h.doc.text) for h in hits if h.doc.id != "seed"])
            errors.extend(f"{mode}: {v}" for v in bad)
            seen.append(len(hits))

    threads = [threading.Thread(target=reader, args=(m,)) for m in ("bm25", "dense", "hybrid", "hybrid")]
    for t in threads:
        t.start()
    try:
        write_batches(kb)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(seen) > 50 and len(set(seen)) > 5, "the readers did not run alongside the writes"
    kb.close()


READER = textwrap.dedent(
    """
    import json, os, sys, threading
    from rag import Collection
    from tests.support.crash_harness import HashEncoder
    from tests.indexers.test_concurrency import violations
    kb = Collection.open(sys.argv[1], encoder=HashEncoder(), read_only=True)
    searches, bad, sizes = [], [], set()

    def search(mode):  # threads of this process share its BM25, which follows the other process's writes
        while True:
            hits = kb.search("everything batch rivers", mode=mode, k=10_000)
            bad.extend(f"{mode}: {v}" for v in violations([(h.doc.id, h.doc.text) for h in hits if h.doc.id != "seed"]))
            searches.append(mode)
            sizes.add(len(hits))
            open(sys.argv[2] + f".ready-{os.getpid()}", "w").close()
            if os.path.exists(sys.argv[2]):
                return

    threads = [threading.Thread(target=search, args=(m,)) for m in ("bm25", "dense", "hybrid")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"searches": len(searches), "violations": bad, "sizes": len(sizes)}))
    """
)

WRITER = textwrap.dedent(
    """
    import sys
    from rag import Collection
    from tests.support.crash_harness import HashEncoder
    from tests.indexers.test_concurrency import write_batches
    kb = Collection.open(sys.argv[1], encoder=HashEncoder())
    write_batches(kb)
    kb.close()
    """
)


def test_processes_search_a_postgres_store_while_another_process_writes(pg_url: str, tmp_path: Path) -> None:
    kb = Collection.create(pg_url, encoder=HashEncoder(), chunk_size=0, dense="flat")
    kb.add([Doc("everything seed document", id="seed")])
    kb.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    stop = tmp_path / "stop"

    def spawn(script: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, pg_url, str(stop)], stdout=subprocess.PIPE, text=True, env=env
        )

    readers = [spawn(READER) for _ in range(2)]  # they search until the stop file appears
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("stop.ready-*"))) < len(readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer = spawn(WRITER)
    assert writer.wait(timeout=300) == 0
    stop.touch()
    results = [json.loads(r.communicate(timeout=120)[0].strip().splitlines()[-1]) for r in readers]
    assert all(res["violations"] == [] for res in results), results
    assert all(res["searches"] > 20 and res["sizes"] > 3 for res in results), results
