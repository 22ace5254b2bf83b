"""One configured tier of a stack: its operations, its policies, and the rules of
``freshness.py`` applied with its ttl and time to refresh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .entry import CacheEntry
from .freshness import copy_ttl, judge
from .policy import ExpirationPolicy, InsertPolicy
from .tier import AsyncTier, Ops, Tier


class Level:
    """A tier in a stack: its operations (sync or async callables) and its policies."""

    __slots__ = (
        "clear",
        "direct",
        "eager",
        "get",
        "get_many",
        "index",
        "inline",
        "insert",
        "invalidate",
        "is_fallback",
        "jitter",
        "length",
        "name",
        "policy",
        "retry_after",
        "spawner",
        "tier",
        "ttl",
        "ttr",
        "update",
    )

    def __init__(
        self,
        *,
        name: str,
        tier: Tier[Any] | AsyncTier[Any],
        ops: Ops,
        length: Callable[[], Any] | None,
        ttl: float | None,
        ttr: float | None,
        spawner: Any = None,
        policy: InsertPolicy,
        expiration: ExpirationPolicy,
        index: int,
        inline: tuple[Any, Any, Any] | None = None,
        direct: bool = False,
        jitter: float = 0.0,
        retry_after: float | None = None,
    ) -> None:
        self.name = name
        self.tier = tier
        # update, get_many: the tier's atomic step and bulk read (tier.py), or None.
        self.get, self.insert, self.invalidate, self.clear, self.update, self.get_many = ops
        self.length = length
        self.ttl = ttl
        self.ttr = ttr
        self.spawner = spawner
        self.policy = policy
        self.eager = expiration.eager_removal
        self.index = index
        self.is_fallback = index > 0
        self.inline = inline  # (lock, mapping, touch): see hit.py
        # An in-process tier that never blocks (``nonblocking = True``: memory, MockTier):
        # flows call its operations directly instead of yielding them as effects.
        self.direct = direct
        self.jitter = jitter  # extend each stored ttl by up to this fraction, at random
        self.retry_after = retry_after  # after a failed refresh, wait this long to retry

    def judge(self, entry: CacheEntry[Any], now: float) -> int:
        """``FRESH``, ``STALE`` or ``EXPIRED`` here (``freshness.judge``)."""
        return judge(entry, self.ttl, self.ttr, now)

    def copy_of(self, entry: CacheEntry[Any], source: Level, now: float,
                rand: Callable[[], float]) -> CacheEntry[Any] | None:
        """The copy of ``entry`` (as ``source`` holds it) to store here, or ``None``
        (``freshness.copy_ttl``; this tier's ttl jittered, if it jitters)."""
        mine = self.ttl
        if mine is not None and self.jitter:
            mine *= 1.0 + rand() * self.jitter
        ttl = copy_ttl(entry, source.ttl, mine, now)
        if ttl is False:
            return None
        return CacheEntry(entry.value, now, ttl)

    def jittered(self, entry: CacheEntry[Any], rand: Callable[[], float]) -> CacheEntry[Any]:
        """``entry`` with its effective ttl here extended by up to ``jitter`` (a fraction),
        so entries written together do not all expire together."""
        ttl = entry.ttl if entry.ttl is not None else self.ttl
        if ttl is None or not self.jitter:
            return entry
        return CacheEntry(entry.value, entry.cached_at, ttl * (1.0 + rand() * self.jitter))

    def __repr__(self) -> str:
        return f"<Level {self.index} {self.name!r} ttl={self.ttl} ttr={self.ttr}>"
