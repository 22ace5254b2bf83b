"""The hit path: the primary tier's entry in one plain call, or ``None`` for "take the
slow path".

Rules:

1. A hit is the primary tier's entry for the key when ``freshness.judge`` says it is
   ``FRESH`` (neither expired nor stale). Anything else (absent,
   expired, stale, a key that cannot be hashed) is ``None``, and the flows of
   ``stack.py`` decide what it means.
2. Only a tier that exposes ``inline = (lock, mapping, touch or None)`` (the memory tier)
   is read in place; any other primary tier never hits here.
3. Neither the mapping's ``get`` nor an LRU tier's ``touch`` (which appends the key to
   the tier's read buffer, replayed under the tier's lock before it evicts) takes a
   lock: each is one C call, safe from any thread, so a hit racing a removal (an
   eviction, a backplane thread dropping another process's write) returns what it read
   and cannot fail.
4. With telemetry on, every hit is reported, so the slow path serves them all.

The function is an ordinary closure chosen once per cache at build time (DESIGN.md: a
hit costs about a locked dict lookup, and every extra frame is a third of that budget).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from . import attributes as a
from .entry import CacheEntry
from .freshness import FRESH, judge
from .level import Level
from .stats import STAT_OF_EVENT

Hit = Callable[[Hashable], "CacheEntry[Any] | None"]

_S_HIT = STAT_OF_EVENT[a.HIT]


def never_hit(key: Hashable) -> None:
    """The hit of a cache that has none (or cannot serve now): always the slow path."""
    return None


def make_hit(level: Level, now: Callable[[], float], counts: list[int], reporting: bool) -> Hit:
    """The hit function for primary tier ``level`` (rules 1-4)."""
    if level.inline is None or reporting:
        return never_hit
    _, data, touch = level.inline
    get = data.get
    tier_ttl, ttr = level.ttl, level.ttr
    timed = tier_ttl is not None or ttr is not None

    def hit(key: Hashable) -> CacheEntry[Any] | None:
        try:
            entry = get(key)
        except TypeError:  # unhashable: the slow path says so
            return None
        if entry is None:
            return None
        if touch is not None:
            touch(key)
        if (timed or entry.ttl is not None) and judge(entry, tier_ttl, ttr, now()) is not FRESH:
            return None
        counts[_S_HIT] += 1
        return entry  # type: ignore[no-any-return]

    return hit
