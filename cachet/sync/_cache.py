"""``cachet.sync.Cache``: the blocking frontend. It carries out what the core decides.

Each method tries the core's hit and otherwise drives the flow the core returns for
its slow path (``_driver.Driver``). Threads coalesce with threads: a
``threading.Event`` per shared call. Background refresh runs on an ``Executor``
(default: a two-thread pool the cache creates on first use and shuts down on
``close()``); a load with a timeout runs in a worker thread so it can outlive the wait.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Protocol, overload

from .._builder import BuilderBase, TierSpec
from .._cache_base import CacheBase, K, V
from .._core.atomic import per_call_ttl
from .._core.durations import Duration
from .._core.effects import Flow, Load, LoadTimedOut, Spawn
from .._core.entry import CacheEntry
from .._core.policy import InsertOutcome
from .._core.stack import OPTIONAL, PLAIN, TRY, Core
from .._core.tier import Ops, tier_ops
from .._decorator import P2, BoundBase, CachedBase, DecoratorBase, P, R, R_co, S
from ._driver import Driver

if TYPE_CHECKING:
    from typing_extensions import Self

    from .._core.clock import Clock


class Cache(CacheBase[K, V]):
    """A multi-tier cache for blocking code. Build one with :meth:`Cache.builder`.

    >>> cache = Cache.builder().memory(1000).ttl(60).build()
    >>> cache.get_or_insert("k", lambda: 42).value
    42
    """

    def __init__(self, core: Core, owned: list[Any]) -> None:
        super().__init__(core, owned)
        self._executor: Executor | None = None
        self._loaders: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._drive = Driver(self._spawn, self._timed_load).run

    @staticmethod
    def builder(clock: Clock | None = None) -> CacheBuilder[Any, Any]:
        """Start configuring a cache; ``clock`` defaults to ``SystemClock()``."""
        return CacheBuilder(clock)

    # -- reads -------------------------------------------------------------------------

    def get(self, key: K) -> CacheEntry[V] | None:
        """The entry for ``key`` from the first tier that has it fresh, or ``None``."""
        entry = self._hit(key)
        if entry is None:
            return self._run(self._core.get_op(key))  # type: ignore[no-any-return]
        return entry

    def contains(self, key: K) -> bool:
        """Whether :meth:`get` finds ``key`` (the whole get path: promotion, refresh)."""
        return self.get(key) is not None

    def get_or_insert(self, key: K, factory: Callable[[], V | CacheEntry[V]]) -> CacheEntry[V]:
        """The cached entry, or ``factory()`` inserted and returned on a miss. The
        factory's exceptions propagate unchanged and are never cached."""
        entry = self._hit(key)
        if entry is None:
            return self._load(key, factory, PLAIN)  # type: ignore[no-any-return]
        return entry

    def try_get_or_insert(self, key: K, factory: Callable[[], V | CacheEntry[V]]) -> CacheEntry[V]:
        """As :meth:`get_or_insert`, but a factory error is raised as ``LoaderError``."""
        entry = self._hit(key)
        if entry is None:
            return self._load(key, factory, TRY)  # type: ignore[no-any-return]
        return entry

    def optionally_get_or_insert(
        self, key: K, factory: Callable[[], V | CacheEntry[V] | None]
    ) -> CacheEntry[V] | None:
        """As :meth:`get_or_insert`, but a factory returning ``None`` caches nothing."""
        entry = self._hit(key)
        if entry is None:
            return self._load(key, factory, OPTIONAL)  # type: ignore[no-any-return]
        return entry

    def len(self) -> int:
        """Approximate entry count of the primary tier (``UnsupportedError`` if it cannot count)."""
        return self._run(self._core.len_flow())  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    def insert(self, key: K, value: V | CacheEntry[V], *, ttl: Duration | None = None) -> InsertOutcome:
        """Write through to every tier, in order; ACCEPTED if any tier stored it. A ``ttl``
        of 0 or less removes the key instead."""
        core = self._core
        if ttl is None:
            return self._run(core.insert_op(key, value))  # type: ignore[no-any-return]
        return self._run(core.insert_ttl_op(key, value, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    def invalidate(self, key: K) -> None:
        """Remove ``key`` from every tier."""
        self._run(self._core.invalidate_op(key))

    def clear(self) -> None:
        """Remove everything from every tier."""
        self._run(self._core.clear_op())

    # -- framework operations (atomic on the bottom tier; see the operations guide) -----

    def add(self, key: K, value: V | CacheEntry[V], *, ttl: Duration | None = None) -> bool:
        """Store ``value`` only if ``key`` has no live entry; whether it did."""
        return self._run(self._core.add_op(key, value, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    def touch(self, key: K, ttl: Duration | None = None) -> bool:
        """Give a live entry a new ``ttl`` from now (0 or less: expire it); whether there was one."""
        return self._run(self._core.touch_op(key, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    def incr(self, key: K, delta: int | float = 1) -> Any:
        """Add ``delta`` to a live number, keeping its remaining ttl; the new value.
        ``KeyError`` if there is no live entry, ``TypeError`` if it is not a number."""
        return self._run(self._core.incr_op(key, delta))

    def decr(self, key: K, delta: int | float = 1) -> Any:
        """``incr(key, -delta)``."""
        return self._run(self._core.incr_op(key, -delta))

    def delete(self, key: K) -> bool:
        """Remove ``key`` from every tier, as :meth:`invalidate`; whether it had a live entry."""
        return self._run(self._core.delete_op(key))  # type: ignore[no-any-return]

    def get_many(self, keys: Iterable[K]) -> dict[K, CacheEntry[V]]:
        """:meth:`get` of each key: the entries found, by key."""
        return self._run(self._core.get_many_flow(list(keys), self._hit))  # type: ignore[no-any-return]

    def insert_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]], *,
                    ttl: Duration | None = None) -> dict[K, InsertOutcome]:
        """:meth:`insert` of each pair: the outcome by key."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        return self._run(self._core.insert_many_flow(pairs, per_call_ttl(ttl)))  # type: ignore[no-any-return]

    def invalidate_many(self, keys: Iterable[K]) -> None:
        """:meth:`invalidate` of each key."""
        self._run(self._core.invalidate_many_flow(list(keys)))

    # -- the rest ----------------------------------------------------------------------

    def cached(self, *, key: Callable[..., Hashable] | None = None, ttl: Any = None) -> CacheDecorator:
        """Memoize a function through :meth:`get_or_insert` (see the decorator guide)."""
        return CacheDecorator(self, key, ttl)

    def __call__(self, request: Any) -> Any:
        """Serve a ``cachet.service`` request: a cache is a service too."""
        from ..service import serve_sync

        return serve_sync(self, request)

    def close(self) -> None:
        """Wait for background refreshes, then release the executor and the tiers it opened."""
        if self._closed:
            return
        self._closed = True
        self._serving(False)
        with self._executor_lock:
            executor, self._executor = self._executor, None
            loaders, self._loaders = self._loaders, None
        if executor is not None:
            executor.shutdown(wait=True)
        if loaders is not None:  # overrunning loads finish on their own; nobody waits
            loaders.shutdown(wait=False)
        for tier in self._owned:
            close = getattr(tier, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Cache[K, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- carrying out ------------------------------------------------------------------

    def _load(self, key: K, factory: Callable[[], Any], mode: str) -> Any:
        """A loader's miss: as plain calls when the core can (``Core.start_load``), else
        the flow."""
        core = self._core
        flight = None if self._start_load is None else self._start_load(key, factory, mode)
        if flight is None:
            return self._run(core.load_op(key, factory, mode))
        try:
            result = factory()
        except BaseException as exc:
            raise core.fail_load(flight, exc)  # noqa: B904 (the chain is the core's)
        return core.finish_load(flight, result)

    def _run(self, flow: Flow) -> Any:
        if self._closed:
            flow.close()
            self._check_open()
        return self._drive(flow)

    def _spawn(self, effect: Spawn) -> None:
        executor = effect.spawner or self._pool("_executor", 2, "refresh")
        executor.submit(self._drive, effect.flow)

    def _timed_load(self, effect: Load) -> Any:
        """Run a factory in a worker thread and wait at most its timeout. A thread cannot
        be killed: one that overruns goes on, and its result is cached when it comes."""
        future = self._pool("_loaders", 8, "load").submit(effect.factory)
        try:
            return future.result(effect.timeout)
        except FutureTimeout:
            late = effect.late
            assert late is not None

            def finished(done: Future[Any]) -> None:
                error = done.exception()
                self._drive(late(None if error else done.result(), error))

            future.add_done_callback(finished)
            raise LoadTimedOut from None

    def _pool(self, attr: str, workers: int, what: str) -> ThreadPoolExecutor:
        """The cache's own thread pool ``attr``, made on first use."""
        with self._executor_lock:
            self._check_open()
            pool: ThreadPoolExecutor | None = getattr(self, attr)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"cachet-{self.name}-{what}")
                setattr(self, attr, pool)
            return pool


class CacheBuilder(BuilderBase[K, V], Generic[K, V]):
    """Configures a :class:`cachet.sync.Cache` (``Cache.builder()``); every method returns
    the builder, and :meth:`build` validates the whole configuration at once."""

    def build(self) -> Cache[K, V]:
        """Validate the configuration and return the cache (``ValueError`` says what to change)."""
        core, owned, _ = self._assemble(_adapt, handoff=False, make_signal=threading.Event,
                                        owner=threading.get_ident)
        return Cache(core, owned)


def _adapt(tier: Any, spec: TierSpec) -> tuple[Ops, Any]:
    if inspect.iscoroutinefunction(getattr(tier, "get", None)):
        raise ValueError(
            f"tier {spec.name!r} is async ({type(tier).__name__}); use it with cachet.aio.Cache"
        )
    return tier_ops(tier), getattr(tier, "len", None)


class CachedCallable(Protocol[P, R_co]):
    """The interface of every sync cached callable: a function, a bound method, a
    classmethod or a staticmethod, as type checkers see it."""

    @property
    def cache(self) -> Cache[Any, Any]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable: ...


class CachedFunction(CachedBase[P, R]):
    """What ``@cache.cached()`` makes of a function: call it as the function.

    ``invalidate(*args, **kwargs)`` removes the entry those arguments would use, from
    every tier; ``cache`` is the :class:`cachet.sync.Cache` behind it; ``__wrapped__`` is
    the original function. As a method it binds like a function (see
    :class:`BoundCachedFunction`).
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs or len(args) != self._nparams:
            return self._load(args, kwargs, None)
        key = self._prefix + args  # the key (name, *args)
        entry = self.cache._hit(key)
        if entry is None:
            return self._load(args, kwargs, key)
        return entry.value  # type: ignore[no-any-return]

    def _load(self, args: tuple[Any, ...], kwargs: dict[str, Any], missed: Hashable | None) -> R:
        """The call through ``get_or_insert``, or past its hit with the key that ``missed``."""
        fn, make = self._fn, self._entry

        def load() -> Any:
            return make(fn(*args, **kwargs))

        if missed is None:
            entry = self.cache.get_or_insert(self._checked_key(args, kwargs), load)
        else:
            self._check_hashable(missed)
            entry = self.cache._load(missed, load, PLAIN)
        return entry.value  # type: ignore[no-any-return]

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call from every tier of the cache."""
        self.cache.invalidate(self.key(*args, **kwargs))

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: CachedFunction[Concatenate[S, P2], R], instance: S,
                owner: type[Any] | None = None) -> BoundCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        return self._bind(instance, owner)


class BoundCachedFunction(BoundBase[P, R, "Cache[Any, Any]"]):
    """A :class:`CachedFunction` bound to an instance (or, for a classmethod, a class)."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__func__(self.__self__, *args, **kwargs)  # type: ignore[no-any-return]

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call (on this instance) from every tier."""
        self.__func__.invalidate(self.__self__, *args, **kwargs)


CachedFunction._bound = BoundCachedFunction


class CacheDecorator(DecoratorBase):
    """What ``cachet.sync.Cache.cached(key=..., ttl=...)`` returns: apply it to a function."""

    __slots__ = ()
    _async = False
    _wrapper = CachedFunction
    _refusal = ("{} is a coroutine function: decorate it with the cached() of a cachet.aio.Cache "
                "(a cachet.sync.Cache would cache the coroutine object)")

    @overload
    def __call__(self, fn: classmethod[Any, P, R]) -> CachedCallable[P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, R]) -> CachedCallable[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R]) -> CachedFunction[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        return self._wrap(fn)
