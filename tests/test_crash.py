"""A process killed in the middle of a write leaves the collection at its last committed state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rag import Collection, Doc

WRITER = textwrap.dedent(
    """
    import sys
    from rag import Collection, Doc
    kb = Collection.open(sys.argv[1])
    start = int(sys.argv[2])
    for b in range(start, start + 1000):
        kb.add([Doc(f"batch {b} document {i} text about topic{i % 7}", id=f"b{b}-{i}") for i in range(50)])
        kb.delete([f"b{b}-0"])
        print(b, flush=True)
    """
)


def _state(path: Path) -> tuple[int, int, set[str]]:
    kb = Collection.open(path)
    try:
        hits = kb.search("topic3", mode="bm25", k=10_000)
        return kb.generation, len(kb), {h.doc.id for h in hits}
    finally:
        kb.close()


def _run_writer(path: Path, start: int, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _consistent(path: Path) -> None:
    """The collection opens, passes its checksums, and its indexes agree with its store."""
    gen, n_docs, found = _state(path)
    kb = Collection.open(path)
    try:
        ids = set(kb.ids())
        assert len(ids) == n_docs == len(kb)
        assert {h.doc.id for h in kb.search("document", mode="bm25", k=100_000)} == ids
        expected_topic3 = {i for i in ids if i.endswith(("-3", "-10", "-17", "-24", "-31", "-38", "-45"))}
        assert found == expected_topic3
        # the next writer rolls back what the crash left and writes cleanly on top
        kb.add([Doc(f"document written after the crash marker{gen}", id=f"after-{gen}")])
        assert kb.search(f"marker{gen}", mode="bm25", k=1)[0].doc.id == f"after-{gen}"
    finally:
        kb.close()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_store", "after_bm25", "before_manifest", "after_manifest"])
def test_kill_at_each_write_stage(tmp_path, point):
    path = tmp_path / "kb"
    Collection.create(path, encoder=None).close()
    p = _run_writer(path, 0, {"PILOTFISH_FAULT": point})
    p.wait(timeout=120)
    assert p.returncode == -signal.SIGKILL
    gen, n_docs, _ = _state(path)
    if point == "after_manifest":
        assert (gen, n_docs) == (1, 50)  # committed just before the kill
    else:
        assert (gen, n_docs) == (0, 0)  # the interrupted write is invisible
    _consistent(path)


@pytest.mark.slow
def test_kill_at_random_moments(tmp_path):
    from collections import Counter

    path = tmp_path / "kb"
    Collection.create(path, encoder=None).close()
    rng = random.Random(7)
    finished: set[str] = set()
    for trial in range(6):
        p = _run_writer(path, trial * 1000)
        time.sleep(rng.uniform(2.0, 4.0))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        finished |= {f"b{x}" for x in (p.stdout.read() if p.stdout else "").split()}
        kb = Collection.open(path)
        per_batch = Counter(i.split("-")[0] for i in kb.ids() if i.startswith("b"))
        kb.close()
        # a finished batch (add 50, delete 1) holds exactly 49 documents; the batch the kill
        # interrupted holds 0, 50 (add committed) or 49 (delete committed too): never a part
        assert all(per_batch[b] == 49 for b in finished)
        assert all(n in (49, 50) for b, n in per_batch.items() if b not in finished)
        assert sum(1 for b in per_batch if b not in finished) <= trial + 1
        _consistent(path)
