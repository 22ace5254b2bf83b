"""The aio builder: shared configuration plus a ``build()`` that wires async tiers."""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

import anyio

from .._builder import BuilderBase, TierSpec, build_levels
from .._core.stack import Core
from ..sync._builder import _listen
from . import _tiers
from ._cache import Cache

K = TypeVar("K")
V = TypeVar("V")

THREAD_LIMIT = 16
"""Most sync-tier calls one aio cache runs in worker threads at once."""


class AsyncCacheBuilder(BuilderBase[K, V], Generic[K, V]):
    """Configures a :class:`cachet.aio.Cache`; the methods are those of the sync builder."""

    def sqlite(self, path: str = ":memory:", **kw: Any) -> AsyncCacheBuilder[K, V]:
        """A SQLite tier at ``path``, reached through worker threads."""
        from ..tiers import SQLiteTier

        return self._set_storage("sqlite", SQLiteTier(path, **kw))

    def redis(self, url: str = "redis://127.0.0.1:6379/0", **kw: Any) -> AsyncCacheBuilder[K, V]:
        """A Redis tier for ``url``: ``redis.asyncio`` on asyncio, the sync client in threads on trio."""
        from ..tiers import RedisTier

        return self._set_storage("redis", RedisTier.from_url(url, asynchronous=True, **kw))

    def build(self) -> Cache[K, V]:
        """Validate the configuration and return the cache (``ValueError`` says what to change)."""
        specs = self._specs()
        limiter = anyio.CapacityLimiter(THREAD_LIMIT)

        def adapt(tier: Any, spec: TierSpec) -> tuple[Any, Any]:
            return _tiers.adapt(tier, limiter)

        levels, owned = build_levels(specs, self._clock, adapt)
        reporter = None
        name = self._cache_name()
        if self._handler is not None or self._logs:
            from ..telemetry._reporter import Reporter

            reporter = Reporter(name, self._handler, self._logs)
        core = Core(levels, self._clock, name=name, stampede=self._stampede,
                    reporter=reporter, fail_safe=self._fail_safe,
                    loader_timeouts=self._timeouts([]), threaded=False, mutex=threading.Lock(), make_signal=anyio.Event)
        for level in levels:
            _listen(core, level)
        self._attach_backplane(core, owned, asynchronous=True)
        needs_tg = (any(s.ttr is not None and s.ttr.spawner is None for s in specs)
                    or self._loader_timeouts != (None, None))
        return Cache(core, owned, needs_tg)
