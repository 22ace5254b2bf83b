"""The framework operations' rules (SPEC §8), each written once as the ``change`` a tier
applies atomically (``Tier.update``, ``tier.py``) to the entry it holds.

1. An entry is present only if it has not expired in the tier that holds it
   (``freshness.judge`` with that tier's ttl); a stale entry is present.
2. A per-call ttl of ``0`` or less means "expire now": the operation removes what it
   would have stored, and reports what it would have reported.
3. ``add`` stores only where nothing is present; ``touch`` stamps a present entry now
   with a new ttl; ``incr`` replaces a present number by its sum with ``delta``, keeping
   its stamp and ttl (so its remaining life); ``delete`` removes, and says whether
   something was present.

A change never raises: what the caller must be told (``incr`` of a missing key or of a
value that is not a number) comes back as its result, and the core raises it after the
tier has answered, so a tier's own failure and a refusal are never confused.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from .durations import Duration
from .entry import CacheEntry
from .freshness import EXPIRED
from .level import Level
from .tier import KEEP, Change

EXPIRE_NOW: Any = object()
"""What :func:`per_call_ttl` makes of a ttl of ``0`` or less."""


class Missing:
    """``incr``'s result for a key with no entry present."""

    __slots__ = ()


MISSING = Missing()


class NotANumber:
    """``incr``'s result for a present entry whose value is not an ``int`` or ``float``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def per_call_ttl(ttl: Duration | None) -> float | None:
    """A framework operation's ``ttl``: ``None`` (the tier's), seconds, or :data:`EXPIRE_NOW`
    (rule 2). ``TypeError`` for what is not a duration, ``ValueError`` for NaN or infinity
    (``None`` is "no ttl of its own")."""
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise TypeError(f"ttl must be seconds (float) or a timedelta, not {type(ttl).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"ttl must be a finite number of seconds (None for no ttl of its own), got {ttl!r}")
    return EXPIRE_NOW if seconds <= 0 else seconds  # type: ignore[no-any-return]


def entry_of(value: Any, ttl: float | None) -> CacheEntry[Any]:
    """The entry a framework write stores: ``value`` (or the ``CacheEntry`` given) with the
    per-call ``ttl`` (seconds or ``None``, already through :func:`per_call_ttl`)."""
    if isinstance(value, CacheEntry):
        if ttl is not None:
            raise ValueError("give a CacheEntry (with its own ttl) or a ttl=, not both")
        return value
    return CacheEntry(value, None, ttl)


def present(level: Level, stored: CacheEntry[Any] | None, now: float) -> bool:
    """Rule 1."""
    return stored is not None and level.judge(stored, now) != EXPIRED


def adding(level: Level, now: float, value: Any, ttl: float | None) -> Change:
    """``add``: store ``value`` unless something is present; the result says whether it did."""
    entry = None if ttl is EXPIRE_NOW else entry_of(value, ttl).ensure_cached_at(now)

    def change(stored: CacheEntry[Any] | None) -> tuple[Any, bool]:
        if present(level, stored, now):
            return KEEP, False
        return entry, True

    return change


def touching(level: Level, now: float, ttl: float | None) -> Change:
    """``touch``: a present entry stamped now with ``ttl``; the result says whether one was present."""

    def change(stored: CacheEntry[Any] | None) -> tuple[Any, bool]:
        if stored is None or not present(level, stored, now):
            return KEEP, False
        if ttl is EXPIRE_NOW:
            return None, True
        return CacheEntry(stored.value, now, ttl), True

    return change


def incrementing(level: Level, now: float, delta: int | float) -> Change:
    """``incr``/``decr``: the present number plus ``delta``, with its stamp and ttl kept;
    the result is the new value, :data:`MISSING` or a :class:`NotANumber`."""

    def change(stored: CacheEntry[Any] | None) -> tuple[Any, Any]:
        if stored is None or not present(level, stored, now):
            return KEEP, MISSING
        value = stored.value
        if not _is_number(value):
            return KEEP, NotANumber(value)
        total = value + delta
        return CacheEntry(total, stored.cached_at, stored.ttl), total

    return change


def deleting(level: Level, now: float) -> Change:
    """``delete``: remove whatever is stored; the result says whether it was present."""

    def change(stored: CacheEntry[Any] | None) -> tuple[Any, bool]:
        if stored is None:
            return KEEP, False
        return None, present(level, stored, now)

    return change


def check_delta(delta: Any) -> None:
    """``incr``'s ``delta``: an ``int`` or ``float`` (``TypeError`` otherwise)."""
    if not _is_number(delta):
        raise TypeError(f"delta must be an int or float, not {type(delta).__name__}")


def _is_number(x: Any) -> bool:
    """What ``incr`` adds: an ``int`` or ``float``, not a ``bool``."""
    return type(x) is not bool and isinstance(x, int | float)
