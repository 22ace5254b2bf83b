"""The tier protocol (SPEC §7): what a cache asks of its storage, sync and async.

A tier stores ``CacheEntry`` objects by key and never judges freshness for the core: the
core reads ``cached_at`` and ``ttl`` itself (``freshness.py``). ``len()`` is optional (a
cache's ``len()`` says so when its primary tier has none). A tier that never blocks (an
in-process map) declares ``nonblocking = True``, and the core then calls it inline on
both frontends.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, TypeVar, runtime_checkable

from .entry import CacheEntry
from .policy import InsertOutcome

K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


@runtime_checkable
class Tier(Protocol[K_contra]):
    """A blocking tier (``cachet.sync``, or ``cachet.aio`` through worker threads), for
    keys of type ``K_contra`` (``bytes`` for a tier below a serialization boundary)."""

    def get(self, key: K_contra) -> CacheEntry[Any] | None:
        """The entry stored for ``key``, or ``None``."""

    def insert(self, key: K_contra, entry: CacheEntry[Any]) -> InsertOutcome:
        """Store ``entry`` for ``key``; ``REJECTED`` if the tier declined it."""

    def invalidate(self, key: K_contra) -> None:
        """Remove ``key`` (absent is fine)."""

    def clear(self) -> None:
        """Remove everything."""


@runtime_checkable
class AsyncTier(Protocol[K_contra]):
    """A tier for ``cachet.aio``: the same operations as coroutines."""

    async def get(self, key: K_contra) -> CacheEntry[Any] | None:
        """The entry stored for ``key``, or ``None``."""

    async def insert(self, key: K_contra, entry: CacheEntry[Any]) -> InsertOutcome:
        """Store ``entry`` for ``key``; ``REJECTED`` if the tier declined it."""

    async def invalidate(self, key: K_contra) -> None:
        """Remove ``key`` (absent is fine)."""

    async def clear(self) -> None:
        """Remove everything."""
