"""Telemetry (SPEC §6): what a cache does, through two independent channels.

- ``.enable_logs()`` on a builder: a ``logging`` record per tier event and per completed
  operation on the logger ``"cachet"`` (:data:`attributes.TARGET`), each carrying its
  fields (``cache.name``, ``cache.event``, ``cache.duration_ns``, ...) as record
  attributes. Levels: :data:`attributes.ERROR_EVENTS`, :data:`attributes.INFO_EVENTS`,
  :data:`attributes.DEBUG_EVENTS`; operations at DEBUG.
- ``.event_handler(h)``: ``h.on_tier_event(CacheTierEvent)`` and
  ``h.on_operation_complete(CacheOperationEvent)`` (see :class:`EventHandler`).

``Cache.stats()`` counts per tier whether or not either channel is on;
:class:`CacheStats` gives it a typed shape. OpenTelemetry metrics:
:mod:`cachet.telemetry.otel` (extra ``otel``). See docs/telemetry.md.
"""

from . import attributes as attributes
from ._events import CacheOperationEvent as CacheOperationEvent
from ._events import CacheTierEvent as CacheTierEvent
from ._events import EventHandler as EventHandler
from ._stats import CacheStats as CacheStats
from ._stats import TierStats as TierStats

__all__ = [
    "CacheOperationEvent",
    "CacheStats",
    "CacheTierEvent",
    "EventHandler",
    "TierStats",
    "attributes",
]
