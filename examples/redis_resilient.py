"""A Redis L2 behind a timeout, retries and a circuit breaker.

    CACHET_REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_resilient.py

The stack, from the storage outwards (``stack`` reads inside-out)::

    memory L1  ->  serialize (signed)  ->  breaker -> retry -> timeout -> RedisTier

- ``timeout(0.25)``: one Redis call may take 250 ms at most. The tier is a sync one, so
  each call runs in a helper thread and the cache stops waiting at the deadline (see
  docs/service.md, "The sync timeout").
- ``retry(attempts=2)``: a failed or timed-out call is tried once more, 50 ms later.
- ``circuit_breaker(...)``: three failed (retried) calls within 30 s open it; then for
  10 s nothing reaches Redis, L1 misses fail fast, and L1 hits are served as usual.
  After the cooldown one probe decides whether Redis is back.

Two caches play two processes sharing one Redis: what the first loads, the second reads
from Redis, then from its own L1. Point ``CACHET_REDIS_URL`` at a port where nothing
listens to watch the breaker open while the app falls back to its loader.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from cachet import Cache, TierError
from cachet.service import (
    BreakerState,
    CircuitBreaker,
    as_service,
    circuit_breaker,
    retry,
    stack,
    timeout,
)
from cachet.tiers import RedisTier

URL = os.environ.get("CACHET_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = os.environ.get("CACHET_SECRET", "change-me: the HMAC key for values in Redis")
NAMESPACE = "cachet-example"

Profile = dict[str, Any]


def load_profile(user_id: int) -> Profile:
    """Stands in for the slow source of truth (a database query)."""
    return {"id": user_id, "name": f"user-{user_id}"}


class App:
    """One process: its own memory L1, the shared Redis L2 behind the resilience layers."""

    def __init__(self, name: str) -> None:
        self.name = name
        # redis-py's socket_timeout bounds connect and each command; our timeout layer
        # bounds the whole call as the cache sees it.
        self.redis = RedisTier.from_url(URL, namespace=NAMESPACE, name="redis", ttl=3600,
                                        socket_timeout=0.5)
        self.breaker: CircuitBreaker = circuit_breaker(
            failure_threshold=3, window=30, cooldown=10, name=f"{name}/redis",
            on_change=self.on_change,
        )
        l2 = stack(
            as_service(self.redis),          # the tier as a service
            timeout(0.25),                   # innermost: bounds each attempt
            retry(attempts=2, backoff=0.05),
            self.breaker,                    # outermost: one failure per exhausted retry
        )
        self.cache: Cache[str, Profile] = (
            Cache.builder().name(f"{name}/memory").memory(10_000).ttl(60)
            .serialize(secret=SECRET)        # Redis holds signed bytes
            .fallback(Cache.builder().name(f"{name}/redis").service(l2).ttl(3600))
            .build()
        )

    def on_change(self, old: BreakerState, new: BreakerState) -> None:
        print(f"    [{self.name}] breaker {old.value} -> {new.value}")

    def profile(self, user_id: int) -> tuple[Profile, str]:
        """The read path: the cache, or the database when the cache cannot answer."""
        loaded = []

        def load() -> Profile:
            loaded.append(user_id)
            return load_profile(user_id)

        l1_hits = self._l1_hits()
        try:
            entry = self.cache.get_or_insert(f"user:{user_id}", load)
        except TierError as exc:  # L2 down (or its breaker open): serve from the source
            return load_profile(user_id), f"database, L2 unavailable ({type(exc.__cause__).__name__})"
        if loaded:
            return entry.value, "database (cache miss)"
        return entry.value, "L1 memory" if self._l1_hits() > l1_hits else "L2 redis"

    def _l1_hits(self) -> int:
        tiers: Any = self.cache.stats()["tiers"]
        return int(tiers[f"{self.name}/memory"]["hits"])

    def close(self) -> None:
        self.cache.close()
        self.redis.close()  # the cache did not open it, so it does not close it


def main() -> int:
    print(f"redis at {URL}")
    apps = [App("web-1"), App("web-2")]
    try:
        apps[0].cache.clear()  # start from an empty namespace
    except TierError as exc:
        print(f"  (clear failed: {exc})")
    try:
        for app in (apps[0], apps[1], apps[1]):
            print(f"{app.name}:")
            for user_id in (1, 2, 3):
                value, source = app.profile(user_id)
                print(f"  user {user_id} ({value['name']}) from {source}")
        app = apps[1]
        t0 = time.perf_counter()
        for user_id in range(100, 105):
            app.profile(user_id)
        print(f"{app.name}: 5 cold reads took {1000 * (time.perf_counter() - t0):.0f} ms; "
              f"breaker {app.breaker.state.value}")
    finally:
        for app in apps:
            app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
