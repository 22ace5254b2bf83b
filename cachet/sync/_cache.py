"""``cachet.sync.Cache``: the blocking frontend. It carries out what the core decides.

Threads coalesce with threads: a ``threading.Event`` per shared call. Background
refresh runs on an ``Executor`` (default: a two-thread pool the cache creates on first
use and shuts down on ``close()``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._core.effects import Flow, Load, LoadTimedOut, Spawn
from .._core.entry import CacheEntry
from .._core.errors import CacheError
from .._core.policy import InsertOutcome
from .._core.stack import OPTIONAL, PLAIN, TRY, Core, never_hit, unhashable
from .._decorator import CacheDecorator, make_sync_decorator
from ..telemetry import attributes as a
from ._driver import drive

if TYPE_CHECKING:
    from .._core.clock import Clock
    from ._builder import CacheBuilder

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Cache(Generic[K, V]):
    """A multi-tier cache for blocking code. Build one with :meth:`Cache.builder`.

    >>> cache = Cache.builder().memory(1000).ttl(60).build()
    >>> cache.get_or_insert("k", lambda: 42).value
    42
    """

    def __init__(self, core: Core, owned: list[Any]) -> None:
        self._core = core
        self._hit = core.hit
        # The hit paths of get() and the loaders as one frame each: the core's hit with
        # our slow path as its miss.
        self.get = core.make_hit(self._get_slow)  # type: ignore[method-assign]
        self.get_or_insert = core.make_hit(self._load, loader=PLAIN)  # type: ignore[method-assign]
        self.try_get_or_insert = core.make_hit(self._load, loader=TRY)  # type: ignore[method-assign]
        self.optionally_get_or_insert = core.make_hit(self._load, loader=OPTIONAL)  # type: ignore[method-assign]
        self._owned = owned
        self._executor: Executor | None = None
        self._loaders: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._closed = False

    @staticmethod
    def builder(clock: Clock | None = None) -> CacheBuilder[Any, Any]:
        """Start configuring a cache; ``clock`` defaults to ``SystemClock()``."""
        from ._builder import CacheBuilder

        return CacheBuilder(clock)

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def clock(self) -> Clock:
        return self._core.clock

    # -- reads -------------------------------------------------------------------------

    def get(self, key: K) -> CacheEntry[V] | None:
        """The entry for ``key`` from the first tier that has it fresh, or ``None``.

        (Each instance replaces this with the same logic built by the core in one frame.)
        """
        entry = self._hit(key)
        if entry is not None:
            return entry
        return self._get_slow(key)

    def _get_slow(self, key: K) -> CacheEntry[V] | None:
        return self._run(a.OP_GET, key, partial(self._core.get_flow, key))  # type: ignore[no-any-return]

    def contains(self, key: K) -> bool:
        return self.get(key) is not None

    def get_or_insert(self, key: K, factory: Callable[[], V | CacheEntry[V]]) -> CacheEntry[V]:
        """The cached entry, or ``factory()`` inserted and returned on a miss.

        (Each instance replaces the loaders with the same logic built by the core in one
        frame.)
        """
        entry = self._hit(key)
        if entry is not None:
            return entry
        return self._load(PLAIN, key, factory)  # type: ignore[no-any-return]

    def try_get_or_insert(self, key: K, factory: Callable[[], V | CacheEntry[V]]) -> CacheEntry[V]:
        """As :meth:`get_or_insert`, but a factory error is raised as ``LoaderError``."""
        entry = self._hit(key)
        if entry is not None:
            return entry
        return self._load(TRY, key, factory)  # type: ignore[no-any-return]

    def optionally_get_or_insert(
        self, key: K, factory: Callable[[], V | CacheEntry[V] | None]
    ) -> CacheEntry[V] | None:
        """As :meth:`get_or_insert`, but a factory returning ``None`` caches nothing."""
        entry = self._hit(key)
        if entry is not None:
            return entry
        return self._load(OPTIONAL, key, factory)  # type: ignore[no-any-return]

    def len(self) -> int:
        """Approximate entry count of the primary tier (``UnsupportedError`` if it cannot count)."""
        self._check_open()
        return drive(self._core.len_flow(), self._spawn)  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    def insert(self, key: K, value: V | CacheEntry[V]) -> InsertOutcome:
        """Write through to every tier; ACCEPTED if any tier stored it."""
        return self._run(a.OP_INSERT, key, partial(self._core.insert_flow, key, value),  # type: ignore[no-any-return]
                         coalesce=False)

    def invalidate(self, key: K) -> None:
        """Remove ``key`` from every tier."""
        self._run(a.OP_INVALIDATE, key, partial(self._core.invalidate_flow, key))

    def clear(self) -> None:
        """Remove everything from every tier."""
        self._run(a.OP_CLEAR, None, self._core.clear_flow, coalesce=False)

    # -- the rest ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts per tier (hits, misses, expired, errors, inserts, ...) and coalesced waits."""
        return self._core.stats()

    def cached(self, *, key: Callable[..., Hashable] | None = None, ttl: Any = None) -> CacheDecorator:
        """Memoize a function through :meth:`get_or_insert` (see ``cachet`` docs)."""
        return make_sync_decorator(self, key=key, ttl=ttl)

    def __call__(self, request: Any) -> Any:
        """Serve a ``cachet.service`` request: a cache is a service too."""
        from ..service import serve_sync

        return serve_sync(self, request)

    def close(self) -> None:
        """Wait for background refreshes, then release the executor and the tiers it opened."""
        if self._closed:
            return
        self._closed = True
        self._hit = never_hit
        self.get = self._get_slow  # type: ignore[method-assign]
        for name in ("get_or_insert", "try_get_or_insert", "optionally_get_or_insert"):
            self.__dict__.pop(name, None)  # back to the methods, which now never hit
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

    def __repr__(self) -> str:
        return f"<cachet.sync.Cache {self.name!r} tiers={[lv.name for lv in self._core.levels]}>"

    # -- carrying out ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"cache {self.name!r} is closed")

    def _load(self, mode: str, key: K, factory: Callable[[], Any]) -> Any:
        """A loader's slow path (the one-tier straight path is in the loader methods the
        core generates, see ``__init__``)."""
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        core = self._core
        core.check_reentrant(key)
        return self._run(mode, key, partial(core.load_flow, key, factory, mode))

    def _run(self, op: str, key: Any, make_flow: Callable[[], Flow], coalesce: bool = True) -> Any:
        """Drive the flow ``make_flow()``; with stampede protection, share it with
        concurrent threads calling the same operation on the same key."""
        core = self._core
        if self._closed:
            self._check_open()
        if op is not a.OP_CLEAR:
            try:
                hash(key)
            except TypeError:
                raise unhashable(key) from None
        started = core.begin_operation() if core.reporter is not None else None
        coalesced = False
        try:
            if not (core.stampede and coalesce):
                return drive(make_flow(), self._spawn, self._timed_load)
            flight, leader = core.join(op, key, threading.Event)
            if not leader:
                coalesced = True
                flight.signal.wait()
                return flight.result()
            signal = None
            try:
                value = drive(make_flow(), self._spawn, self._timed_load)
            except BaseException as exc:
                signal = core.settle(flight, None, exc)
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

    def _spawn(self, effect: Spawn) -> None:
        executor = effect.spawner or self._default_executor()
        executor.submit(self._background, effect.flow)

    def _timed_load(self, effect: Load) -> Any:
        """Run a factory in a worker thread and wait at most its timeout. A thread cannot
        be killed: one that overruns goes on, and its result is cached when it comes."""
        with self._executor_lock:
            if self._closed:
                raise CacheError(f"cache {self.name!r} is closed")
            if self._loaders is None:
                self._loaders = ThreadPoolExecutor(
                    max_workers=8, thread_name_prefix=f"cachet-{self.name}-load"
                )
            loaders = self._loaders
        future = loaders.submit(effect.factory)
        try:
            return future.result(effect.timeout)
        except FutureTimeout:
            late = effect.late
            assert late is not None

            def finished(done: Future[Any]) -> None:
                error = done.exception()
                self._background(late(None if error else done.result(), error))

            future.add_done_callback(finished)
            raise LoadTimedOut from None

    def _default_executor(self) -> Executor:
        with self._executor_lock:
            if self._closed:
                raise CacheError(f"cache {self.name!r} is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix=f"cachet-{self.name}-refresh"
                )
            return self._executor

    def _background(self, flow: Flow) -> None:
        core = self._core
        started = core.begin_operation(background=True) if core.reporter is not None else None
        try:
            drive(flow, self._spawn, self._timed_load)
        finally:
            if started is not None:
                core.end_operation(started, a.OP_REFRESH, False)
