"""The aio builder: the shared configuration, with async tiers and a ``cachet.aio.Cache``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import anyio

from .._builder import BuilderBase, TierSpec
from . import _tiers
from ._cache import Cache

K = TypeVar("K")
V = TypeVar("V")

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
