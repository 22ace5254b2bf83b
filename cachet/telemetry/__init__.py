"""Telemetry: event names (``attributes``), typed events and the handler protocol."""

from . import attributes as attributes
from ._events import CacheOperationEvent as CacheOperationEvent
from ._events import CacheTierEvent as CacheTierEvent
from ._events import EventHandler as EventHandler

__all__ = ["CacheOperationEvent", "CacheTierEvent", "EventHandler", "attributes"]
