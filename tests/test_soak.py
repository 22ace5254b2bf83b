"""Soak: mixed operations through memory + SQLite + Redis, with Redis killed and restarted
in the middle, on one cache that is never rebuilt (issue 9). See docs/resilience.md.

``CACHET_SOAK_SECONDS`` sets the length of the run (default 2: a few seconds in CI; try
60 locally). The run has four phases: warm-up, Redis up, Redis down, Redis back.
"""

from __future__ import annotations

import gc
import os
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from cachet import TierError
from cachet.sync import Cache
from cachet.testing import ManualClock

from .redis_server import running_server

pytestmark = pytest.mark.redis

SECONDS = float(os.environ.get("CACHET_SOAK_SECONDS", "2"))
KEYS = 300
SECRET = b"soak-secret"
# Python heap the measured phases may add: generous (a flat run adds ~20 KB: reconnection,
# interned keys), yet a leak of a few hundred bytes per operation fails it.
GROWTH_BASE, GROWTH_PER_OP = 64_000, 64


def build(clock: ManualClock, path: Path, url: str) -> Cache[Any, Any]:
    redis = Cache.builder(clock).redis(url, namespace=f"soak-{os.getpid()}").name("redis").ttl(600)
    sqlite = Cache.builder(clock).sqlite(str(path)).name("sqlite").ttl(300).fallback(redis)
    return (Cache.builder(clock).memory(100).name("memory").ttl(30)
            .serialize(secret=SECRET).fallback(sqlite).stampede_protection().build())


class Run:
    def __init__(self, cache: Cache[Any, Any], clock: ManualClock, seed: int) -> None:
        self.cache = cache
        self.clock = clock
        self.rng = random.Random(seed)
        self.version = 0
        self.ops = 0
        self.errors: dict[str, int] = {}

    def one(self) -> None:
        """One random operation; every value read must be one written for its key."""
        rng, cache = self.rng, self.cache
        key = rng.randrange(KEYS)
        roll = rng.random()
        self.ops += 1
        self.clock.advance(0.05)
        try:
            if roll < 0.45:
                entry = cache.get(key)
            elif roll < 0.75:
                self.version += 1
                v = self.version
                entry = cache.get_or_insert(key, lambda: (key, v, b"x" * 64))
            elif roll < 0.92:
                self.version += 1
                cache.insert(key, (key, self.version, b"y" * 64))
                entry = None
            elif roll < 0.995:
                cache.invalidate(key)
                entry = None
            else:
                cache.clear()
                entry = None
        except TierError as exc:
            self.errors[exc.tier] = self.errors.get(exc.tier, 0) + 1
            return
        if entry is not None:
            assert entry.value[0] == key, (key, entry)

    def for_seconds(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(20):
                self.one()


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_soak_memory_sqlite_redis_with_an_outage(tmp_path: Path) -> None:
    clock = ManualClock(1_000_000.0)
    with running_server() as server:
        cache = build(clock, tmp_path / "soak.db", server.url)
        run = Run(cache, clock, seed=11)
        tracemalloc.start()
        try:
            run.for_seconds(SECONDS * 0.2)  # warm-up: caches, connections, code paths
            before, measured_from = heap(), run.ops
            run.for_seconds(SECONDS * 0.3)
            assert run.errors == {}, run.errors  # nothing fails while everything is up

            # -- Redis goes away -----------------------------------------------------
            cache.insert("hot", "in every tier")
            server.kill()
            assert cache.get("hot").value == "in every tier"  # memory hits keep working
            with pytest.raises(TierError) as info:
                cache.get("never written")  # misses memory and SQLite: Redis's error is raised
            assert info.value.tier == "redis"
            with pytest.raises(TierError):
                cache.insert("during outage", 1)  # written to the tiers that work, error raised
            assert cache.get("during outage").value == 1  # ... so memory serves it
            down_ops = run.ops
            run.for_seconds(SECONDS * 0.25)
            down_ops = run.ops - down_ops
            assert set(run.errors) == {"redis"}, run.errors  # only the missing tier fails
            assert 0 < run.errors["redis"] < down_ops  # some calls failed, others were served

            # -- Redis comes back (empty: no persistence); same cache object ---------
            server.restart()
            failed = dict(run.errors)
            assert cache.get("never written") is None
            cache.insert("after", 2)
            assert cache.get("after").value == 2
            assert cache.get_or_insert("loaded after", lambda: 3).value == 3
            run.for_seconds(SECONDS * 0.25)
            assert run.errors == failed, "errors after Redis came back"
            after = heap()
        finally:
            tracemalloc.stop()
            cache.close()
    growth, measured = after - before, run.ops - measured_from
    print(f"soak: {run.ops} operations, heap growth {growth} bytes over {measured}, errors {run.errors}")
    assert growth < GROWTH_BASE + GROWTH_PER_OP * measured, f"heap grew by {growth} bytes over {measured} operations"
    assert run.ops > 200
