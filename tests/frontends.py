"""One behaviour suite, three drivers: the sync frontend, and the aio frontend on asyncio
and on trio. Tests are async functions; the sync cache is reached through a thin
awaitable facade that calls it inline (its calls block the loop, which is fine here).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import anyio

import cachet.aio
import cachet.sync
from cachet import TimeToRefresh

from .helpers import ManualExecutor


class SyncFacade:
    """Presents a ``cachet.sync.Cache`` with the aio Cache's coroutine methods."""

    def __init__(self, cache: cachet.sync.Cache[Any, Any]) -> None:
        self.sync = cache

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if not callable(attr) or name in ("stats", "cached"):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


class Frontend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.is_sync = name == "sync"
        self.Cache: Any = cachet.sync.Cache if self.is_sync else cachet.aio.Cache
        self.executor = ManualExecutor()

    def ttr(self, duration: float) -> TimeToRefresh:
        """Refresh settings whose background work runs when the test calls :meth:`settle`."""
        return TimeToRefresh(duration, self.executor if self.is_sync else None)

    async def settle(self) -> None:
        """Let background refreshes run to completion."""
        if self.is_sync:
            self.executor.run_pending()
        else:
            await anyio.wait_all_tasks_blocked()

    def builder(self, clock: Any = None) -> Any:
        return self.Cache.builder(clock)

    def factory(self, fn: Any) -> Any:
        """A factory of this frontend's flavour: plain for sync, a coroutine function for aio."""
        if self.is_sync or inspect.iscoroutinefunction(fn):
            return fn

        async def afn() -> Any:
            return fn()

        return afn

    @contextlib.asynccontextmanager
    async def open(self, cache: Any) -> AsyncIterator[Any]:
        """Enter ``cache`` the way its users do and yield an awaitable-method view of it."""
        if self.is_sync:
            with cache:
                yield SyncFacade(cache)
        else:
            async with cache:
                yield cache

    def __repr__(self) -> str:
        return self.name
