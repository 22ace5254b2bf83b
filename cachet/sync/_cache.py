"""``cachet.sync.Cache``: the blocking frontend. It carries out what the core decides.

Each method tries the core's hit and otherwise drives the flow the core returns for
its slow path (``_driver.drive``). Threads coalesce with threads: a
``threading.Event`` per shared call. Background refresh runs on an ``Executor``
(default: a two-thread pool the cache creates on first use and shuts down on
``close()``); a load with a timeout runs in a worker thread so it can outlive the wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from .._cache_base import CacheBase
from .._core.effects import Flow, Load, LoadTimedOut, Spawn
from .._core.entry import CacheEntry
from .._core.hit import never_hit
from .._core.policy import InsertOutcome
from .._core.stack import OPTIONAL, PLAIN, TRY, Core
from ._cached import CacheDecorator
from ._driver import drive

if TYPE_CHECKING:
    from .._core.clock import Clock
    from ._builder import CacheBuilder

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


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

    @staticmethod
    def builder(clock: Clock | None = None) -> CacheBuilder[Any, Any]:
        """Start configuring a cache; ``clock`` defaults to ``SystemClock()``."""
        from ._builder import CacheBuilder

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
            return self._run(self._core.load_op(key, factory, PLAIN))  # type: ignore[no-any-return]
        return entry

    def try_get_or_insert(self, key: K, factory: Callable[[], V | CacheEntry[V]]) -> CacheEntry[V]:
        """As :meth:`get_or_insert`, but a factory error is raised as ``LoaderError``."""
        entry = self._hit(key)
        if entry is None:
            return self._run(self._core.load_op(key, factory, TRY))  # type: ignore[no-any-return]
        return entry

    def optionally_get_or_insert(
        self, key: K, factory: Callable[[], V | CacheEntry[V] | None]
    ) -> CacheEntry[V] | None:
        """As :meth:`get_or_insert`, but a factory returning ``None`` caches nothing."""
        entry = self._hit(key)
        if entry is None:
            return self._run(self._core.load_op(key, factory, OPTIONAL))  # type: ignore[no-any-return]
        return entry

    def len(self) -> int:
        """Approximate entry count of the primary tier (``UnsupportedError`` if it cannot count)."""
        return self._run(self._core.len_flow())  # type: ignore[no-any-return]

    # -- writes ------------------------------------------------------------------------

    def insert(self, key: K, value: V | CacheEntry[V]) -> InsertOutcome:
        """Write through to every tier, in order; ACCEPTED if any tier stored it."""
        return self._run(self._core.insert_op(key, value))  # type: ignore[no-any-return]

    def invalidate(self, key: K) -> None:
        """Remove ``key`` from every tier."""
        self._run(self._core.invalidate_op(key))

    def clear(self) -> None:
        """Remove everything from every tier."""
        self._run(self._core.clear_op())

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
        self._hit = never_hit
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

    def _run(self, flow: Flow) -> Any:
        if self._closed:
            flow.close()
            self._check_open()
        return drive(flow, self._spawn, self._timed_load)

    def _spawn(self, effect: Spawn) -> None:
        executor = effect.spawner or self._pool("_executor", 2, "refresh")
        executor.submit(drive, effect.flow, self._spawn, self._timed_load)

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
                drive(late(None if error else done.result(), error), self._spawn, self._timed_load)

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
