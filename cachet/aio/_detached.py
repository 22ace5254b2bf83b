"""Where an entered aio cache runs its detached loads, and how leaving it cancels them.

A shared load runs as a task of its own (the caller's context copied, as for any task),
so that no caller's cancellation stops it (SPEC §8). A task is started per load, on the
miss path, so it is the backend's own: a plain ``asyncio`` task, or a task of a trio
nursery. An anyio task group's start costs a cancel scope and bookkeeping per task: it
doubled the whole detached miss on asyncio and tripled it on trio (benchmarks/compare.py).

On Python 3.12 and later an asyncio load task starts eagerly (``eager_task_factory``):
its first steps run at once, in the task, so a load that completes without suspending
(a value already at hand) has filled the cache before its caller waits, and the miss
costs no turn of the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from .._core.attributes import TARGET

_logger = logging.getLogger(TARGET)


class DetachedLoads:
    """The detached loads of one entered cache: start them, cancel them all on leaving."""

    def __init__(self) -> None:
        self._asyncio = _on_asyncio()
        self.eager = self._asyncio and sys.version_info >= (3, 12)  # a load's first step runs at once
        self._tasks: set[Any] = set()  # asyncio: the tasks still running
        self._nursery: Any = None  # trio: their nursery
        self._nursery_cm: Any = None
        self._checkpoint: Any = None  # trio's own checkpoint
        self._closed = False

    async def open(self) -> None:
        if not self._asyncio:  # anyio runs on asyncio or trio
            import trio

            self._nursery_cm = trio.open_nursery()
            self._nursery = await self._nursery_cm.__aenter__()
            self._checkpoint = trio.lowlevel.checkpoint

    def start(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._closed:
            raise RuntimeError("the cache is closing: no load can start")
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)
            return
        loop = asyncio.get_running_loop()
        if sys.version_info >= (3, 12):
            task = asyncio.eager_task_factory(loop, self._tracked(fn(*args)))
        else:
            task = loop.create_task(self._tracked(fn(*args)))
        if not task.done():  # (an eager task may be over already)
            self._tasks.add(task)

    async def first_turn(self) -> None:
        """Let a load just started take its first turn (an eager task has had it), so that
        a quick load is over before its caller looks. The backend's own yield: anyio's
        checkpoint asks sniffio which backend runs, once per miss."""
        if self.eager:
            return
        if self._asyncio:
            await asyncio.sleep(0)
        else:
            await self._checkpoint()

    async def _tracked(self, load: Coroutine[Any, Any, Any]) -> None:
        """Run ``load`` and forget its task when it ends (no done callback: a turn of the
        loop saved per load). A load that raises is a bug: log it, never lose it."""
        try:
            await load
        except Exception:
            _logger.exception("a detached load failed")
        finally:
            self._tasks.discard(asyncio.current_task())

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
