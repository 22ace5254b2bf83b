"""Typed telemetry events and the handler protocol (SPEC §6, §7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# Both events are frozen, slotted dataclasses with a hand-written ``__init__``: the one
# ``frozen=True`` generates goes through ``object.__setattr__`` per field and costs ~3x
# more, on a path that runs for every tier event of every operation.


@dataclass(frozen=True, slots=True, init=False)
class CacheTierEvent:
    """Something happened in one tier during the operation ``request_id``.

    ``event`` is one of the tier event names of :mod:`cachet.telemetry.attributes`
    (``cache.hit``, ``cache.miss``, ``cache.inserted``, ...); ``duration_ns`` is how long
    the tier call took (0 for decisions that call no tier, such as a policy's rejection,
    and for evictions and expiries the tier reports itself); ``fallback`` is true for
    every tier below the first. ``request_id`` is 0 for background refresh work.

    >>> CacheTierEvent(1, "users", "redis", "cache.hit", 250_000, True).tier_name
    'redis'
    """

    request_id: int
    cache_name: str
    tier_name: str
    event: str
    duration_ns: int
    fallback: bool

    def __init__(self, request_id: int, cache_name: str, tier_name: str, event: str,
                 duration_ns: int, fallback: bool) -> None:
        _t_request_id(self, request_id)
        _t_cache_name(self, cache_name)
        _t_tier_name(self, tier_name)
        _t_event(self, event)
        _t_duration_ns(self, duration_ns)
        _t_fallback(self, fallback)


@dataclass(frozen=True, slots=True, init=False)
class CacheOperationEvent:
    """A cache operation completed (successfully or not); it comes after its tier events.

    ``operation`` is one of the ``OP_*`` names of :mod:`cachet.telemetry.attributes`
    (``cache.get``, ``cache.get_or_insert``, ..., ``cache.refresh`` for background
    work); ``duration_ns`` is the whole call, waiting included; ``coalesced`` is true
    when this call waited on another call's execution (stampede protection made it
    share a run) rather than running the operation itself.

    >>> CacheOperationEvent(7, "users", "cache.get", 1_200, False).coalesced
    False
    """

    request_id: int
    cache_name: str
    operation: str
    duration_ns: int
    coalesced: bool

    def __init__(self, request_id: int, cache_name: str, operation: str, duration_ns: int,
                 coalesced: bool) -> None:
        _o_request_id(self, request_id)
        _o_cache_name(self, cache_name)
        _o_operation(self, operation)
        _o_duration_ns(self, duration_ns)
        _o_coalesced(self, coalesced)


def _setter(cls: type, name: str) -> Any:
    return cls.__dict__[name].__set__  # the slot's own descriptor: no __setattr__ check


_t_request_id = _setter(CacheTierEvent, "request_id")
_t_cache_name = _setter(CacheTierEvent, "cache_name")
_t_tier_name = _setter(CacheTierEvent, "tier_name")
_t_event = _setter(CacheTierEvent, "event")
_t_duration_ns = _setter(CacheTierEvent, "duration_ns")
_t_fallback = _setter(CacheTierEvent, "fallback")
_o_request_id = _setter(CacheOperationEvent, "request_id")
_o_cache_name = _setter(CacheOperationEvent, "cache_name")
_o_operation = _setter(CacheOperationEvent, "operation")
_o_duration_ns = _setter(CacheOperationEvent, "duration_ns")
_o_coalesced = _setter(CacheOperationEvent, "coalesced")


class EventHandler(Protocol):
    """What ``.event_handler(h)`` calls. Both methods are optional: a handler with only
    one of them gets only those events.

    Handlers run inline, in the thread or task of the operation (background refreshes:
    in the refresh's), so keep them quick and thread-safe. An exception from a handler
    is logged once on the ``cachet`` logger and otherwise ignored: it never breaks the
    cache operation.
    """

    def on_tier_event(self, event: CacheTierEvent) -> None:
        """Called for every tier event, in order, before the operation's own event."""

    def on_operation_complete(self, event: CacheOperationEvent) -> None:
        """Called once per operation, after all its tier events."""
