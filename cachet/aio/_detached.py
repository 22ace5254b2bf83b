"""Where an entered aio cache runs its detached loads, and how leaving it cancels them.

A shared load runs as a task of its own (the caller's context copied, as for any task),
so that no caller's cancellation stops it (SPEC §8). A task is started per load, on the
miss path, so it is the backend's own: a plain ``asyncio`` task, or a task of a trio
nursery. An anyio task group's start costs a cancel scope and bookkeeping per task: it
doubled the whole detached miss on asyncio and tripled it on trio (benchmarks/compare.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from .._core.attributes import TARGET

_logger = logging.getLogger(TARGET)


class DetachedLoads:
    """The detached loads of one entered cache: start them, cancel them all on leaving."""

    def __init__(self) -> None:
        self._asyncio = _on_asyncio()
        self._tasks: set[Any] = set()  # asyncio: the tasks still running
        self._nursery: Any = None  # trio: their nursery
        self._nursery_cm: Any = None
        self._closed = False

    async def open(self) -> None:
        if not self._asyncio:  # anyio runs on asyncio or trio
            import trio

            self._nursery_cm = trio.open_nursery()
            self._nursery = await self._nursery_cm.__aenter__()

    def start(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("the cache is closing: no load can start")
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)
            return
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: Any) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug: never lose it
            _logger.error("a detached load failed", exc_info=task.exception())

    async def cancel(self) -> None:
        """Cancel every load still running and wait until each has ended."""
        self._closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
            await self._nursery_cm.__aexit__(None, None, None)
            return
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)


def _on_asyncio() -> bool:
    """Whether this thread runs an asyncio loop (trio runs none)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
