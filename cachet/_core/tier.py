"""The tier protocol (SPEC §7): what a cache asks of its storage, sync and async.

A tier stores ``CacheEntry`` objects by key and never judges freshness for the core: the
core reads ``cached_at`` and ``ttl`` itself (``freshness.py``). ``len()`` is optional (a
cache's ``len()`` says so when its primary tier has none). A tier that never blocks (an
in-process map) declares ``nonblocking = True``, and the core then calls it inline on
both frontends.

A tier may offer ``get_many(keys)``: the entry (or ``None``) of each key, in order, in
one round trip (Redis's ``MGET``). The bulk read (``Core.get_many_flow``) then asks it
once for the keys the tiers above did not have, instead of once per key.

A tier may also offer ``update(key, change)``, the one atomic step the framework
operations (``add``, ``touch``, ``incr``, ``delete``: ``_core/atomic.py``) need:
read the entry stored for ``key`` (``None`` if none), call ``change(entry)``, which
returns ``(new, result)``, then store ``new`` (a ``CacheEntry``), remove the key
(``None``) or leave it as it was (:data:`KEEP`), with no other write to the key in
between; return ``result``. ``change`` is pure and may be called more than once (a tier
that retries on a conflict, as Redis's ``WATCH`` does); if it raises, nothing is
written and the error propagates. The entry handed to ``change`` may be expired: the
core judges it. A tier without ``update`` cannot serve those operations
(``UnsupportedError``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from .entry import CacheEntry
from .policy import InsertOutcome

K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class _Keep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
"""What a ``change`` returns as its new entry to leave the stored one as it is."""

Change = Callable[[CacheEntry[Any] | None], tuple[CacheEntry[Any] | _Keep | None, Any]]
"""``change(stored) -> (new, result)``: the step a tier's ``update`` applies atomically."""


Ops = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any],
            Callable[..., Any] | None, Callable[..., Any] | None]
"""What a stack takes from a tier: ``get``, ``insert``, ``invalidate``, ``clear``, and the
optional ``update`` and ``get_many`` (``None`` where the tier has none)."""


def tier_ops(tier: Any) -> Ops:
    """``tier``'s operations, as a stack takes them."""
    return (tier.get, tier.insert, tier.invalidate, tier.clear, getattr(tier, "update", None),
            getattr(tier, "get_many", None))


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
