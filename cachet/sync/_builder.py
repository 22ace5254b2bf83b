"""The sync builder: shared configuration plus a ``build()`` that wires sync tiers."""

from __future__ import annotations

import inspect
import threading
from typing import Any, Generic, TypeVar

from .._builder import BuilderBase, TierSpec, build_levels
from .._core.stack import Core
from ._cache import Cache

K = TypeVar("K")
V = TypeVar("V")


class CacheBuilder(BuilderBase[K, V], Generic[K, V]):
    """Configures a :class:`cachet.sync.Cache`; see :class:`cachet.CacheBuilder` methods."""

    def sqlite(self, path: str = ":memory:", **kw: Any) -> CacheBuilder[K, V]:
        """A SQLite tier at ``path`` (see :class:`cachet.tiers.SQLiteTier`)."""
        from ..tiers import SQLiteTier

        return self._set_storage("sqlite", SQLiteTier(path, **kw))

    def redis(self, url: str = "redis://127.0.0.1:6379/0", **kw: Any) -> CacheBuilder[K, V]:
        """A Redis tier on a sync client for ``url`` (see :class:`cachet.tiers.RedisTier`)."""
        from ..tiers import RedisTier

        return self._set_storage("redis", RedisTier.from_url(url, **kw))

    def build(self) -> Cache[K, V]:
        """Validate the configuration and return the cache (``ValueError`` says what to change)."""
        specs = self._specs()
        levels, owned = build_levels(specs, self._clock, _adapt)
        reporter = None
        name = self._cache_name()
        if self._handler is not None or self._logs:
            from ..telemetry._reporter import Reporter

            reporter = Reporter(name, self._handler, self._logs)
        core = Core(levels, self._clock, name=name, stampede=self._stampede,
                    reporter=reporter, fail_safe=self._fail_safe,
                    loader_timeouts=self._timeouts([]), threaded=True, mutex=threading.Lock(), make_signal=threading.Event)
        for level in levels:
            _listen(core, level)
        self._attach_backplane(core, owned, asynchronous=False)
        return Cache(core, owned)


def _adapt(tier: Any, spec: TierSpec) -> tuple[tuple[Any, Any, Any, Any], Any]:
    if inspect.iscoroutinefunction(getattr(tier, "get", None)):
        raise ValueError(
            f"tier {spec.name!r} is async ({type(tier).__name__}); use it with cachet.aio.Cache"
        )
    ops = (tier.get, tier.insert, tier.invalidate, tier.clear)
    return ops, getattr(tier, "len", None)


def _listen(core: Core, level: Any) -> None:
    """Let a tier report what happens inside it: evictions and expiry (the memory tier),
    payloads that failed to decode (the byte boundary; they read as misses)."""
    from .._core.stats import STAT_OF_EVENT
    from ..telemetry import attributes as a

    if hasattr(level.tier, "listener"):
        events = {"eviction": a.EVICTION, "expired": a.EXPIRED}
        # Counted in stats by the lookups that find entries expired; the sweep's removals
        # are events only, so one expired entry counts once.
        if core.reporter is None:
            # Telemetry off: an eviction is one counter (a full L1 evicts on every insert).
            row, stat = core.counts[level.index], STAT_OF_EVENT[a.EVICTION]
            if hasattr(level.tier, "evictions_into"):  # the memory tier counts in place
                level.tier.evictions_into = (row, stat)
            else:

                def count(event: str, key: Any) -> None:
                    if event == "eviction":
                        row[stat] += 1

                level.tier.listener = count
        else:
            level.tier.listener = lambda event, key: core.report(
                level, events[event], count=event == "eviction")
    if hasattr(level.tier, "on_decode_error"):
        level.tier.on_decode_error = lambda key, exc: core.report(level, a.DECODE_ERROR)
