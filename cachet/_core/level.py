"""One configured tier of a stack and the freshness rules of SPEC §2.

Rules (every one of them lives here):

1. effective ttl = the entry's ttl if set, else the tier's; no ttl: never expires.
2. expired iff ``now - cached_at > ttl`` (strict); ``cached_at`` in the future is
   expired; a ttl with no ``cached_at`` is expired.
3. stale iff ``now - cached_at >= ttr`` (inclusive), or the clock went backwards; no
   ``cached_at``: never stale.
4. usable (a hit): neither expired nor stale; the hit path and the walk both ask this.
5. a copy made for an upper tier is stamped now, and its ttl is the shorter of the
   upper tier's ttl and what remains of the source's life; a copy with no life left
   is not made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .entry import CacheEntry
from .policy import ExpirationPolicy, InsertPolicy


class Level:
    """A tier in a stack: its operations (sync or async callables) and its policies."""

    __slots__ = (
        "clear",
        "direct",
        "eager",
        "get",
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
    )

    def __init__(
        self,
        *,
        name: str,
        tier: Any,
        ops: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]],
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
        self.get, self.insert, self.invalidate, self.clear = ops
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

    def expired(self, entry: CacheEntry[Any], now: float) -> bool:
        ttl = entry.ttl if entry.ttl is not None else self.ttl
        if ttl is None:
            return False
        cached_at = entry.cached_at
        return cached_at is None or cached_at > now or now - cached_at > ttl

    def stale(self, entry: CacheEntry[Any], now: float) -> bool:
        ttr = self.ttr
        cached_at = entry.cached_at
        if ttr is None or cached_at is None:
            return False
        return now < cached_at or now - cached_at >= ttr

    def usable(self, entry: CacheEntry[Any], now: float) -> bool:
        """Rule 4: neither expired (rule 2) nor stale (rule 3)."""
        return not self.expired(entry, now) and not self.stale(entry, now)

    def copy_of(self, entry: CacheEntry[Any], source: Level, now: float,
                rand: Callable[[], float]) -> CacheEntry[Any] | None:
        """The copy of ``entry`` (as ``source`` holds it) to store here, or ``None``."""
        ttl = entry.ttl if entry.ttl is not None else source.ttl  # life left in the source
        if ttl is None:
            left = None
        else:
            left = 0.0 if entry.cached_at is None else ttl - (now - entry.cached_at)
            if left <= 0:
                return None
        mine = self.ttl
        if mine is not None and self.jitter:
            mine *= 1.0 + rand() * self.jitter
        ttl = mine if left is None else (left if mine is None else min(mine, left))
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
