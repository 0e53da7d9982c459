"""Crash-test hooks, written once for every store and for Ray indexing.

``PILOTFISH_FAULT=<point>`` kills the process at that point of a write as ``kill -9`` would (the crash tests
name the points: ``after_store``, ``after_bm25``, ``before_manifest``, ``after_manifest``, ``pg_before_commit``).
``PILOTFISH_RAY_FAULT=<marker file>`` makes the first Ray worker that gets there exit as a killed process would.
Unset, they cost one environment lookup.
"""

from __future__ import annotations

import os


def fault(point: str) -> None:
    """Kill this process here (SIGKILL) when ``PILOTFISH_FAULT`` names ``point``."""
    if os.environ.get("PILOTFISH_FAULT") == point:
        os.kill(os.getpid(), 9)


def worker_fault() -> None:
    """End this Ray worker here, once across all workers, when ``PILOTFISH_RAY_FAULT`` names a marker file (the
    first worker to create it atomically exits)."""
    marker = os.environ.get("PILOTFISH_RAY_FAULT")
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    os._exit(1)
