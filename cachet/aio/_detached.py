"""Where an entered aio cache runs its detached loads, and how leaving it cancels them.

A shared load runs as a task of its own (the caller's context copied, as for any task),
so that no caller's cancellation stops it (SPEC §8). A task is started per load, on the
miss path: on asyncio it is a plain ``asyncio`` task, since an anyio task group's start
costs about twice the whole detached miss (a cancel scope and bookkeeping per task).
Elsewhere (trio) it is a task of an anyio task group, a nursery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

_logger = logging.getLogger("cachet")


class DetachedLoads:
    """The detached loads of one entered cache: start them, cancel them all on leaving."""

    def __init__(self) -> None:
        self._asyncio = _on_asyncio()
        self._tasks: set[Any] = set()  # asyncio: the tasks still running
        self._group: anyio.abc.TaskGroup | None = None  # elsewhere: their task group
        self._closed = False

    async def open(self) -> None:
        if not self._asyncio:
            self._group = anyio.create_task_group()
            await self._group.__aenter__()

    def start(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("the cache is closing: no load can start")
        if self._group is not None:
            self._group.start_soon(fn, *args)
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
        if self._group is not None:
            self._group.cancel_scope.cancel()
            await self._group.__aexit__(None, None, None)
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
