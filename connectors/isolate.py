"""Reading files with complex binary formats in a worker process, with a time and a memory limit per file.

PDF, Excel and Parquet files are parsed by third-party libraries that a malformed or hostile file (a zip bomb, a
decompression bomb, a PDF whose objects loop) can drive into minutes of work or gigabytes of memory. Those files
are read in one long-lived worker process (started on first use, reused for every file) whose address space is
capped; a file that runs past the time limit gets its worker killed and replaced. Either way the file is
reported as a :class:`~rag.errors.SourceError` naming it, and the batch goes on; the indexing process itself
never runs out of memory or hangs, and a crash inside a parser cannot take it down.

Settings (environment): ``PILOTFISH_READ_TIMEOUT`` seconds per file (default 120), ``PILOTFISH_READ_MEMORY_MB``
the worker's address-space limit (default 4096), ``PILOTFISH_READ_ISOLATION=0`` to read in-process instead.
Plain text, Markdown, HTML, JSONL and CSV are parsed by pilotfish's own linear-time code and are not isolated;
their limit is the file size (:data:`rag.connectors.files.MAX_BYTES`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from rag.errors import SourceError

T = TypeVar("T")
_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def timeout() -> float:
    return float(os.environ.get("PILOTFISH_READ_TIMEOUT", "120"))


def memory_mb() -> int:
    return int(os.environ.get("PILOTFISH_READ_MEMORY_MB", "4096"))


def _limit_memory(mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


def _stop() -> None:
    """Kill the worker (it may be stuck in C code) and forget the pool; the next file starts a new one."""
    global _pool
    if _pool is not None:
        for proc in list(getattr(_pool, "_processes", {}).values()):
            proc.kill()
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def run_isolated(rel: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the reader worker; a :class:`SourceError` naming ``rel`` when it takes too long, needs too
    much memory or crashes the worker. ``fn`` must be a module-level function (it is sent by reference)."""
    if os.environ.get("PILOTFISH_READ_ISOLATION", "1") == "0":
        return fn(*args)
    global _pool
    with _lock:  # one file at a time through the one worker
        if _pool is None:
            _pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_memory, initargs=(memory_mb(),)
            )
        try:
            return _pool.submit(fn, *args).result(timeout=timeout())
        except FutureTimeout:
            _stop()
            raise SourceError(
                rel, f"reading took longer than {timeout():g} s (PILOTFISH_READ_TIMEOUT); the file may be malformed"
            ) from None
        except MemoryError:
            _stop()
            raise SourceError(
                rel,
                f"reading needs more than {memory_mb()} MB of memory (PILOTFISH_READ_MEMORY_MB); the file may "
                "be a decompression bomb, or split it",
            ) from None
        except BrokenProcessPool:
            _stop()
            raise SourceError(rel, "the file crashed its reader (a parser bug or a hostile file)") from None
