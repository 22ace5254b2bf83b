"""SPEC §2: the tier stack's rules, each by name, on sync, asyncio and trio."""

from __future__ import annotations

import pytest

from cachet import (
    CacheEntry,
    ExpirationPolicy,
    InsertOutcome,
    InsertPolicy,
    LoaderError,
    TierError,
    TimeToRefresh,
    UnsupportedError,
)
from cachet.service import ClearRequest, GetRequest, InsertRequest, InvalidateRequest
from cachet.testing import MockTier, MockTierError

pytestmark = pytest.mark.anyio


def two_tiers(frontend, clock, l1=None, l2=None, *, l1_ttl=10, l2_ttl=100, ttr=None,
              l1_policy=None):
    l1 = l1 if l1 is not None else MockTier()
    l2 = l2 if l2 is not None else MockTier()
    top = frontend.builder(clock).name("l1").storage(l1)
    if l1_ttl is not None:
        top = top.ttl(l1_ttl)
    if ttr is not None:
        top = top.time_to_refresh(frontend.ttr(ttr))
    if l1_policy is not None:
        top = top.insert_policy(l1_policy)
    below = frontend.builder(clock).name("l2").storage(l2)
    if l2_ttl is not None:
        below = below.ttl(l2_ttl)
    return top.fallback(below).build(), l1, l2


# -- freshness ---------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["memory", "mock"])
async def test_ttl_equal_to_elapsed_is_fresh(frontend, clock, tier) -> None:
    b = frontend.builder(clock)
    cache = (b.memory(10) if tier == "memory" else b.storage(MockTier())).ttl(5).build()
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        clock.advance(5)
        assert (await c.get("k")).value == "v"
        clock.advance(1e-6)
        assert await c.get("k") is None


async def test_expired_reads_as_miss_and_stays_in_tier_by_default(frontend, clock) -> None:
    tier = MockTier.with_data({"k": CacheEntry("v", clock.now() - 11)})
    cache = frontend.builder(clock).storage(tier).ttl(10).build()
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
    assert tier.contains_key("k")
    assert cache.stats()["tiers"]["storage"]["expired"] == 1


async def test_eager_expiration_removes_expired_entry_on_read(frontend, clock) -> None:
    tier = MockTier.with_data({"k": CacheEntry("v", clock.now() - 11)})
    cache = (frontend.builder(clock).storage(tier).ttl(10)
             .expiration_policy(ExpirationPolicy.eager()).build())
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
    assert not tier.contains_key("k")
    assert InvalidateRequest("k") in tier.operations


async def test_entry_ttl_overrides_tier_ttl(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(5).build()
    async with frontend.open(cache) as c:
        await c.insert("long", CacheEntry.expires_after("v", 20))
        await c.insert("short", CacheEntry.expires_after("v", 1))
        clock.advance(2)
        assert await c.get("short") is None
        clock.advance(10)
        assert (await c.get("long")).value == "v"


async def test_no_ttl_never_expires(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).build()
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        clock.advance(10**9)
        assert (await c.get("k")).value == "v"


async def test_cached_at_in_future_is_expired(frontend, clock) -> None:
    tier = MockTier.with_data({"k": CacheEntry("v", clock.now() + 1)})
    cache = frontend.builder(clock).storage(tier).ttl(10).build()
    async with frontend.open(cache) as c:
        assert await c.get("k") is None


async def test_ttl_without_cached_at_is_expired(frontend, clock) -> None:
    tier = MockTier.with_data({"k": CacheEntry("v", None, 10.0), "n": CacheEntry("v")})
    cache = frontend.builder(clock).storage(tier).build()
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
        assert (await c.get("n")).value == "v"  # no ttl anywhere: never expires


# -- the walk ----------------------------------------------------------------------------


async def test_both_miss_returns_none(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
    assert l1.operations == [GetRequest("k")] and l2.operations == [GetRequest("k")]


async def test_primary_hit_does_not_ask_below(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l1.data["k"] = CacheEntry("v", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
    assert l2.operations == []


async def test_promotion_stores_a_copy_stamped_now_that_never_outlives_its_source(
    frontend, clock
) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, l1_ttl=10, l2_ttl=100)
    src = CacheEntry("v", clock.now() - 95)  # 5 s of life left in L2
    l2.data["k"] = src
    async with frontend.open(cache) as c:
        got = await c.get("k")
        assert got == src  # returned as the tier that served it holds it
        assert l1.data["k"] == CacheEntry("v", clock.now(), 5.0)
        l2.data["fresh"] = CacheEntry("w", clock.now() - 1)
        await c.get("fresh")
        assert l1.data["fresh"] == CacheEntry("w", clock.now(), 10.0)  # the L1 ttl is shorter


async def test_promoted_copy_counts_l1_ttl_from_the_copy(frontend, clock) -> None:
    # The Rust original kept the source's stamp: an L2 entry older than the L1 TTL then
    # missed L1 on every get. Here the copy's age starts at promotion.
    cache, l1, l2 = two_tiers(frontend, clock, l1_ttl=10, l2_ttl=None)
    l2.data["k"] = CacheEntry("v", clock.now() - 50)
    async with frontend.open(cache) as c:
        await c.get("k")
        l2.clear_operations()
        clock.advance(9)
        assert (await c.get("k")).value == "v"
    assert l2.operations == []


async def test_promotion_goes_through_primary_insert_policy(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, l1_policy=InsertPolicy.never())
    l2.data["k"] = CacheEntry("v", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
    assert not [op for op in l1.operations if isinstance(op, InsertRequest)]


async def test_promotion_failure_still_returns_value(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l1.fail_when(lambda r: isinstance(r, InsertRequest))
    l2.data["k"] = CacheEntry("v", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
    assert cache.stats()["tiers"]["l1"]["errors"] == 1


async def test_primary_error_is_reported_not_raised(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l1.fail_when(lambda r: isinstance(r, GetRequest))
    l2.data["k"] = CacheEntry("v", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
    assert cache.stats()["tiers"]["l1"]["errors"] == 1


async def test_fallback_error_fails_the_get(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l2.fail_when(lambda r: isinstance(r, GetRequest))
    async with frontend.open(cache) as c:
        with pytest.raises(TierError) as info:
            await c.get("k")
    assert info.value.tier == "l2"
    assert isinstance(info.value.__cause__, MockTierError)


async def test_expired_primary_asks_below(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l1.data["k"] = CacheEntry("old", clock.now() - 11)
    l2.data["k"] = CacheEntry("new", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "new"


async def test_three_tiers_nest(frontend, clock) -> None:
    tiers = [MockTier(), MockTier(), MockTier()]
    tiers[2].data["k"] = CacheEntry("v", clock.now())
    b = frontend.builder
    cache = (b(clock).storage(tiers[0]).ttl(10)
             .fallback(b(clock).storage(tiers[1]).ttl(20).fallback(b(clock).storage(tiers[2])))
             .build())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
    assert tiers[1].data["k"].cached_at == clock.now() and tiers[0].contains_key("k")


# -- refresh -----------------------------------------------------------------------------


async def test_ttr_equal_to_elapsed_is_stale_on_the_memory_hit_path(frontend, clock) -> None:
    l2 = MockTier.with_data({"k": CacheEntry("new", clock.now() + 5)})
    cache = (frontend.builder(clock).memory(10).ttl(10).time_to_refresh(frontend.ttr(5))
             .fallback(frontend.builder(clock).storage(l2)).build())
    async with frontend.open(cache) as c:
        await c.insert("k", "old")
        l2.data["k"] = CacheEntry("new", clock.now())
        clock.advance(4.999)
        await c.get("k")
        await frontend.settle()
        assert l2.operations[-1] == InsertRequest("k", CacheEntry("old", clock.now() - 4.999))
        clock.advance(0.001)
        assert (await c.get("k")).value == "old"
        await frontend.settle()
        assert (await c.get("k")).value == "new"


async def test_stale_hit_returns_stale_value_and_refreshes_from_below(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, ttr=5)
    l1.data["k"] = CacheEntry("old", clock.now() - 5)  # TTR equal to elapsed: stale
    l2.data["k"] = CacheEntry("new", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "old"
        await frontend.settle()
        assert l1.data["k"] == CacheEntry("new", clock.now(), 10.0)
        assert (await c.get("k")).value == "new"
    assert cache.stats()["tiers"]["l1"]["refreshes"] == 1


async def test_fresh_hit_before_ttr_does_not_refresh(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, ttr=5)
    l1.data["k"] = CacheEntry("v", clock.now() - 4.999)
    async with frontend.open(cache) as c:
        await c.get("k")
        await frontend.settle()
    assert l2.operations == []


async def test_at_most_one_refresh_in_flight_per_key(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, ttr=5)
    l1.data["k"] = CacheEntry("old", clock.now() - 6)
    async with frontend.open(cache) as c:
        for _ in range(5):
            assert (await c.get("k")).value == "old"
        await frontend.settle()
    assert l2.operations == [GetRequest("k")]


async def test_refresh_miss_leaves_stale_entry(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, ttr=5)
    stale = CacheEntry("old", clock.now() - 6)
    l1.data["k"] = stale
    async with frontend.open(cache) as c:
        await c.get("k")
        await frontend.settle()
    assert l1.data["k"] == stale
    assert cache.stats()["tiers"]["l1"]["refresh_misses"] == 1


async def test_failed_refresh_leaves_no_key_in_flight_and_backs_off(frontend, clock) -> None:
    l1 = MockTier.with_data({"k": CacheEntry("old", clock.now() - 6)})
    l2 = MockTier()
    ttr = TimeToRefresh(5, frontend.ttr(5).spawner, retry_after=2)
    cache = (frontend.builder(clock).storage(l1).ttl(20).time_to_refresh(ttr)
             .fallback(frontend.builder(clock).storage(l2)).build())
    l2.fail_when(lambda r: True)
    async with frontend.open(cache) as c:
        await c.get("k")
        await frontend.settle()
        assert cache._core.refreshing == set()
        l2.clear_failures()
        l2.data["k"] = CacheEntry("new", clock.now())
        l2.clear_operations()
        clock.advance(1.999)
        await c.get("k")  # within retry_after: no new refresh, the store is spared
        await frontend.settle()
        assert l2.operations == [] and l1.data["k"].value == "old"
        clock.advance(0.001)
        await c.get("k")  # a new refresh starts
        await frontend.settle()
        assert l1.data["k"].value == "new"


async def test_clock_going_backwards_counts_as_stale(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, ttr=5, l1_ttl=None)
    l1.data["k"] = CacheEntry("old", clock.now() + 0.5)
    l2.data["k"] = CacheEntry("new", clock.now())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "old"
        await frontend.settle()
    assert l1.data["k"].value == "new"


async def test_entry_without_cached_at_is_never_stale(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, ttr=5, l1_ttl=None)
    l1.data["k"] = CacheEntry("v")
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
        await frontend.settle()
    assert l2.operations == []


# -- insert ------------------------------------------------------------------------------


async def test_insert_stamps_and_writes_every_tier(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    async with frontend.open(cache) as c:
        assert await c.insert("k", "v") is InsertOutcome.ACCEPTED
    stamped = CacheEntry("v", clock.now())  # the tier TTL is not written into the entry
    assert l1.operations == [InsertRequest("k", stamped)]
    assert l2.operations == [InsertRequest("k", stamped)]


async def test_insert_keeps_an_existing_stamp(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    async with frontend.open(cache) as c:
        await c.insert("k", CacheEntry.expires_at("v", 3, 42.0))
    assert l1.data["k"] == CacheEntry("v", 42.0, 3.0)


async def test_rejected_insert_never_calls_storage(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, l1_policy=InsertPolicy.when(lambda e: e.value > 1))
    async with frontend.open(cache) as c:
        assert await c.insert("k", 1) is InsertOutcome.ACCEPTED  # L2 took it
    assert l1.operations == []


async def test_outcome_rejected_when_every_tier_rejects(frontend, clock) -> None:
    l1 = MockTier()
    cache = frontend.builder(clock).storage(l1).insert_policy(InsertPolicy.never()).build()
    async with frontend.open(cache) as c:
        assert await c.insert("k", 1) is InsertOutcome.REJECTED
    assert l1.operations == []


async def test_accepted_l2_insert_does_not_imply_l1_read_sees_it(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock, l1_policy=InsertPolicy.never())
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        assert not l1.contains_key("k")
        assert (await c.get("k")).value == "v"  # served by L2


async def test_insert_attempts_every_tier_and_primary_error_wins(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l1.fail_when(lambda r: isinstance(r, InsertRequest))
    l2.fail_when(lambda r: isinstance(r, InsertRequest))
    async with frontend.open(cache) as c:
        with pytest.raises(TierError) as info:
            await c.insert("k", "v")
    assert info.value.tier == "l1"
    assert len(l2.operations) == 1


async def test_insert_error_in_l2_raises_but_l1_keeps_value(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l2.fail_when(lambda r: isinstance(r, InsertRequest))
    async with frontend.open(cache) as c:
        with pytest.raises(TierError) as info:
            await c.insert("k", "v")
        assert info.value.tier == "l2"
        assert (await c.get("k")).value == "v"  # nothing rolled back


# -- invalidate, clear, contains, len ----------------------------------------------------


async def test_invalidate_and_clear_reach_every_tier(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    async with frontend.open(cache) as c:
        await c.insert("a", 1)
        await c.insert("b", 2)
        await c.invalidate("a")
        assert not l1.contains_key("a") and not l2.contains_key("a")
        await c.clear()
    assert l1.entry_count == 0 and l2.entry_count == 0
    assert ClearRequest() in l1.operations and ClearRequest() in l2.operations


async def test_invalidate_error_rule(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l2.fail_when(lambda r: isinstance(r, InvalidateRequest | ClearRequest))
    l1.data["k"] = CacheEntry("v", clock.now())
    async with frontend.open(cache) as c:
        with pytest.raises(TierError):
            await c.invalidate("k")
        assert not l1.contains_key("k")  # every tier attempted
        with pytest.raises(TierError):
            await c.clear()


async def test_contains_and_len(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(5).build()
    async with frontend.open(cache) as c:
        await c.insert("k", 1)
        assert await c.contains("k") and not await c.contains("x")
        assert await c.len() == 1


async def test_len_unsupported_where_tier_cannot_count(frontend, clock) -> None:
    class NoLen:
        nonblocking = True

        def get(self, key):
            return None

        def insert(self, key, entry):
            return InsertOutcome.ACCEPTED

        def invalidate(self, key):
            pass

        def clear(self):
            pass

    cache = frontend.builder(clock).storage(NoLen()).build()
    async with frontend.open(cache) as c:
        with pytest.raises(UnsupportedError):
            await c.len()


# -- loaders -----------------------------------------------------------------------------


async def test_get_or_insert_loads_once_and_stamps(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    calls = []
    load = frontend.factory(lambda: calls.append(1) or "v")
    async with frontend.open(cache) as c:
        first = await c.get_or_insert("k", load)
        second = await c.get_or_insert("k", load)
    assert first == CacheEntry("v", clock.now()) and second.value == "v"
    assert calls == [1]


async def test_factory_exception_propagates_unchanged_and_is_not_cached(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)

    def boom():
        raise KeyError("nope")

    async with frontend.open(cache) as c:
        with pytest.raises(KeyError):
            await c.get_or_insert("k", frontend.factory(boom))
        assert l1.entry_count == 0 and l2.entry_count == 0
        with pytest.raises(LoaderError) as info:
            await c.try_get_or_insert("k", frontend.factory(boom))
        assert isinstance(info.value.__cause__, KeyError)
        assert (await c.get_or_insert("k", frontend.factory(lambda: 1))).value == 1


async def test_optionally_none_caches_nothing(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    async with frontend.open(cache) as c:
        assert await c.optionally_get_or_insert("k", frontend.factory(lambda: None)) is None
        assert (await c.optionally_get_or_insert("k", frontend.factory(lambda: 2))).value == 2
    assert l1.data["k"].value == 2


@pytest.mark.parametrize("method", ["get_or_insert", "try_get_or_insert", "optionally_get_or_insert"])
async def test_factory_returning_entry_sets_ttl(frontend, clock, method) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    async with frontend.open(cache) as c:
        got = await getattr(c, method)("k", frontend.factory(lambda: CacheEntry.expires_after("v", 2)))
        assert got == CacheEntry("v", clock.now(), 2.0)
        clock.advance(3)
        assert await c.get("k") is None


async def test_lookup_error_propagates_and_factory_is_not_called(frontend, clock) -> None:
    cache, l1, l2 = two_tiers(frontend, clock)
    l2.fail_when(lambda r: isinstance(r, GetRequest))
    calls = []
    async with frontend.open(cache) as c:
        with pytest.raises(TierError):
            await c.get_or_insert("k", frontend.factory(lambda: calls.append(1)))
    assert calls == []


async def test_loaded_entry_is_unstamped_when_every_tier_rejects(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).insert_policy(InsertPolicy.never()).build()
    async with frontend.open(cache) as c:
        assert await c.get_or_insert("k", frontend.factory(lambda: 1)) == CacheEntry(1)


async def test_unhashable_key_raises_type_error_naming_the_type(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).build()
    async with frontend.open(cache) as c:
        with pytest.raises(TypeError, match="list"):
            await c.get(["a"])
        with pytest.raises(TypeError, match="list"):
            await c.insert(["a"], 1)


def _chain_built(frontend, clock, tiers, how):
    b = frontend.builder
    top, mid, low = (b(clock).name(f"t{i}").storage(t) for i, t in enumerate(tiers))
    if how == "appended":  # b1.fallback(b2).fallback(b3): each call adds below the bottom
        return top.fallback(mid).fallback(low).build()
    return top.fallback(mid.fallback(low)).build()  # nested: b1.fallback(b2.fallback(b3))


@pytest.mark.parametrize("how", ["appended", "nested"])
async def test_fallback_chains_of_three_keep_all_three_tiers(frontend, clock, how) -> None:
    tiers = [MockTier(), MockTier(), MockTier.with_data({"k": CacheEntry("v", clock.now())})]
    cache = _chain_built(frontend, clock, tiers, how)
    assert list(cache.stats()["tiers"]) == ["t0", "t1", "t2"]
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
        await c.insert("w", 1)
    assert tiers[0].contains_key("k") and tiers[1].contains_key("k")
    assert all(t.contains_key("w") for t in tiers)


@pytest.mark.parametrize("how", ["tier object", "builder"])
async def test_fallback_chains_of_two_and_a_tier_object_appended(frontend, clock, how) -> None:
    tiers = [MockTier(), MockTier(), MockTier()]
    b = frontend.builder
    top = b(clock).name("t0").storage(tiers[0])
    below = tiers[1] if how == "tier object" else b(clock).name("t1").storage(tiers[1])
    two = top.fallback(below)
    assert len(two.build().stats()["tiers"]) == 2
    three = two.fallback(tiers[2])
    cache = three.build()
    async with frontend.open(cache) as c:
        await c.insert("k", 1)
    assert all(t.contains_key("k") for t in tiers)


async def test_a_builder_already_in_the_chain_is_refused(frontend, clock) -> None:
    b = frontend.builder
    top, mid = b(clock).memory(10), b(clock).storage(MockTier())
    top.fallback(mid)
    with pytest.raises(ValueError, match="already in this chain"):
        top.fallback(mid)
    with pytest.raises(ValueError, match="already in this chain"):
        top.fallback(top)
    with pytest.raises(ValueError, match="already in this chain"):
        mid.fallback(top)
