"""``cachet.aio.Cache``: the asyncio and trio frontend (anyio). It carries out what the core decides.

Each method tries the core's hit and otherwise awaits the flow the core returns for its
slow path (``_driver.Driver``). A hit never awaits anything that yields: it is not a
checkpoint (allowed by trio's rules for operations that complete immediately), and it
costs about as much as awaiting a coroutine that reads a dict.

Inside ``async with cache``, a shared load is detached: it runs in the cache's group of
detached loads and its callers only wait for it (the core's ``detach``), so a caller
that gives up never stops it; leaving the block cancels the loads still running.
Outside, a shared load runs in its leader's task, and a cancelled leader hands it over
to a waiter (the core's ``handoff``). Either way no caller's cancellation reaches
another. Background refreshes and loads that outlive their timeout run in the cache's
own task group, opened by ``async with cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Protocol, overload

import anyio
import anyio.abc

from .._builder import BuilderBase, TierSpec
from .._cache_base import CacheBase, K, V
from .._core.atomic import per_call_ttl
from .._core.durations import Duration
from .._core.effects import DETACHED, Flow, Load, LoadTimedOut, Spawn
from .._core.entry import CacheEntry
from .._core.errors import CacheError
from .._core.policy import InsertOutcome
from .._core.stack import OPTIONAL, PLAIN, TRY, Core
from .._decorator import P2, BoundBase, CachedBase, DecoratorBase, P, R, R_co, S
from . import _tiers
from ._detached import DetachedLoads
from ._driver import Driver

if TYPE_CHECKING:
    from typing_extensions import Self

    from .._core.clock import Clock


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
        self._loads: DetachedLoads | None = None  # while entered
        self._drive = Driver(self._spawn, self._timed_load).run
        if needs_task_group:
            self._serving(False)  # until entered: the slow path says why it cannot serve

    @staticmethod
    def builder(clock: Clock | None = None) -> AsyncCacheBuilder[Any, Any]:
        """Start configuring a cache; ``clock`` defaults to ``SystemClock()``."""
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
            return await self._load(key, factory, PLAIN)  # type: ignore[no-any-return]
        return entry

    async def try_get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V]:
        """As :meth:`get_or_insert`, but a factory error is raised as ``LoaderError``."""
        entry = self._hit(key)
        if entry is None:
            return await self._load(key, factory, TRY)  # type: ignore[no-any-return]
        return entry

    async def optionally_get_or_insert(self, key: K, factory: Callable[[], Any]) -> CacheEntry[V] | None:
        """As :meth:`get_or_insert`, but a factory returning ``None`` caches nothing."""
        entry = self._hit(key)
        if entry is None:
            return await self._load(key, factory, OPTIONAL)  # type: ignore[no-any-return]
        return entry

    async def len(self) -> int:
        """Approximate entry count of the primary tier (``UnsupportedError`` if it cannot count)."""
        return await self._run(self._core.len_flow())  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    async def insert(self, key: K, value: V | CacheEntry[V], *, ttl: Duration | None = None) -> InsertOutcome:
        """Write to every tier concurrently; ACCEPTED if any tier stored it. A ``ttl`` of
        0 or less removes the key instead."""
        core = self._core
        if ttl is None:
            return await self._run(core.insert_op(key, value))  # type: ignore[no-any-return]
        return await self._run(core.insert_ttl_op(key, value, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    async def invalidate(self, key: K) -> None:
        """Remove ``key`` from every tier."""
        await self._run(self._core.invalidate_op(key))

    async def clear(self) -> None:
        """Remove everything from every tier."""
        await self._run(self._core.clear_op())

    # -- framework operations (atomic on the bottom tier; see the operations guide) -----

    async def add(self, key: K, value: V | CacheEntry[V], *, ttl: Duration | None = None) -> bool:
        """Store ``value`` only if ``key`` has no live entry; whether it did."""
        return await self._run(self._core.add_op(key, value, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    async def touch(self, key: K, ttl: Duration | None = None) -> bool:
        """Give a live entry a new ``ttl`` from now (0 or less: expire it); whether there was one."""
        return await self._run(self._core.touch_op(key, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    async def incr(self, key: K, delta: int | float = 1) -> Any:
        """Add ``delta`` to a live number, keeping its remaining ttl; the new value.
        ``KeyError`` if there is no live entry, ``TypeError`` if it is not a number."""
        return await self._run(self._core.incr_op(key, delta))

    async def decr(self, key: K, delta: int | float = 1) -> Any:
        """``incr(key, -delta)``."""
        return await self._run(self._core.incr_op(key, -delta))

    async def delete(self, key: K) -> bool:
        """Remove ``key`` from every tier, as :meth:`invalidate`; whether it had a live entry."""
        return await self._run(self._core.delete_op(key))  # type: ignore[no-any-return]

    async def get_many(self, keys: Iterable[K]) -> dict[K, CacheEntry[V]]:
        """:meth:`get` of each key: the entries found, by key."""
        return await self._run(self._core.get_many_flow(list(keys), self._hit))  # type: ignore[no-any-return]

    async def insert_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]], *,
                          ttl: Duration | None = None) -> dict[K, InsertOutcome]:
        """:meth:`insert` of each pair: the outcome by key."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        return await self._run(self._core.insert_many_flow(pairs, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    async def invalidate_many(self, keys: Iterable[K]) -> None:
        """:meth:`invalidate` of each key."""
        await self._run(self._core.invalidate_many_flow(list(keys)))

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
        tg, loads = anyio.create_task_group(), DetachedLoads()
        await tg.__aenter__()
        await loads.open()
        self._tg, self._loads = tg, loads
        self._core.detach = self._core.stampede
        self._serving(True)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        """Cancel the detached loads (their waiters get a ``CacheError``), wait for other
        background work (cancel it too if the block raised), close what the cache
        opened; the block's own exception propagates unchanged."""
        tg, loads, self._tg, self._loads = self._tg, self._loads, None, None
        assert tg is not None and loads is not None
        self._core.detach = False
        try:
            await loads.cancel()
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
        self._serving(False)
        for tier in self._owned:
            aclose = getattr(tier, "aclose", None)
            if aclose is not None:
                await aclose()
            elif getattr(tier, "nonblocking", False):
                tier.close()
            elif getattr(tier, "close", None) is not None:
                await anyio.to_thread.run_sync(tier.close)

    # -- carrying out ------------------------------------------------------------------

    async def _load(self, key: K, factory: Callable[[], Any], mode: str) -> Any:
        """A loader's miss: as plain calls when the core can (``Core.start_load``), else
        the flow. An awaitable the core detaches is awaited in a task of its own."""
        core = self._core
        flight = None if self._start_load is None else self._start_load(key, factory, mode)
        if flight is None:
            return await self._run(core.load_op(key, factory, mode))
        try:
            result = factory()
            pending = hasattr(result, "__await__")
            if pending and not core.detach:
                result = await result
        except BaseException as exc:
            raise core.fail_load(flight, exc)  # noqa: B904 (the chain is the core's)
        if pending and core.detach:
            return await self._detached(flight, result)
        return core.finish_load(flight, result)

    async def _detached(self, flight: Any, pending: Any) -> Any:
        """Await ``pending`` (the factory's awaitable) in a detached task; wait for it."""
        core, loads = self._core, self._loads
        assert loads is not None  # the core detaches only while entered
        core.detach_load(flight, partial(loads.start, self._finish_detached, flight, pending))
        try:
            await loads.first_turn()
            signal = core.signal_for(flight)  # None: a quick load is over
            if signal is not None:
                await signal.wait()
        except BaseException:
            core.stop_waiting(flight, True)
            raise
        return flight.result()

    async def _finish_detached(self, flight: Any, pending: Any) -> None:
        try:
            result = await pending
        except BaseException as exc:
            self._core.end_detached(flight, None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._core.end_detached(flight, result, None)

    async def _run(self, flow: Flow) -> Any:
        if self._closed or (self._needs_tg and self._tg is None):
            flow.close()
            self._check_open()
            raise CacheError(
                f"cache {self.name!r} runs work in the background (refresh or loader timeouts): "
                f"use it inside `async with cache:` so that work has a task group to run in"
            )
        return await self._drive(flow)

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
                await self._drive(effect.late(box.get("value"), box.get("error")))

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
        if effect.spawner is DETACHED and self._loads is not None:
            self._loads.start(self._drive, effect.flow)
            return
        spawner = None if effect.spawner is DETACHED else effect.spawner or self._tg
        if spawner is None:
            effect.flow.close()
            raise CacheError(f"cache {self.name!r} has no task group for background work: it is closing")
        spawner.start_soon(self._drive, effect.flow)


THREAD_LIMIT = 16
"""Most sync-tier calls one aio cache runs in worker threads at once."""


class AsyncCacheBuilder(BuilderBase[K, V], Generic[K, V]):
    """Configures a :class:`cachet.aio.Cache` (``AsyncCache.builder()``); the methods are
    those of the sync builder."""

    _asynchronous = True

    def build(self) -> Cache[K, V]:
        """Validate the configuration and return the cache (``ValueError`` says what to change)."""
        limiter = anyio.CapacityLimiter(THREAD_LIMIT)

        def adapt(tier: Any, spec: TierSpec) -> tuple[Any, Any]:
            return _tiers.adapt(tier, limiter)

        core, owned, specs = self._assemble(adapt, handoff=True, make_signal=anyio.Event)
        needs_tg = (any(s.ttr is not None and s.ttr.spawner is None for s in specs)
                    or self._loader_timeouts != (None, None))
        return Cache(core, owned, needs_tg)


class AsyncCachedCallable(Protocol[P, R_co]):
    """The interface of every async cached callable, as type checkers see it."""

    @property
    def cache(self) -> Cache[Any, Any]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable: ...


class AsyncCachedFunction(CachedBase[P, R]):
    """What ``@cache.cached()`` of a :class:`cachet.aio.Cache` makes of a coroutine function.

    Await it as the function. ``await invalidate(*args, **kwargs)`` removes the entry
    those arguments would use; ``cache`` is the cache behind it.
    """

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs or len(args) != self._nparams:
            return (await self._load(args, kwargs, None)).value  # type: ignore[no-any-return]
        key = self._prefix + args  # the key (name, *args)
        entry = self.cache._hit(key)
        if entry is None:
            entry = await self._load(args, kwargs, key)
        return entry.value  # type: ignore[no-any-return]

    def _load(self, args: tuple[Any, ...], kwargs: dict[str, Any],
              missed: Hashable | None) -> Coroutine[Any, Any, CacheEntry[Any]]:
        """The call through ``get_or_insert``, or past its hit with the key that ``missed``:
        the cache's coroutine, for ``__call__`` to await (no frame of its own)."""
        fn, make = self._fn, self._entry

        async def load() -> Any:
            return make(await fn(*args, **kwargs))

        if missed is None:
            return self.cache.get_or_insert(self._checked_key(args, kwargs), load)  # type: ignore[no-any-return]
        self._check_hashable(missed)
        return self.cache._load(missed, load, PLAIN)  # type: ignore[no-any-return]

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call from every tier of the cache."""
        await self.cache.invalidate(self.key(*args, **kwargs))

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: AsyncCachedFunction[Concatenate[S, P2], R], instance: S,
                owner: type[Any] | None = None) -> BoundAsyncCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        return self._bind(instance, owner)


class BoundAsyncCachedFunction(BoundBase[P, R, "Cache[Any, Any]"]):
    """An :class:`AsyncCachedFunction` bound to an instance (or a class)."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self.__func__(self.__self__, *args, **kwargs)  # type: ignore[no-any-return]

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call (on this instance) from every tier."""
        await self.__func__.invalidate(self.__self__, *args, **kwargs)


AsyncCachedFunction._bound = BoundAsyncCachedFunction


class AsyncCacheDecorator(DecoratorBase):
    """What ``cachet.aio.Cache.cached(key=..., ttl=...)`` returns: apply it to a coroutine function."""

    __slots__ = ()
    _async = True
    _wrapper = AsyncCachedFunction
    _refusal = ("{!r} is not a coroutine function: decorate it with the cached() of a "
                "cachet.sync.Cache, or make it `async def`")

    @overload
    def __call__(
        self, fn: classmethod[Any, P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedCallable[P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, Coroutine[Any, Any, R]]) -> AsyncCachedCallable[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> AsyncCachedFunction[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        return self._wrap(fn)
