"""A typed view of ``Cache.stats()``: per-tier counts with derived ratios."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class TierStats:
    """What one tier has done since the cache was built. Every field is a plain count.

    ``hits``, ``misses`` and ``expired`` are lookup outcomes (a tier below the first is
    also read by promotions and background refreshes); ``errors`` counts failed tier
    calls of any kind; ``inserts`` / ``rejections`` are writes stored / refused (by the
    insert policy or the tier); ``evictions`` are entries pushed out for capacity;
    ``refreshes`` / ``refresh_misses`` are background refreshes of this tier that found
    a value below / found none; ``invalidations``, ``decode_errors`` (byte tiers:
    payloads that read as a miss) and ``fail_safe`` (expired entries served instead of
    an error, see ``.fail_safe()``) complete the set.

    >>> TierStats(hits=3, misses=1).hit_ratio
    0.75
    """

    hits: int = 0
    misses: int = 0
    expired: int = 0
    errors: int = 0
    inserts: int = 0
    rejections: int = 0
    evictions: int = 0
    refreshes: int = 0
    refresh_misses: int = 0
    invalidations: int = 0
    decode_errors: int = 0
    fail_safe: int = 0
    breaker_opens: int = 0

    @property
    def lookups(self) -> int:
        """Reads that found a hit, a miss or an expired entry (errors excluded)."""
        return self.hits + self.misses + self.expired

    @property
    def hit_ratio(self) -> float | None:
        """``hits / lookups``, or ``None`` before the first lookup."""
        n = self.lookups
        return self.hits / n if n else None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """``Cache.stats()`` as values: ``tiers`` maps each tier's name (top first) to its
    :class:`TierStats`; ``coalesced_waits`` counts calls that waited on another call's
    run (stampede protection at work); ``load_errors`` counts failed loads no caller was
    left to see (a detached load whose callers all gave up, a timed load that finished late).

    >>> stats = CacheStats.from_snapshot({"tiers": {"memory": {"hits": 9, "misses": 1}},
    ...                                   "coalesced_waits": 0})
    >>> stats.tiers["memory"].hit_ratio
    0.9
    """

    tiers: Mapping[str, TierStats]
    coalesced_waits: int = 0
    load_errors: int = 0

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> CacheStats:
        """Build from the dict ``Cache.stats()`` returns (unknown fields are ignored)."""
        known = {f.name for f in fields(TierStats)}
        tiers = {
            name: TierStats(**{k: int(v) for k, v in counts.items() if k in known})
            for name, counts in snapshot["tiers"].items()
        }
        return cls(tiers, int(snapshot.get("coalesced_waits", 0)), int(snapshot.get("load_errors", 0)))

    @classmethod
    def of(cls, cache: Any) -> CacheStats:
        """The current stats of a ``cachet.Cache`` or ``cachet.AsyncCache``."""
        return cls.from_snapshot(cache.stats())

    def as_dict(self) -> dict[str, Any]:
        """The plain-dict shape of ``Cache.stats()`` (for JSON or a metrics exporter)."""
        return {"tiers": {name: asdict(t) for name, t in self.tiers.items()},
                "coalesced_waits": self.coalesced_waits, "load_errors": self.load_errors}

    def __str__(self) -> str:
        lines = []
        for name, t in self.tiers.items():
            ratio = "-" if t.hit_ratio is None else f"{t.hit_ratio:.1%}"
            lines.append(
                f"{name}: hits={t.hits} misses={t.misses} expired={t.expired} hit_ratio={ratio} "
                f"inserts={t.inserts} rejections={t.rejections} evictions={t.evictions} "
                f"refreshes={t.refreshes} errors={t.errors}"
            )
        lines.append(f"coalesced_waits={self.coalesced_waits} load_errors={self.load_errors}")
        return "\n".join(lines)
