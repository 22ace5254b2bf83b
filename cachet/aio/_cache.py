"""``cachet.aio.Cache``: the asyncio and trio frontend (anyio). It carries out what the core decides.

Each method tries the core's hit and otherwise awaits the flow the core returns for its
slow path (``_driver.drive``). A hit never awaits anything that yields: it is not a
checkpoint (allowed by trio's rules for operations that complete immediately), and it
costs about as much as awaiting a coroutine that reads a dict. A shared load runs in
its leader's task; a cancelled leader hands the load over to a waiter (the core's
``handoff``), so no caller's cancellation ever reaches another. Background refreshes
and loads that outlive their timeout run in the cache's own task group, opened by
``async with cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc

from .._cache_base import CacheBase
from .._core.effects import Flow, Load, LoadTimedOut, Spawn
from .._core.entry import CacheEntry
from .._core.errors import CacheError
from .._core.hit import never_hit
from .._core.policy import InsertOutcome
from .._core.stack import OPTIONAL, PLAIN, TRY, Core
from ._cached import AsyncCacheDecorator
from ._driver import drive

if TYPE_CHECKING:
    from .._core.clock import Clock
    from ._builder import AsyncCacheBuilder

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Cache(CacheBase[K, V]):
    """A multi-tier cache for asyncio and trio. Build one with :meth:`Cache.builder`.

    A cache with background work (refresh or loader timeouts, with no task group of the
    user's in its ``TimeToRefresh``) runs it in a task group of its own: use it inside
    ``async with cache:``. Others work without it, though ``async with`` is always fine.
    """

    def __init__(self, core: Core, owned: list[Any], needs_task_group: bool) -> None:
        super().__init__(core, owned)
        self._needs_tg = needs_task_group
        self._tg: anyio.abc.TaskGroup | None = None
        if needs_task_group:
            self._hit = never_hit  # until entered: the slow path says why it cannot serve

    @staticmethod
    def builder(clock: Clock | None = None) -> AsyncCacheBuilder[Any, Any]:
        """Start configuring a cache; ``clock`` defaults to ``SystemClock()``."""
        from ._builder import AsyncCacheBuilder

        return AsyncCacheBuilder(clock)

    # -- reads -------------------------------------------------------------------------

    async def get(self, key: K) -> CacheEntry[V] | None:
        """The entry for ``key`` from the first tier that has it fresh, or ``None``."""
        entry = self._hit(key)
        if entry is None:
            return await self._run(self._core.get_op(key))  # type: ignore[no-any-return]
        return entry

    async def contains(self, key: K) -> bool:
        """Whether :meth:`get` finds ``key`` (the whole get path: promotion, refresh)."""
        return await self.get(key) is not None

    async def get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V]:
        """The cached entry, or the factory's result (awaited if a coroutine) inserted and
        returned. The factory's exceptions propagate unchanged and are never cached."""
        entry = self._hit(key)
        if entry is None:
            return await self._run(self._core.load_op(key, factory, PLAIN))  # type: ignore[no-any-return]
        return entry

    async def try_get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V]:
        """As :meth:`get_or_insert`, but a factory error is raised as ``LoaderError``."""
        entry = self._hit(key)
        if entry is None:
            return await self._run(self._core.load_op(key, factory, TRY))  # type: ignore[no-any-return]
        return entry

    async def optionally_get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V] | None:
        """As :meth:`get_or_insert`, but a factory returning ``None`` caches nothing."""
        entry = self._hit(key)
        if entry is None:
            return await self._run(self._core.load_op(key, factory, OPTIONAL))  # type: ignore[no-any-return]
        return entry

    async def len(self) -> int:
        """Approximate entry count of the primary tier (``UnsupportedError`` if it cannot count)."""
        return await self._run(self._core.len_flow())  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    async def insert(self, key: K, value: V | CacheEntry[V]) -> InsertOutcome:
        """Write to every tier concurrently; ACCEPTED if any tier stored it."""
        return await self._run(self._core.insert_op(key, value))  # type: ignore[no-any-return]

    async def invalidate(self, key: K) -> None:
        """Remove ``key`` from every tier."""
        await self._run(self._core.invalidate_op(key))

    async def clear(self) -> None:
        """Remove everything from every tier."""
        await self._run(self._core.clear_op())

    # -- the rest ----------------------------------------------------------------------

    def cached(self, *, key: Callable[..., Hashable] | None = None, ttl: Any = None) -> AsyncCacheDecorator:
        """Memoize a coroutine function through :meth:`get_or_insert`."""
        return AsyncCacheDecorator(self, key, ttl)

    async def __call__(self, request: Any) -> Any:
        """Serve a ``cachet.service`` request: a cache is a service too."""
        from ..service import serve_async

        return await serve_async(self, request)

    async def __aenter__(self) -> Cache[K, V]:
        if self._tg is not None:
            raise CacheError(f"cache {self.name!r} is already entered")
        self._check_open()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._hit = self._core.hit
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        """Wait for background work (cancel it if the block raised), close what the cache
        opened; the block's own exception propagates unchanged."""
        tg, self._tg = self._tg, None
        assert tg is not None
        try:
            if exc_type is not None:
                tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        finally:
            await self.close()
        return False

    def __enter__(self) -> None:
        raise TypeError(f"{self!r} is an async cache: use `async with cache:`, not `with cache:`")

    def __exit__(self, *exc: object) -> None:  # pragma: no cover (__enter__ always raises)
        pass

    async def close(self) -> None:
        """Release the tiers the cache opened. Inside ``async with``, leave the block instead."""
        if self._tg is not None:
            raise CacheError("leave `async with cache:` to close this cache")
        if self._closed:
            return
        self._closed = True
        self._hit = never_hit
        for tier in self._owned:
            aclose = getattr(tier, "aclose", None)
            if aclose is not None:
                await aclose()
            elif getattr(tier, "nonblocking", False):
                tier.close()
            elif getattr(tier, "close", None) is not None:
                await anyio.to_thread.run_sync(tier.close)

    # -- carrying out ------------------------------------------------------------------

    async def _run(self, flow: Flow) -> Any:
        if self._closed or (self._needs_tg and self._tg is None):
            flow.close()
            self._check_open()
            raise CacheError(
                f"cache {self.name!r} runs work in the background (refresh or loader timeouts): "
                f"use it inside `async with cache:` so that work has a task group to run in"
            )
        return await drive(flow, self._spawn, self._timed_load)

    async def _timed_load(self, effect: Load) -> Any:
        """Run a factory in the cache's task group and wait at most its timeout; one that
        overruns goes on, and its result is cached when it comes."""
        tg = self._tg
        if tg is None:
            raise CacheError(f"cache {self.name!r} has loader timeouts: use it inside `async with cache:`")
        box: dict[str, Any] = {}
        done = anyio.Event()
        overran = False

        async def run() -> None:
            try:
                value = effect.factory()
                if hasattr(value, "__await__"):
                    value = await value
                box["value"] = value
            except Exception as exc:
                box["error"] = exc
            finally:
                done.set()
            if overran and effect.late is not None:
                await drive(effect.late(box.get("value"), box.get("error")), self._spawn, self._timed_load)

        tg.start_soon(run)
        with anyio.move_on_after(effect.timeout):
            await done.wait()
        if not done.is_set():
            overran = True
            raise LoadTimedOut
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _spawn(self, effect: Spawn) -> None:
        spawner = effect.spawner or self._tg
        if spawner is None:
            raise CacheError(f"cache {self.name!r} has no task group for background refresh")
        spawner.start_soon(drive, effect.flow, self._spawn, self._timed_load)
