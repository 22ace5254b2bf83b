"""Stale-while-revalidate through the loader (issue 7): a stale hit of ``get_or_insert``
returns at once and reloads in the background with the same factory when no tier below
can supply a fresh value, memory-only caches included."""

from __future__ import annotations

import pytest

from cachet import CacheEntry
from cachet.testing import MockTier

pytestmark = pytest.mark.anyio


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if isinstance(self.fail, Exception):
            raise self.fail
        return f"v{self.calls}"

    fail: Exception | None = None


async def test_memory_only_stale_hit_reloads_in_background(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(10).time_to_refresh(frontend.ttr(5)).build()
    load = Counter()
    async with frontend.open(cache) as c:
        assert (await c.get_or_insert("k", frontend.factory(load))).value == "v1"
        clock.advance(5)  # TTR reached: stale, still fresh
        for _ in range(3):  # deduplicated: one reload however many stale hits
            assert (await c.get_or_insert("k", frontend.factory(load))).value == "v1"
        assert load.calls == 1
        await frontend.settle()
        assert load.calls == 2
        got = await c.get_or_insert("k", frontend.factory(load))
        assert got == CacheEntry("v2", clock.now())
        assert cache.stats()["tiers"]["memory"]["refreshes"] == 1


async def test_plain_get_on_a_stale_memory_only_entry_serves_it_without_reloading(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(10).time_to_refresh(frontend.ttr(5)).build()
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        clock.advance(6)
        assert (await c.get("k")).value == "v"  # nothing to reload it with
        await frontend.settle()
        assert cache._core.refreshing == set()


async def test_tier_below_is_preferred_over_the_loader(frontend, clock) -> None:
    l2 = MockTier()
    cache = (frontend.builder(clock).memory(10).ttl(10).time_to_refresh(frontend.ttr(5))
             .fallback(frontend.builder(clock).storage(l2)).build())
    load = Counter()
    async with frontend.open(cache) as c:
        await c.get_or_insert("k", frontend.factory(load))
        l2.data["k"] = CacheEntry("from-l2", clock.now())
        clock.advance(6)
        assert (await c.get_or_insert("k", frontend.factory(load))).value == "v1"
        await frontend.settle()
        assert load.calls == 1
        assert (await c.get("k")).value == "from-l2"


async def test_loader_reloads_when_the_tier_below_misses(frontend, clock) -> None:
    l2 = MockTier()
    cache = (frontend.builder(clock).memory(10).ttl(10).time_to_refresh(frontend.ttr(5))
             .fallback(frontend.builder(clock).storage(l2)).build())
    load = Counter()
    async with frontend.open(cache) as c:
        await c.get_or_insert("k", frontend.factory(load))
        l2.data.clear()
        clock.advance(6)
        await c.get_or_insert("k", frontend.factory(load))
        await frontend.settle()
        assert load.calls == 2
        assert l2.data["k"].value == "v2" and (await c.get("k")).value == "v2"


async def test_failed_reload_keeps_the_stale_value_and_frees_the_key(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(20).time_to_refresh(frontend.ttr(5)).build()
    load = Counter()
    async with frontend.open(cache) as c:
        await c.get_or_insert("k", frontend.factory(load))
        clock.advance(6)
        load.fail = RuntimeError("backend down")
        assert (await c.get_or_insert("k", frontend.factory(load))).value == "v1"
        await frontend.settle()
        assert cache._core.refreshing == set()
        assert (await c.get("k")).value == "v1"
        assert cache.stats()["tiers"]["memory"]["refresh_misses"] == 1
        load.fail = None
        await c.get_or_insert("k", frontend.factory(load))  # backing off: no reload yet
        await frontend.settle()
        assert load.calls == 2
        clock.advance(4.999)  # retry_after defaults to the TTR (5 s)
        await c.get_or_insert("k", frontend.factory(load))
        await frontend.settle()
        assert load.calls == 2
        clock.advance(0.001)
        await c.get_or_insert("k", frontend.factory(load))  # a new reload starts
        await frontend.settle()
        assert (await c.get("k")).value == "v3"


async def test_invalidate_during_reload_wins(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(10).time_to_refresh(frontend.ttr(5)).build()
    load = Counter()
    async with frontend.open(cache) as c:
        await c.get_or_insert("k", frontend.factory(load))
        clock.advance(6)
        await c.get_or_insert("k", frontend.factory(load))
        await c.invalidate("k")  # before the queued reload runs
        await frontend.settle()
        assert await c.get("k") is None
