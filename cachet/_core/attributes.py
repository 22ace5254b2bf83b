"""Names of the logger, record fields and events (SPEC §6), as constants."""

from __future__ import annotations

from typing import Final

__all__ = [
    "TARGET",
    "CACHE_NAME",
    "CACHE_TIER",
    "CACHE_EVENT",
    "CACHE_DURATION_NS",
    "CACHE_OPERATION",
    "CACHE_COALESCED",
    "CACHE_REQUEST_ID",
    "GET_ERROR",
    "INSERT_ERROR",
    "INVALIDATE_ERROR",
    "CLEAR_ERROR",
    "PUBLISH_ERROR",
    "LOAD_ERROR",
    "BREAKER_OPENED",
    "BREAKER_CLOSED",
    "EXPIRED",
    "REFRESH_MISS",
    "INSERTED",
    "INSERT_REJECTED",
    "INVALIDATED",
    "EVICTION",
    "DECODE_ERROR",
    "FAIL_SAFE",
    "HIT",
    "MISS",
    "REFRESH_HIT",
    "CLEARED",
    "OPERATION_COMPLETE",
    "OP_GET",
    "OP_INSERT",
    "OP_INVALIDATE",
    "OP_CLEAR",
    "OP_GET_OR_INSERT",
    "OP_TRY_GET_OR_INSERT",
    "OP_OPTIONALLY_GET_OR_INSERT",
    "OP_REFRESH",
    "OP_ADD",
    "OP_TOUCH",
    "OP_INCR",
    "OP_DELETE",
    "ERROR_EVENTS",
    "INFO_EVENTS",
    "DEBUG_EVENTS",
]

TARGET: Final = "cachet"
"""The ``logging`` logger name used by ``.enable_logs()``."""

# Record fields.
CACHE_NAME: Final = "cache.name"
CACHE_TIER: Final = "cache.tier"
CACHE_EVENT: Final = "cache.event"
CACHE_DURATION_NS: Final = "cache.duration_ns"
CACHE_OPERATION: Final = "cache.operation"
CACHE_COALESCED: Final = "cache.coalesced"
CACHE_REQUEST_ID: Final = "cache.request_id"

# ERROR events.
GET_ERROR: Final = "cache.get_error"
INSERT_ERROR: Final = "cache.insert_error"
INVALIDATE_ERROR: Final = "cache.invalidate_error"
CLEAR_ERROR: Final = "cache.clear_error"
PUBLISH_ERROR: Final = "cache.publish_error"
LOAD_ERROR: Final = "cache.load_error"  # a load no caller waited for any more failed
BREAKER_OPENED: Final = "cache.breaker_opened"  # a tier's circuit breaker opened
# INFO events.
EXPIRED: Final = "cache.expired"
REFRESH_MISS: Final = "cache.refresh_miss"
INSERTED: Final = "cache.inserted"
INSERT_REJECTED: Final = "cache.insert_rejected"
INVALIDATED: Final = "cache.invalidated"
EVICTION: Final = "cache.eviction"
DECODE_ERROR: Final = "cache.decode_error"
FAIL_SAFE: Final = "cache.fail_safe"
BREAKER_CLOSED: Final = "cache.breaker_closed"  # ... and closed again after a probe
# DEBUG events.
HIT: Final = "cache.hit"
MISS: Final = "cache.miss"
REFRESH_HIT: Final = "cache.refresh_hit"
CLEARED: Final = "cache.cleared"
OPERATION_COMPLETE: Final = "cache.operation_complete"

# Operation names.
OP_GET: Final = "cache.get"
OP_INSERT: Final = "cache.insert"
OP_INVALIDATE: Final = "cache.invalidate"
OP_CLEAR: Final = "cache.clear"
OP_GET_OR_INSERT: Final = "cache.get_or_insert"
OP_TRY_GET_OR_INSERT: Final = "cache.try_get_or_insert"
OP_OPTIONALLY_GET_OR_INSERT: Final = "cache.optionally_get_or_insert"
OP_REFRESH: Final = "cache.refresh"
OP_ADD: Final = "cache.add"
OP_TOUCH: Final = "cache.touch"
OP_INCR: Final = "cache.incr"  # decr too: an incr by -delta
OP_DELETE: Final = "cache.delete"

ERROR_EVENTS: Final = frozenset({GET_ERROR, INSERT_ERROR, INVALIDATE_ERROR, CLEAR_ERROR, PUBLISH_ERROR,
                                 LOAD_ERROR, BREAKER_OPENED})
INFO_EVENTS: Final = frozenset(
    {EXPIRED, REFRESH_MISS, INSERTED, INSERT_REJECTED, INVALIDATED, EVICTION, DECODE_ERROR,
     FAIL_SAFE, BREAKER_CLOSED}
)
DEBUG_EVENTS: Final = frozenset({HIT, MISS, REFRESH_HIT, CLEARED})
