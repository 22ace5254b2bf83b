"""The freshness and copy rules of SPEC §2, each written once.

1. The effective ttl of an entry in a tier is the entry's own ttl if set, else the
   tier's; with neither, the entry never expires.
2. Expired iff ``now - cached_at > ttl`` (strictly: equal is still fresh); a
   ``cached_at`` in the future is expired; a ttl with no ``cached_at`` is expired.
3. Stale (due for a refresh, with time to refresh ``ttr``) iff
   ``now - cached_at >= ttr`` (inclusive), or the clock went backwards; an entry with
   no ``cached_at`` is never stale. Staleness is judged only on entries not expired.
4. A copy made for an upper tier (promotion, refresh) is stamped now; its ttl is the
   shorter of the upper tier's ttl and what remains of the entry's life in the tier it
   came from. A copy with no life left is not made.

``judge`` applies rules 1-3: the hit path (``hit.py``) and the walk (``stack.py``) both
ask it. (Two tiers also drop rows by rule 2 on their own, before the core sees them: the
memory tier's sweep, which adds fail-safe's grace, and SQLite's read.)
"""

from __future__ import annotations

from typing import Any, Final

from .entry import CacheEntry

FRESH: Final = 0
STALE: Final = 1
EXPIRED: Final = 2


def judge(entry: CacheEntry[Any], tier_ttl: float | None, ttr: float | None, now: float) -> int:
    """``FRESH``, ``STALE`` or ``EXPIRED``: rules 1-3 for ``entry`` in a tier with ``tier_ttl``
    and ``ttr`` (either may be ``None``)."""
    ttl = entry.ttl
    if ttl is None:
        ttl = tier_ttl
    at = entry.cached_at
    if ttl is not None and (at is None or at > now or now - at > ttl):
        return EXPIRED
    if ttr is not None and at is not None and (now < at or now - at >= ttr):
        return STALE
    return FRESH


def copy_ttl(entry: CacheEntry[Any], source_ttl: float | None, upper_ttl: float | None,
             now: float) -> float | bool | None:
    """Rule 4: the ttl of the copy of ``entry`` (held by a tier with ``source_ttl``) for
    a tier with ``upper_ttl``; ``False`` when no copy is to be made."""
    ttl = entry.ttl if entry.ttl is not None else source_ttl  # the life it has in its source
    if ttl is None:
        return upper_ttl
    left = 0.0 if entry.cached_at is None else ttl - (now - entry.cached_at)
    if left <= 0:
        return False
    return left if upper_ttl is None else min(upper_ttl, left)
