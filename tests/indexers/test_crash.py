"""A process killed in the middle of a write leaves the collection at its last committed state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
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


def test_kill_at_random_moments(tmp_path):
    """kill -9 a writer at random moments, PILOTFISH_CRASH_TRIALS times (200 here; the long variant: 2000):
    see tests/crash_harness.py. After every kill the collection opens, passes rag check, and holds exactly the
    last committed state."""
    trials = int(os.environ.get("PILOTFISH_CRASH_TRIALS", "200"))
    p = subprocess.run(
        [sys.executable, "-m", "tests.support.crash_harness", str(tmp_path / "kb"), "--trials", str(trials)],
        capture_output=True,
        text=True,
        timeout=60 + 3 * trials,
    )
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and summary["failures"] == [], (summary, p.stderr[-3000:])
    assert summary["trials"] == trials
    # the kills landed inside writes of every kind, and some after a commit but before its report
    assert summary["killed_mid_op"] >= trials // 2 and len(summary["killed_during"]) >= 4, summary
    assert summary["ops_committed"] >= trials // 2 and summary["documents"] > 0, summary
