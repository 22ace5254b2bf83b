"""The cached value with its timestamp and optional per-entry TTL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .durations import Duration, optional_seconds, to_seconds
from .errors import DecodeError

V = TypeVar("V")


@dataclass(frozen=True, slots=True, init=False)
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

    # Written by hand (not generated with a __post_init__): entries are made on every
    # insert, load and promotion, and one frame fewer is measurable there.
    def __init__(self, value: V, cached_at: float | None = None, ttl: float | None = None) -> None:
        if ttl is not None and (type(ttl) is not float or not ttl > 0):
            ttl = _checked_ttl(ttl)
        _SET_VALUE(self, value)  # the slots' own setters: frozen, yet cheap to fill
        _SET_CACHED_AT(self, cached_at)
        _SET_TTL(self, ttl)

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


_SET_VALUE = CacheEntry.__dict__["value"].__set__
_SET_CACHED_AT = CacheEntry.__dict__["cached_at"].__set__
_SET_TTL = CacheEntry.__dict__["ttl"].__set__


class Unfrozen(Generic[V]):
    """``CacheEntry``'s layout without its frozen ``__setattr__``.

    The hot paths (a promotion, a load, a decoded L2 row) fill one with plain slot stores
    and then make it a ``CacheEntry`` by assigning ``__class__`` (allowed: the layouts are
    the same): about half the cost of calling ``CacheEntry``, whose frozen fields can
    only be set through their descriptors. See :func:`new_entry`.
    """

    __slots__ = CacheEntry.__slots__


_new = object.__new__


def new_entry(value: V, cached_at: float | None, ttl: float | None) -> CacheEntry[V]:
    """``CacheEntry(value, cached_at, ttl)`` for a ``ttl`` already known to be ``None``
    or a positive float (it is not checked again)."""
    e: Any = _new(Unfrozen)
    e.value = value
    e.cached_at = cached_at
    e.ttl = ttl
    e.__class__ = CacheEntry
    return e  # type: ignore[no-any-return]


_INF = float("inf")


def check_stamps(cached_at: object, ttl: object) -> None:
    """A stored record's ``cached_at`` and ``ttl`` as a cache writes them: each ``None``
    or a finite float, the ttl positive. Anything else raises ``DecodeError``: a damaged
    store must read as a miss, never as an entry that cannot expire."""
    if cached_at is not None and not (type(cached_at) is float and -_INF < cached_at < _INF):
        raise DecodeError(f"the stored cached_at {cached_at!r} is not a finite timestamp")
    if ttl is not None and not (type(ttl) is float and 0 < ttl < _INF):
        raise DecodeError(f"the stored ttl {ttl!r} is not a positive number of seconds")


def _checked_ttl(ttl: Duration) -> float:
    seconds = optional_seconds(ttl, "entry ttl")
    assert seconds is not None
    return seconds
