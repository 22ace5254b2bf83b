"""Cache operations as values (SPEC §5): the service interface and ``MockTier`` record these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .entry import CacheEntry
from .policy import InsertOutcome

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class GetRequest(Generic[K]):
    """Read ``key``."""

    key: K


@dataclass(frozen=True, slots=True)
class InsertRequest(Generic[K, V]):
    """Store ``entry`` under ``key``."""

    key: K
    entry: CacheEntry[V]


@dataclass(frozen=True, slots=True)
class InvalidateRequest(Generic[K]):
    """Remove ``key``."""

    key: K


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """Remove everything."""


@dataclass(frozen=True, slots=True)
class UpdateRequest(Generic[K]):
    """Apply ``change`` to the entry of ``key`` atomically (a tier's ``update``, which the
    framework operations ``add``, ``touch``, ``incr`` and ``delete`` use)."""

    key: K
    change: Any


CacheRequest = (GetRequest[Any] | InsertRequest[Any, Any] | InvalidateRequest[Any] | ClearRequest
                | UpdateRequest[Any])


@dataclass(frozen=True, slots=True)
class GetResponse(Generic[V]):
    """The answer to a :class:`GetRequest`: an entry, or ``None`` for a miss."""

    entry: CacheEntry[V] | None

    @property
    def is_hit(self) -> bool:
        return self.entry is not None

    @property
    def is_miss(self) -> bool:
        return self.entry is None


@dataclass(frozen=True, slots=True)
class InsertResponse:
    """The answer to an :class:`InsertRequest`."""

    outcome: InsertOutcome


@dataclass(frozen=True, slots=True)
class InvalidateResponse:
    """The answer to an :class:`InvalidateRequest`."""


@dataclass(frozen=True, slots=True)
class ClearResponse:
    """The answer to a :class:`ClearRequest`."""


@dataclass(frozen=True, slots=True)
class UpdateResponse:
    """The answer to an :class:`UpdateRequest`: what the change returned."""

    result: Any


CacheResponse = GetResponse[Any] | InsertResponse | InvalidateResponse | ClearResponse | UpdateResponse
