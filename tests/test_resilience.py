"""Resilience (issue 9): TTL jitter, refresh back-off, fail-safe, loader timeouts."""

from __future__ import annotations

import pytest

from cachet import CacheEntry
from cachet._core import attributes as a
from cachet.testing import MockTier

from .helpers import wait_until

pytestmark = pytest.mark.anyio


async def test_ttl_jitter_spreads_expiry_within_the_bound(frontend, clock) -> None:
    l1, l2 = MockTier(), MockTier()
    cache = (frontend.builder(clock).storage(l1).ttl(10, jitter=0.5)
             .fallback(frontend.builder(clock).storage(l2).ttl(100)).build())
    async with frontend.open(cache) as c:
        for k in range(50):
            await c.insert(k, k)
    ttls = [e.ttl for e in l1.data.values()]
    assert all(10.0 <= t <= 15.0 for t in ttls)
    assert len(set(ttls)) > 40  # spread out, not one value
    assert all(e.ttl is None for e in l2.data.values())  # no jitter configured there


async def test_jittered_promotion_never_outlives_its_source(frontend, clock) -> None:
    l1, l2 = MockTier(), MockTier.with_data({"k": CacheEntry("v", clock.now() - 95)})
    cache = (frontend.builder(clock).storage(l1).ttl(10, jitter=1.0)
             .fallback(frontend.builder(clock).storage(l2).ttl(100)).build())
    async with frontend.open(cache) as c:
        await c.get("k")
    assert l1.data["k"].ttl == 5.0  # 5 s left in L2 caps the jittered L1 ttl


def test_jitter_must_be_a_fraction(frontend) -> None:
    with pytest.raises(ValueError, match="jitter"):
        frontend.builder().memory(10).ttl(10, jitter=2).build()


# -- fail-safe ---------------------------------------------------------------------------


def fail_safe_stack(frontend, clock, *, max_stale=60, backoff=5):
    l2 = MockTier()
    cache = (frontend.builder(clock).memory(100).ttl(10)
             .fallback(frontend.builder(clock).storage(l2).ttl(100))
             .fail_safe(max_stale, backoff=backoff).build())
    return cache, l2


async def test_fail_safe_serves_an_expired_entry_when_the_tier_below_fails(frontend, clock) -> None:
    cache, l2 = fail_safe_stack(frontend, clock)
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        clock.advance(30)  # expired in L1 (ttl 10), 20 s past expiry: within max_stale
        l2.fail_when(lambda r: True)
        got = await c.get("k")
        assert got is not None and got.value == "v" and got.cached_at == clock.now() - 30
        assert cache.stats()["tiers"]["memory"]["fail_safe"] == 1
        # For the back-off it is served from L1 without asking the failing L2.
        l2.clear_operations()
        clock.advance(4)
        assert (await c.get("k")).value == "v"
        assert l2.operations == []
        clock.advance(1.001)  # back-off over: L2 is asked again (and fails again)
        assert (await c.get("k")).value == "v"
        assert len(l2.operations) == 1


async def test_fail_safe_does_not_serve_beyond_max_stale(frontend, clock) -> None:
    from cachet import TierError

    cache, l2 = fail_safe_stack(frontend, clock, max_stale=5)
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        clock.advance(15.001)  # 5.001 s past expiry
        l2.fail_when(lambda r: True)
        with pytest.raises(TierError):
            await c.get("k")


async def test_fail_safe_serves_stale_when_the_loader_fails(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(10).fail_safe(60).build()

    def boom():
        raise RuntimeError("backend down")

    async with frontend.open(cache) as c:
        await c.get_or_insert("k", frontend.factory(lambda: "v"))
        clock.advance(20)
        assert (await c.get_or_insert("k", frontend.factory(boom))).value == "v"
        assert (await c.try_get_or_insert("k", frontend.factory(boom))).value == "v"
        clock.advance(100)  # beyond max_stale: the error surfaces
        with pytest.raises(RuntimeError):
            await c.get_or_insert("k", frontend.factory(boom))


async def test_fail_safe_off_by_default_and_a_miss_is_still_a_miss(frontend, clock) -> None:
    from cachet import TierError

    cache, l2 = fail_safe_stack(frontend, clock)
    plain = (frontend.builder(clock).memory(10).ttl(10)
             .fallback(frontend.builder(clock).storage(l2)).build())
    async with frontend.open(cache) as c, frontend.open(plain) as p:
        await c.insert("k", "v")
        await p.insert("k", "v")
        clock.advance(20)
        l2.data.clear()  # a healthy L2 that no longer has it: the value is gone
        assert await c.get("k") is None
        l2.fail_when(lambda r: True)
        with pytest.raises(TierError):
            await p.get("k")


def test_memory_tier_keeps_expired_entries_for_max_stale(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(10).fail_safe(60).build()
    tier = cache._core.levels[0].tier
    tier.insert("k", CacheEntry("v", clock.now()))
    clock.advance(69)
    assert tier.expire() == 0
    clock.advance(1.001)
    assert tier.expire() == 1


# -- loader timeouts -------------------------------------------------------------------
# These wait for real timeouts of a few ms (the thing under test); cache time is a
# ManualClock as everywhere else.


class Blocked:
    """A factory that waits until released, for threads (sync) and tasks (aio)."""

    def __init__(self, frontend, value) -> None:
        import threading

        import anyio

        self.sync = frontend.is_sync
        self.release = threading.Event() if self.sync else anyio.Event()
        self.value = value

    def factory(self):
        if self.sync:
            def load():
                assert self.release.wait(10)
                return self.value
        else:
            async def load():
                await self.release.wait()
                return self.value
        return load


async def until(frontend, predicate, what: str = "the condition") -> None:
    """Poll (bounded) until ``predicate()`` (or the awaitable it returns) holds: a late
    load runs in a worker thread or task of the cache's."""
    import inspect
    import time

    import anyio

    deadline = time.monotonic() + 10
    while True:
        held = predicate()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"{what} never held"
        if frontend.is_sync:
            time.sleep(0.001)
        else:
            await anyio.sleep(0.001)


async def eventually(frontend, c, key, expected) -> None:
    """Wait (bounded) for a late load to land in the cache."""

    async def landed() -> bool:
        got = await c.get(key)
        return got is not None and got.value == expected

    await until(frontend, landed, f"{key!r} becoming {expected!r}")


async def test_hard_timeout_raises_and_the_late_result_is_cached(frontend, clock) -> None:
    from cachet import LoaderTimeout

    cache = frontend.builder(clock).memory(10).ttl(10).loader_timeouts(hard=0.02).build()
    slow = Blocked(frontend, "late")
    async with frontend.open(cache) as c:
        with pytest.raises(LoaderTimeout, match="background"):
            await c.get_or_insert("k", slow.factory())
        assert isinstance(LoaderTimeout("x"), TimeoutError)
        slow.release.set()
        await eventually(frontend, c, "k", "late")
        assert len(cache._core.guard) == 0


async def test_soft_timeout_serves_the_fail_safe_value_then_updates(frontend, clock) -> None:
    cache = (frontend.builder(clock).memory(10).ttl(10).fail_safe(60, backoff=1)
             .loader_timeouts(soft=0.01, hard=5).build())
    slow = Blocked(frontend, "new")
    async with frontend.open(cache) as c:
        await c.insert("k", "old")
        clock.advance(20)  # expired 10 s ago: within max_stale
        assert (await c.get_or_insert("k", slow.factory())).value == "old"
        slow.release.set()
        clock.advance(2)  # past the fail-safe back-off: the late value is what L1 holds
        await eventually(frontend, c, "k", "new")


async def test_invalidate_during_an_overrunning_load_wins(frontend, clock) -> None:
    from cachet import LoaderTimeout

    cache = frontend.builder(clock).memory(10).loader_timeouts(hard=0.01).build()
    slow = Blocked(frontend, "late")
    async with frontend.open(cache) as c:
        with pytest.raises(LoaderTimeout):
            await c.get_or_insert("k", slow.factory())
        await c.invalidate("k")
        slow.release.set()
        import time

        deadline = time.monotonic() + 10
        while len(cache._core.guard):  # the late flow has run (and ended its token)
            assert time.monotonic() < deadline
            if frontend.is_sync:
                time.sleep(0.001)
            else:
                import anyio

                await anyio.sleep(0.001)
        assert await c.get("k") is None


def test_soft_must_be_shorter_than_hard(frontend) -> None:
    with pytest.raises(ValueError, match="soft"):
        frontend.builder().memory(10).loader_timeouts(soft=2, hard=1).build()


async def test_callers_arriving_during_an_overrunning_load_join_it(frontend, clock) -> None:
    # A load that outlived its hard timeout still runs: a caller arriving meanwhile waits
    # for it (at most its own timeout) instead of asking the backend again.
    from cachet import LoaderTimeout

    cache = frontend.builder(clock).memory(10).ttl(10).loader_timeouts(hard=0.02).build()
    slow = Blocked(frontend, "late")
    asked = []
    async with frontend.open(cache) as c:
        with pytest.raises(LoaderTimeout):
            await c.get_or_insert("k", slow.factory())
        with pytest.raises(LoaderTimeout):  # joined the running load, which overran again
            await c.get_or_insert("k", frontend.factory(lambda: asked.append(1) or "again"))
        assert asked == [] and c.stats()["coalesced_waits"] == 1
        slow.release.set()
        await eventually(frontend, c, "k", "late")
        assert (await c.get_or_insert("k", frontend.factory(lambda: "again"))).value == "late"
        assert len(cache._core.flights) == 0 and len(cache._core.guard) == 0


async def test_a_joiner_gets_the_overrunning_load_when_it_ends_in_time(frontend, clock) -> None:
    import threading

    import anyio

    from cachet import LoaderTimeout

    cache = frontend.builder(clock).memory(10).ttl(10).loader_timeouts(hard=0.3).build()
    slow = Blocked(frontend, "late")
    got = []
    async with frontend.open(cache) as c:
        with pytest.raises(LoaderTimeout):
            await c.get_or_insert("k", slow.factory())
        if frontend.is_sync:
            joiner = threading.Thread(target=lambda: got.append(cache.get_or_insert("k", lambda: "again")))
            joiner.start()
            wait_until(lambda: cache.stats()["coalesced_waits"] == 1, "the joiner to join")
            slow.release.set()
            joiner.join(10)
        else:
            async with anyio.create_task_group() as tg:
                async def join():
                    got.append(await c.get_or_insert("k", lambda: "again"))

                tg.start_soon(join)
                await anyio.wait_all_tasks_blocked()
                assert cache.stats()["coalesced_waits"] == 1
                slow.release.set()
        assert [e.value for e in got] == ["late"]


async def test_an_invalidate_detaches_an_overrunning_load(frontend, clock) -> None:
    from cachet import LoaderTimeout

    cache = frontend.builder(clock).memory(10).ttl(10).loader_timeouts(hard=0.02).build()
    slow = Blocked(frontend, "late")
    async with frontend.open(cache) as c:
        with pytest.raises(LoaderTimeout):
            await c.get_or_insert("k", slow.factory())
        await c.invalidate("k")  # callers from now on do not join the older load
        assert (await c.get_or_insert("k", frontend.factory(lambda: "fresh"))).value == "fresh"
        slow.release.set()
        await until(frontend, lambda: len(cache._core.guard) == 0, "the older load to end")
        assert (await c.get("k")).value == "fresh"  # and did not overwrite the newer value
        assert c.stats()["coalesced_waits"] == 0


# -- degraded reads ----------------------------------------------------------------------


def degraded_cache(frontend, clock, l2, enabled=True):
    b = (frontend.builder(clock).name("l1").memory(10).ttl(60)
         .fallback(frontend.builder(clock).name("l2").storage(l2).ttl(600)))
    return (b.degraded_reads() if enabled else b).build()


async def test_degraded_reads_skip_a_failing_bottom_tier(frontend, clock) -> None:
    from cachet import TierError
    from cachet.service import GetRequest

    l2 = MockTier.with_data({"old": CacheEntry("from l2", clock.now(), 600.0)})
    async with frontend.open(degraded_cache(frontend, clock, l2)) as c:
        assert (await c.get("old")).value == "from l2"  # a healthy tier is read as always
        l2.fail_when(lambda r: isinstance(r, GetRequest))
        assert await c.get("k") is None  # a miss, not an error
        assert (await c.get_or_insert("k", frontend.factory(lambda: "loaded"))).value == "loaded"
        assert (await c.get("k")).value == "loaded"  # L1 serves it
        assert c.stats()["tiers"]["l2"]["errors"] == 2  # reported, every time
        l2.fail_when(lambda r: True)
        with pytest.raises(TierError):  # writes still say they did not reach a tier
            await c.insert("k", "new")
        with pytest.raises(TierError):
            await c.invalidate("k")
        l2.clear_failures()
        await c.insert("k", "healed")
        assert (await c.get("k")).value == "healed"


async def test_without_degraded_reads_the_bottom_tier_error_is_raised(frontend, clock) -> None:
    from cachet import TierError

    l2 = MockTier()
    l2.fail_when(lambda r: True)
    async with frontend.open(degraded_cache(frontend, clock, l2, enabled=False)) as c:
        with pytest.raises(TierError):
            await c.get_or_insert("k", frontend.factory(lambda: "loaded"))


def test_degraded_reads_need_a_tier_below(frontend) -> None:
    with pytest.raises(ValueError, match=r"degraded_reads\(\) needs a tier below"):
        frontend.builder().memory(10).degraded_reads().build()


@pytest.mark.redis
async def test_degraded_reads_serve_through_a_redis_outage(frontend, clock, own_server) -> None:
    # A test-owned redis-server, killed and restarted: while it is down, loads are served
    # and cached in L1 with no error reaching the caller; once it is back, it is used again.
    import uuid

    below = (frontend.builder(clock).name("l2").ttl(600)
             .redis(own_server.url, namespace=f"d-{uuid.uuid4().hex[:8]}", socket_timeout=0.5))
    cache = (frontend.builder(clock).name("l1").memory(100).ttl(60).serialize(secret=b"s")
             .fallback(below).degraded_reads().build())
    async with frontend.open(cache) as c:
        await c.insert("before", 1)
        own_server.kill()
        for i in range(5):
            assert (await c.get_or_insert(f"k{i}", frontend.factory(lambda i=i: i))).value == i
        assert c.stats()["tiers"]["l2"]["errors"] >= 5
        own_server.restart()
        assert (await c.get_or_insert("after", frontend.factory(lambda: "a"))).value == "a"
        await c.invalidate("after")  # the tier works again: writes reach it


# -- a tier's circuit breaker -----------------------------------------------------------


async def test_a_tiers_circuit_breaker_opens_probes_and_closes(frontend, clock) -> None:
    from cachet import TierError
    from cachet.service import CircuitOpenError

    h = []

    class Handler:
        def on_tier_event(self, event):
            h.append((event.tier_name, event.event))

        def on_operation_complete(self, event):
            pass

    l2 = MockTier()
    cache = (frontend.builder(clock).name("l1").memory(10).ttl(60).event_handler(Handler())
             .fallback(frontend.builder(clock).name("l2").storage(l2).ttl(600)
                       .circuit_breaker(failure_threshold=3, window=10, cooldown=5))
             .degraded_reads().build())
    async with frontend.open(cache) as c:
        l2.fail_when(lambda r: True)
        for i in range(3):  # three failures within the window open it
            assert await c.get(f"k{i}") is None
        asked = len(l2.operations)
        assert ("l2", a.BREAKER_OPENED) in h
        for i in range(10):  # open: the tier is not asked, and the reads are misses
            assert await c.get(f"j{i}") is None
        assert len(l2.operations) == asked
        with pytest.raises(TierError) as info:  # a write says the tier was not reached
            await c.insert("w", 1)
        assert isinstance(info.value.__cause__, CircuitOpenError)
        l2.clear_failures()
        clock.advance(6)  # past the cooldown: the next call probes, succeeds, closes it
        assert (await c.get_or_insert("p", frontend.factory(lambda: "v"))).value == "v"
        assert ("l2", a.BREAKER_CLOSED) in h
        assert l2.contains_key("p")
        assert c.stats()["tiers"]["l2"]["breaker_opens"] == 1


@pytest.mark.redis
async def test_a_frozen_redis_is_probed_without_a_socket_timeout(frontend, clock, own_server) -> None:
    # SIGSTOP keeps the server accepting connections but answering nothing: a call waits
    # its whole socket timeout. Once the breaker is open, its probe (a PING on a
    # connection of its own, 25 ms) decides instead of a caller's call.
    import os
    import signal
    import time
    import uuid

    import redis

    ns = f"p-{uuid.uuid4().hex[:8]}"
    below = (frontend.builder(clock).name("l2").ttl(600)
             .redis(own_server.url, namespace=ns, socket_timeout=0.5)
             .circuit_breaker(failure_threshold=2, window=60, cooldown=5))
    cache = (frontend.builder(clock).name("l1").memory(100).ttl(60).serialize(secret=b"s")
             .fallback(below).degraded_reads().build())
    async with frontend.open(cache) as c:
        await c.insert("before", 1)
        os.kill(own_server.pid, signal.SIGSTOP)
        try:
            for i in range(2):  # two socket timeouts open the breaker
                assert (await c.get_or_insert(f"k{i}", frontend.factory(lambda i=i: i))).value == i
            assert c.stats()["tiers"]["l2"]["breaker_opens"] == 1
            clock.advance(5)  # past the cooldown: the next call probes the frozen server
            t0 = time.monotonic()
            assert (await c.get_or_insert("probe1", frontend.factory(lambda: "p"))).value == "p"
            probed_in = time.monotonic() - t0
            assert probed_in < 0.25, probed_in  # the probe's 25 ms, not the 0.5 s timeout
            assert c.stats()["tiers"]["l2"]["breaker_opens"] == 2  # the failed probe re-opened it
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
        clock.advance(5)
        assert (await c.get_or_insert("after", frontend.factory(lambda: "a"))).value == "a"
        client = redis.Redis.from_url(own_server.url)
        try:  # closed again: the load's write reached Redis
            assert client.exists(f"{ns}:after")
        finally:
            client.close()


def test_circuit_breaker_settings_are_checked_at_build(frontend) -> None:
    b = frontend.builder().memory(10).fallback(frontend.builder().storage(MockTier())
                                                .circuit_breaker(failure_threshold=0))
    with pytest.raises(ValueError, match="circuit_breaker"):
        b.build()


async def test_a_tier_behind_a_breaker_still_counts_its_entries(frontend, clock) -> None:
    cache = (frontend.builder(clock).memory(10).circuit_breaker()
             .fallback(frontend.builder(clock).storage(MockTier())).build())
    async with frontend.open(cache) as c:
        await c.insert("k", 1)
        assert await c.len() == 1
