"""Typed telemetry events and the handler protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CacheTierEvent:
    """Something happened in one tier during operation ``request_id`` (0: background work)."""

    request_id: int
    cache_name: str
    tier_name: str
    event: str
    duration_ns: int
    fallback: bool


@dataclass(frozen=True, slots=True)
class CacheOperationEvent:
    """A cache operation completed; ``coalesced`` is true if it waited on another call's run."""

    request_id: int
    cache_name: str
    operation: str
    duration_ns: int
    coalesced: bool


class EventHandler(Protocol):
    """Receives events; both methods are optional in practice (missing ones are skipped)."""

    def on_tier_event(self, event: CacheTierEvent) -> None: ...

    def on_operation_complete(self, event: CacheOperationEvent) -> None: ...
