"""Per-tier counters, cheap enough to leave on: plain integer increments."""

from __future__ import annotations

from typing import Any

from . import attributes as a

FIELDS = ("hits", "misses", "expired", "errors", "inserts", "rejections", "evictions",
          "refreshes", "refresh_misses", "invalidations", "decode_errors", "fail_safe",
          "breaker_opens")

STAT_OF_EVENT: dict[str, int] = {
    a.HIT: 0, a.MISS: 1, a.EXPIRED: 2,
    a.GET_ERROR: 3, a.INSERT_ERROR: 3, a.INVALIDATE_ERROR: 3, a.CLEAR_ERROR: 3, a.PUBLISH_ERROR: 3,
    a.INSERTED: 4, a.INSERT_REJECTED: 5, a.EVICTION: 6, a.REFRESH_HIT: 7, a.REFRESH_MISS: 8,
    a.INVALIDATED: 9, a.DECODE_ERROR: 10, a.FAIL_SAFE: 11, a.BREAKER_OPENED: 12,
}


def snapshot(names: list[str], counts: list[list[int]], coalesced: int, load_errors: int) -> dict[str, Any]:
    """The shape ``Cache.stats()`` returns:
    ``{"tiers": {name: {field: n}}, "coalesced_waits": n, "load_errors": n}``."""
    tiers = {name: dict(zip(FIELDS, row, strict=True)) for name, row in zip(names, counts, strict=True)}
    return {"tiers": tiers, "coalesced_waits": coalesced, "load_errors": load_errors}
