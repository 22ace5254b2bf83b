"""``cachet.aio.Cache``: the asyncio and trio frontend (anyio). It carries out what the core decides.

A hit never awaits anything that yields: it is not a checkpoint (allowed by trio's
rules for operations that complete immediately), and it costs about as much as awaiting
a coroutine that reads a dict. A shared load runs in its leader's task; a cancelled
leader hands the load over to a waiter (see ``_run``), so no caller's cancellation ever
reaches another. Background refreshes run in the cache's own task group, opened by
``async with cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.abc

from .._core.effects import Flow, Load, LoadTimedOut, Spawn
from .._core.entry import CacheEntry
from .._core.errors import CacheError
from .._core.policy import InsertOutcome
from .._core.stack import OPTIONAL, PLAIN, TRY, Core, never_hit, unhashable
from .._decorator import AsyncCacheDecorator, make_async_decorator
from ..telemetry import attributes as a
from ._driver import drive

if TYPE_CHECKING:
    from .._core.clock import Clock
    from ._builder import AsyncCacheBuilder

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Cache(Generic[K, V]):
    """A multi-tier cache for asyncio and trio. Build one with :meth:`Cache.builder`.

    A cache with background refresh (and no task group of the user's in its
    ``TimeToRefresh``) runs it in a task group of its own: use it inside
    ``async with cache:``. Others work without it, though ``async with`` is always fine.
    """

    def __init__(self, core: Core, owned: list[Any], needs_task_group: bool) -> None:
        self._core = core
        self._owned = owned
        self._needs_tg = needs_task_group
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._use_fast_get(not needs_task_group)

    @staticmethod
    def builder(clock: Clock | None = None) -> AsyncCacheBuilder[Any, Any]:
        """Start configuring a cache; ``clock`` defaults to ``SystemClock()``."""
        from ._builder import AsyncCacheBuilder

        return AsyncCacheBuilder(clock)

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def clock(self) -> Clock:
        return self._core.clock

    # -- reads -------------------------------------------------------------------------

    async def get(self, key: K) -> CacheEntry[V] | None:
        """The entry for ``key`` from the first tier that has it fresh, or ``None``.

        (Each instance replaces this with the same logic built by the core as one
        coroutine function, see ``_use_fast_get``.)
        """
        entry = self._hit(key)
        if entry is not None:
            return entry
        return await self._get_slow(key)

    async def _get_slow(self, key: K) -> CacheEntry[V] | None:
        return await self._run(a.OP_GET, key, partial(self._core.get_flow, key))  # type: ignore[no-any-return]

    def _use_fast_get(self, fast: bool) -> None:
        """Make ``get`` and the loaders the core's one-frame hits (the hit inline, the slow
        path awaited on anything else), or, before ``async with`` of a cache that needs
        it and after close, the slow paths alone."""
        core = self._core
        self._hit = core.hit if fast else never_hit
        self.get = core.make_hit(self._get_slow, is_async=True) if fast else self._get_slow  # type: ignore[method-assign]
        for name, mode in (("get_or_insert", PLAIN), ("try_get_or_insert", TRY),
                           ("optionally_get_or_insert", OPTIONAL)):
            if fast:
                setattr(self, name, core.make_hit(self._load, is_async=True, loader=mode))
            else:
                self.__dict__.pop(name, None)  # the methods, which never hit now

    async def contains(self, key: K) -> bool:
        return await self.get(key) is not None

    async def get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V]:
        """The cached entry, or the factory's result (awaited if a coroutine) inserted and returned."""
        entry = self._hit(key)
        if entry is not None:
            return entry
        return await self._load(PLAIN, key, factory)  # type: ignore[no-any-return]

    async def try_get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V]:
        """As :meth:`get_or_insert`, but a factory error is raised as ``LoaderError``."""
        entry = self._hit(key)
        if entry is not None:
            return entry
        return await self._load(TRY, key, factory)  # type: ignore[no-any-return]

    async def optionally_get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V] | None:
        """As :meth:`get_or_insert`, but a factory returning ``None`` caches nothing."""
        entry = self._hit(key)
        if entry is not None:
            return entry
        return await self._load(OPTIONAL, key, factory)  # type: ignore[no-any-return]

    async def len(self) -> int:
        """Approximate entry count of the primary tier (``UnsupportedError`` if it cannot count)."""
        self._check_usable()
        return await drive(self._core.len_flow(), self._spawn)  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    async def insert(self, key: K, value: V | CacheEntry[V]) -> InsertOutcome:
        """Write to every tier concurrently; ACCEPTED if any tier stored it."""
        return await self._run(a.OP_INSERT, key, partial(self._core.insert_flow, key, value),  # type: ignore[no-any-return]
                               coalesce=False)

    async def invalidate(self, key: K) -> None:
        """Remove ``key`` from every tier."""
        await self._run(a.OP_INVALIDATE, key, partial(self._core.invalidate_flow, key))

    async def clear(self) -> None:
        """Remove everything from every tier."""
        await self._run(a.OP_CLEAR, None, self._core.clear_flow, coalesce=False)

    # -- the rest ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts per tier (hits, misses, expired, errors, inserts, ...) and coalesced waits."""
        return self._core.stats()

    def cached(self, *, key: Callable[..., Hashable] | None = None, ttl: Any = None) -> AsyncCacheDecorator:
        """Memoize a coroutine function through :meth:`get_or_insert`."""
        return make_async_decorator(self, key=key, ttl=ttl)

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
        self._use_fast_get(True)
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

    async def close(self) -> None:
        """Release the tiers the cache opened. Inside ``async with``, leave the block instead."""
        if self._tg is not None:
            raise CacheError("leave `async with cache:` to close this cache")
        if self._closed:
            return
        self._closed = True
        self._use_fast_get(False)
        for tier in self._owned:
            aclose = getattr(tier, "aclose", None)
            if aclose is not None:
                await aclose()
            elif getattr(tier, "nonblocking", False):
                tier.close()
            elif getattr(tier, "close", None) is not None:
                await anyio.to_thread.run_sync(tier.close)

    def __repr__(self) -> str:
        return f"<cachet.aio.Cache {self.name!r} tiers={[lv.name for lv in self._core.levels]}>"

    # -- carrying out ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"cache {self.name!r} is closed")

    def _check_usable(self) -> None:
        self._check_open()
        if self._needs_tg and self._tg is None:
            raise CacheError(
                f"cache {self.name!r} runs work in the background (refresh or loader timeouts): "
                f"use it inside `async with cache:` so that work has a task group to run in"
            )

    async def _load(self, mode: str, key: K, factory: Callable[[], Any]) -> Any:
        """A loader's slow path (the one-tier straight path is in the loader methods the
        core generates, see ``_use_fast_get``)."""
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        core = self._core
        core.check_reentrant(key)
        return await self._run(mode, key, partial(core.load_flow, key, factory, mode))

    async def _run(self, op: str, key: Any, make_flow: Callable[[], Flow],
                   coalesce: bool = True) -> Any:
        """Drive the flow ``make_flow()``; with stampede protection, share it with
        concurrent callers of the same operation and key.

        The leader runs the shared call in its own task (spawning a task per miss would
        cost 30-140x the miss itself). If the leader is cancelled before an outcome, the
        call is abandoned, never failed: each waiter wakes and one of them leads a new
        run, so a waiter never sees another caller's cancellation.
        """
        core = self._core
        if self._closed or (self._needs_tg and self._tg is None):
            self._check_usable()
        if op is not a.OP_CLEAR:
            try:
                hash(key)
            except TypeError:
                raise unhashable(key) from None
        started = core.begin_operation() if core.reporter is not None else None
        coalesced = False
        try:
            if not (core.stampede and coalesce):
                return await drive(make_flow(), self._spawn, self._timed_load)
            while True:
                flight, leader = core.join(op, key, anyio.Event)
                if leader:
                    break
                coalesced = True
                await flight.signal.wait()
                if not flight.abandoned:
                    return flight.result()
            signal = None
            try:
                value = await drive(make_flow(), self._spawn, self._timed_load)
            except Exception as exc:
                signal = core.settle(flight, None, exc)
                raise
            except BaseException:  # cancelled: hand the call over to a waiter
                signal = core.abandon(flight)
                raise
            else:
                signal = core.settle(flight, value, None)
                return value
            finally:
                if signal is not None:
                    signal.set()
        finally:
            if started is not None:
                core.end_operation(started, op, coalesced)

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
                await self._background(effect.late(box.get("value"), box.get("error")))

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
        spawner.start_soon(self._background, effect.flow)

    async def _background(self, flow: Flow) -> None:
        core = self._core
        started = core.begin_operation(background=True) if core.reporter is not None else None
        try:
            await drive(flow, self._spawn, self._timed_load)
        finally:
            if started is not None:
                core.end_operation(started, a.OP_REFRESH, False)
