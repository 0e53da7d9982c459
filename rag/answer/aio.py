"""Run a blocking iterator in a worker thread and consume it from asyncio, cancellably.

The pipeline, the models and the stores are synchronous; the server and the async APIs must not block the
event loop on them. :func:`iterate_in_thread` runs the iterator in the loop's default executor and hands each
item over as it comes. When the consumer stops early (a client that disconnects, a task that is cancelled),
the iterator is closed in its thread at its next item, so a streaming LLM stops generating and frees the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """Items of ``make()`` (called in a worker thread); an exception it raises is re-raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            it = make()
            try:
                for item in it:
                    if stop.is_set():
                        break
                    put(item)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        except BaseException as e:  # handed to the consumer
            put(e)
        put(_DONE)

    loop.run_in_executor(None, run)
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the worker closes the iterator at its next item and ends on its own
