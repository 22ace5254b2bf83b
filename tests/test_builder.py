"""Builder validation (SPEC §1): misconfiguration is a ValueError at build() saying what to change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cachet import AsyncCache, Cache, CacheEntry, InsertPolicy, ManualClock, SystemClock, TimeToRefresh
from cachet.testing import MockTier


@pytest.fixture(params=[Cache, AsyncCache], ids=["sync", "aio"])
def C(request):
    return request.param


@pytest.mark.parametrize(
    ("configure", "message"),
    [
        (lambda b: b, "no storage"),
        (lambda b: b.memory(0), "max_entries must be >= 1"),
        (lambda b: b.memory(10).ttl(-1), "ttl must be > 0"),
        (lambda b: b.memory(10).ttl(0), "ttl must be > 0"),
        (lambda b: b.memory(10, policy="mru"), "policy must be one of"),
        (lambda b: b.memory(max_size=10), "getsizeof"),
        (lambda b: b.storage(object()), "is not a tier"),
        (lambda b: b.memory(10).memory(5), "already has memory storage"),
    ],
)
def test_misconfiguration_raises_value_error_at_build(C, configure, message) -> None:
    builder = configure(C.builder())  # no error before build()
    with pytest.raises(ValueError, match=message):
        builder.build()


def test_ttr_not_shorter_than_ttl_is_rejected(C) -> None:
    b = C.builder().memory(10).ttl(10).time_to_refresh(10).fallback(C.builder().storage(MockTier()))
    with pytest.raises(ValueError, match="shorter than its ttl"):
        b.build()


def test_negative_durations_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError):
        TimeToRefresh(-1)
    with pytest.raises(ValueError):
        CacheEntry.expires_after(1, 0)
    with pytest.raises(TypeError):
        CacheEntry.expires_after(1, "5")


def test_durations_accept_timedelta(C) -> None:
    clock = ManualClock()
    cache = C.builder(clock).memory(10).ttl(timedelta(seconds=5)).build()
    assert cache._core.levels[0].ttl == 5.0
    assert CacheEntry.expires_after(1, timedelta(minutes=1)).ttl == 60.0


def test_names_clock_and_fallback_tier_object(C) -> None:
    clock = ManualClock()
    cache = C.builder(clock).name("users").memory(10).fallback(MockTier()).build()
    assert cache.name == "users" and cache.clock is clock
    assert [lv.name for lv in cache._core.levels] == ["users", "storage"]
    unnamed = C.builder().memory(10).build()
    assert unnamed.name.startswith("cachet-") and isinstance(unnamed.clock, SystemClock)
    assert C.builder().memory(10).build().name != unnamed.name


def test_insert_policy_type_checked(C) -> None:
    with pytest.raises(ValueError, match="InsertPolicy"):
        C.builder().memory(10).insert_policy(lambda e: True).build()
    assert InsertPolicy.when(lambda e: True).accepts(CacheEntry(1))


def test_sync_builder_rejects_async_tier() -> None:
    class AsyncTier:
        async def get(self, key): ...
        async def insert(self, key, entry): ...
        async def invalidate(self, key): ...
        async def clear(self): ...

    with pytest.raises(ValueError, match="async"):
        Cache.builder().storage(AsyncTier()).build()
    AsyncCache.builder().storage(AsyncTier()).build()
