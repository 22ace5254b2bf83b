"""Per-tier policies: what a tier accepts, when it drops expired entries, when to refresh."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .durations import Duration, to_seconds
from .entry import CacheEntry


class InsertOutcome(enum.Enum):
    """Whether an insert was stored by at least one tier."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class InsertPolicy:
    """Decides, per tier, whether a (stamped) entry is stored.

    >>> InsertPolicy.when(lambda e: e.value is not None).accepts(CacheEntry(None))
    False
    """

    __slots__ = ("_name", "_pred")

    def __init__(self, pred: Callable[[CacheEntry[Any]], bool] | None, name: str) -> None:
        self._pred = pred
        self._name = name

    @classmethod
    def always(cls) -> InsertPolicy:
        """Store everything (the default)."""
        return _ALWAYS

    @classmethod
    def never(cls) -> InsertPolicy:
        """Store nothing: the tier is read-only through this cache."""
        return _NEVER

    @classmethod
    def when(cls, pred: Callable[[CacheEntry[Any]], bool]) -> InsertPolicy:
        """Store an entry when ``pred(entry)`` is true; ``pred`` sees the stamped entry."""
        if not callable(pred):
            raise TypeError("InsertPolicy.when() takes a callable predicate")
        return cls(pred, "when")

    def accepts(self, entry: CacheEntry[Any]) -> bool:
        if self is _ALWAYS:
            return True
        if self is _NEVER:
            return False
        assert self._pred is not None
        return bool(self._pred(entry))

    def __repr__(self) -> str:
        return f"InsertPolicy.{self._name}()"


_ALWAYS = InsertPolicy(None, "always")
_NEVER = InsertPolicy(None, "never")


class ExpirationPolicy:
    """What a tier does with an expired entry it reads: ``lazy`` keeps it, ``eager`` removes it."""

    __slots__ = ("eager_removal",)

    def __init__(self, eager_removal: bool) -> None:
        self.eager_removal = eager_removal

    @classmethod
    def lazy(cls) -> ExpirationPolicy:
        """Expired entries read as misses and stay in the tier (the default)."""
        return cls(False)

    @classmethod
    def eager(cls) -> ExpirationPolicy:
        """Expired entries read as misses and are also removed from the tier."""
        return cls(True)

    def __repr__(self) -> str:
        return f"ExpirationPolicy.{'eager' if self.eager_removal else 'lazy'}()"


@dataclass(frozen=True, slots=True)
class TimeToRefresh:
    """Refresh an entry in the background once it is ``duration`` old.

    ``spawner`` runs the refresh: a ``concurrent.futures.Executor`` for ``cachet.sync``
    (default: a small pool the cache owns) or an anyio ``TaskGroup`` for ``cachet.aio``
    (default: the cache's own, opened by ``async with cache``). A refresh that fails
    (the tier below errs or misses, the reload raises) is not retried for the key until
    ``retry_after`` has passed (default: ``duration``), so a failing store is not asked
    again on every hit.
    """

    duration: float
    spawner: Any = None
    retry_after: float = 0.0

    def __init__(self, duration: Duration, spawner: Any = None, *,
                 retry_after: Duration | None = None) -> None:
        seconds = to_seconds(duration, "time_to_refresh")
        object.__setattr__(self, "duration", seconds)
        object.__setattr__(self, "spawner", spawner)
        object.__setattr__(self, "retry_after", seconds if retry_after is None
                           else to_seconds(retry_after, "retry_after", allow_zero=True))


@dataclass(frozen=True, slots=True)
class FailSafe:
    """Serve an expired entry, up to ``max_stale`` past its expiry, when the tier below or
    the loader fails, instead of raising; keep it in the primary tier for ``backoff`` so
    the failing store is not asked again on every call."""

    max_stale: float
    backoff: float

    def __init__(self, max_stale: Duration, backoff: Duration | None = None) -> None:
        stale = to_seconds(max_stale, "fail_safe max_stale")
        object.__setattr__(self, "max_stale", stale)
        object.__setattr__(self, "backoff", min(30.0, stale) if backoff is None
                           else to_seconds(backoff, "fail_safe backoff"))

    def usable(self, entry: CacheEntry[Any], level: Any, now: float) -> bool:
        """Whether ``entry`` (expired in ``level``) is within ``max_stale`` of its expiry."""
        ttl = entry.ttl if entry.ttl is not None else level.ttl
        at = entry.cached_at
        if ttl is None or at is None or at > now:
            return False
        return now - at - ttl <= self.max_stale
