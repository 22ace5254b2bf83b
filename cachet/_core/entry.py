"""The cached value with its timestamp and optional per-entry TTL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from .durations import Duration, optional_seconds, to_seconds

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheEntry(Generic[V]):
    """An immutable cached value.

    ``cached_at`` is wall-clock seconds from the cache's clock (``None`` until a tier
    stamps it); ``ttl`` overrides the tier's TTL for this entry.

    >>> CacheEntry.expires_after("v", 30).ttl
    30.0
    """

    value: V
    cached_at: float | None = None
    ttl: float | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None and not isinstance(self.ttl, float):
            object.__setattr__(self, "ttl", optional_seconds(self.ttl, "entry ttl"))
        elif self.ttl is not None and not self.ttl > 0:
            raise ValueError(f"entry ttl must be > 0 seconds, got {self.ttl!r}")

    @classmethod
    def expires_after(cls, value: V, ttl: Duration) -> CacheEntry[V]:
        """An entry that expires ``ttl`` after it is stored."""
        return cls(value, None, to_seconds(ttl, "entry ttl"))

    @classmethod
    def expires_at(cls, value: V, ttl: Duration, cached_at: float) -> CacheEntry[V]:
        """An entry with both its TTL and its timestamp given."""
        return cls(value, float(cached_at), to_seconds(ttl, "entry ttl"))

    def ensure_cached_at(self, t: float) -> CacheEntry[V]:
        """This entry stamped with ``t``, unless it already has a stamp."""
        if self.cached_at is not None:
            return self
        return CacheEntry(self.value, t, self.ttl)
