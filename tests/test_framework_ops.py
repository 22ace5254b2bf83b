"""SPEC §8's framework operations (add, touch, incr/decr, delete, the bulk operations, a
per-call ttl of 0 or less) on sync, asyncio and trio, over memory, SQLite files and a
test-owned Redis: their results, the tiers they leave, and their atomicity under 8
threads and 200 tasks."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import anyio
import pytest

from cachet import CacheEntry, InsertOutcome, TierError, UnsupportedError
from cachet.service import CircuitOpenError, UpdateRequest
from cachet.testing import MockTier, MockTierError

pytestmark = pytest.mark.anyio

STACKS = ["memory", "memory+sqlite", "memory+redis", "sqlite", "redis"]
SECRET = b"framework operations"


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A cache maker for one kind of stack: ``make(frontend, clock)``."""
    kind = request.param
    url = request.getfixturevalue("server").url if "redis" in kind else None

    def bottom(b: Any) -> Any:
        if kind.endswith("sqlite"):
            return b.sqlite(str(tmp_path / f"{uuid.uuid4().hex}.db"))
        if kind.endswith("redis"):
            return b.redis(url, namespace=uuid.uuid4().hex)
        return b.memory(1000)

    def make(frontend: Any, clock: Any) -> Any:
        if "+" in kind:
            top = frontend.builder(clock).name("l1").memory(1000)
            if "redis" in kind:
                top = top.serialize(secret=SECRET)
            return top.fallback(bottom(frontend.builder(clock).name("l2"))).build()
        b = frontend.builder(clock).name("l1")
        return bottom(b.serialize(secret=SECRET) if "redis" in kind else b).build()

    return make


# -- add ---------------------------------------------------------------------------------


async def test_add_stores_only_where_nothing_lives(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        assert await c.add("k", 1) is True
        assert await c.add("k", 2) is False
        assert (await c.get("k")).value == 1
        await c.insert("e", CacheEntry.expires_after("old", 5))
        clock.advance(6)
        assert await c.add("e", "new") is True  # an expired entry is not present
        assert (await c.get("e")).value == "new"


async def test_add_with_a_ttl_of_zero_or_less_stores_nothing(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        assert await c.add("k", 1, ttl=0) is True
        assert await c.get("k") is None
        await c.insert("p", "kept")
        assert await c.add("p", "other", ttl=-1) is False
        assert (await c.get("p")).value == "kept"


async def test_add_sees_an_entry_only_the_lower_tier_holds(frontend, clock) -> None:
    l2 = MockTier.with_data({"k": CacheEntry("below", clock.now())})
    cache = frontend.builder(clock).memory(10).fallback(frontend.builder(clock).storage(l2)).build()
    async with frontend.open(cache) as c:
        assert await c.add("k", "new") is False
        assert (await c.get("k")).value == "below"


# -- touch -------------------------------------------------------------------------------


async def test_touch_gives_a_live_entry_a_new_ttl_from_now(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        assert await c.touch("missing", 10) is False
        await c.insert("k", CacheEntry.expires_after("v", 5))
        clock.advance(4)
        assert await c.touch("k", 10) is True
        clock.advance(9)  # 13 s after the insert, 9 after the touch
        assert (await c.get("k")).value == "v"
        clock.advance(2)
        assert await c.get("k") is None
        assert await c.touch("k", 10) is False  # expired: nothing to touch


async def test_touch_with_a_ttl_of_zero_expires_the_entry(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        await c.insert("k", "v")
        assert await c.touch("k", timedelta(0)) is True
        assert await c.get("k") is None
        assert await c.touch("k", 0) is False


# -- incr / decr -------------------------------------------------------------------------


async def test_incr_and_decr_keep_the_remaining_ttl(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        await c.insert("n", CacheEntry.expires_after(10, 10))
        clock.advance(6)
        assert await c.incr("n") == 11
        assert await c.incr("n", 5) == 16
        assert await c.decr("n", 2) == 14
        assert await c.incr(key="n", delta=0.5) == 14.5
        entry = await c.get("n")
        assert entry.value == 14.5
        clock.advance(4)  # 10 s after the insert: still fresh (equal is fresh)
        assert (await c.get("n")).value == 14.5
        clock.advance(0.5)
        assert await c.get("n") is None


async def test_incr_refuses_a_missing_key_and_a_value_that_is_not_a_number(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        with pytest.raises(KeyError):
            await c.incr("missing")
        await c.insert("s", "text")
        with pytest.raises(TypeError, match="need an int or a float"):
            await c.incr("s")
        assert (await c.get("s")).value == "text"
        await c.insert("b", True)
        with pytest.raises(TypeError):
            await c.decr("b")
        await c.insert("n", 1)
        with pytest.raises(TypeError, match="delta must be"):
            await c.incr("n", "1")
        assert (await c.get("n")).value == 1


async def test_incr_drops_the_upper_tiers_copy(frontend, clock, tmp_path) -> None:
    path = str(tmp_path / "l2.db")
    cache = (frontend.builder(clock).name("l1").memory(10)
             .fallback(frontend.builder(clock).name("l2").sqlite(path)).build())
    async with frontend.open(cache) as c:
        await c.insert("n", 1)
        assert (await c.get("n")).value == 1  # in L1 now
        assert await c.incr("n") == 2
        assert (await c.get("n")).value == 2
        assert c.stats()["tiers"]["l1"]["misses"] >= 1  # read back from L2


# -- delete ------------------------------------------------------------------------------


async def test_delete_says_whether_a_live_entry_was_removed(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        assert await c.delete("k") is False
        await c.insert("k", "v")
        assert await c.get("k") is not None
        assert await c.delete(key="k") is True
        assert await c.get("k") is None
        assert await c.delete("k") is False
        await c.insert("e", CacheEntry.expires_after("v", 1))
        clock.advance(2)
        assert await c.delete("e") is False  # expired: it was not live
        assert await c.invalidate("k") is None  # invalidate keeps returning None


# -- bulk and per-call ttl -----------------------------------------------------------------


async def test_bulk_operations(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        outcomes = await c.insert_many({"a": 1, "b": 2, "c": 3})
        assert outcomes == {k: InsertOutcome.ACCEPTED for k in "abc"}
        found = await c.get_many(["a", "b", "x"])
        assert {k: e.value for k, e in found.items()} == {"a": 1, "b": 2}
        await c.invalidate_many(["a", "x"])
        assert set(await c.get_many(keys=["a", "b", "c"])) == {"b", "c"}
        await c.insert_many([("d", 4), ("e", 5)], ttl=5)
        clock.advance(6)
        assert await c.get_many(["d", "e"]) == {}
        await c.insert_many({"b": 20}, ttl=0)  # expire now
        assert await c.get("b") is None


async def test_get_many_reads_redis_in_one_mget_and_promotes(frontend, clock, own_server) -> None:
    import redis

    ns = uuid.uuid4().hex
    below = frontend.builder(clock).name("l2").redis(own_server.url, namespace=ns)
    cache = frontend.builder(clock).name("l1").memory(100).serialize(secret=SECRET).fallback(below).build()
    admin = redis.Redis.from_url(own_server.url)
    try:
        async with frontend.open(cache) as c:
            await c.insert_many({f"k{i}": i for i in range(10)})
            for i in range(10):  # only in Redis now: drop the L1 copies
                c._core.levels[0].tier.invalidate(f"k{i}")
            admin.set(f"{ns}:".encode() + b"k3", b"not a record")  # damaged: a miss
            admin.config_resetstat()
            found = await c.get_many([f"k{i}" for i in range(10)] + ["absent", "k1"])
            assert {k: e.value for k, e in found.items()} == {f"k{i}": i for i in range(10) if i != 3}
            stats = admin.info("commandstats")
            assert stats["cmdstat_mget"]["calls"] == 1
            assert "cmdstat_get" not in stats  # no key read on its own
            assert c.stats()["tiers"]["l2"]["decode_errors"] == 1
            admin.config_resetstat()
            again = await c.get_many([f"k{i}" for i in (0, 1, 2)])  # promoted: L1 hits
            assert {k: e.value for k, e in again.items()} == {"k0": 0, "k1": 1, "k2": 2}
            assert "cmdstat_mget" not in admin.info("commandstats")
    finally:
        admin.close()


def test_an_invalidate_after_the_bulk_read_keeps_its_value_out_of_the_tier_above() -> None:
    """The bulk read's answer for a key invalidated after it is never copied up (the
    write token is begun before the read, as a walk's is before it reads below)."""
    import cachet

    class Bulk(MockTier):
        cache: Any = None

        def get_many(self, keys: list[Any]) -> list[Any]:
            entries = [self.get(k) for k in keys]
            done = threading.Thread(target=self.cache.invalidate, args=("a",))
            done.start()  # another thread's invalidate completes before the answers land
            done.join()
            return entries

    bottom = Bulk()
    c = (cachet.Cache.builder().name("l1").memory(100)
         .fallback(cachet.Cache.builder().name("l2").storage(bottom)).build())
    bottom.cache = c
    bottom.insert("a", CacheEntry("old-a", 0.0))
    bottom.insert("b", CacheEntry("b", 0.0))
    found = c.get_many(["a", "b"])
    assert {k: e.value for k, e in found.items()} == {"a": "old-a", "b": "b"}  # read before it
    top = c._core.levels[0].tier
    assert top.get("a") is None  # not copied up after the invalidate
    assert top.get("b").value == "b"
    assert c.get("a") is None
    assert len(c._core.guard) == 0  # every token begun for the bulk read was ended


async def test_insert_with_a_per_call_ttl(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        assert await c.insert("k", "v", ttl=5) is InsertOutcome.ACCEPTED
        clock.advance(5)
        assert (await c.get("k")).value == "v"
        clock.advance(1)
        assert await c.get("k") is None
        await c.insert("z", "v")
        assert await c.insert("z", "w", ttl=0) is InsertOutcome.ACCEPTED
        assert await c.get("z") is None
        assert await c.insert("t", "v", ttl=timedelta(seconds=-3)) is InsertOutcome.ACCEPTED
        assert await c.get("t") is None


async def test_bad_per_call_ttls_are_refused(frontend, clock) -> None:
    async with frontend.open(frontend.builder(clock).memory(10).build()) as c:
        with pytest.raises(TypeError, match="ttl must be"):
            await c.add("k", 1, ttl="10")
        with pytest.raises(ValueError, match="finite"):
            await c.touch("k", float("nan"))
        with pytest.raises(ValueError, match="finite"):
            await c.insert("k", 1, ttl=float("inf"))
        with pytest.raises(ValueError, match="not both"):
            await c.add("k", CacheEntry.expires_after(1, 5), ttl=3)


async def test_a_tier_without_update_says_so(frontend, clock) -> None:
    class Plain:
        nonblocking = True

        def __init__(self) -> None:
            self.data: dict[Any, Any] = {}

        def get(self, key: Any) -> Any:
            return self.data.get(key)

        def insert(self, key: Any, entry: Any) -> InsertOutcome:
            self.data[key] = entry
            return InsertOutcome.ACCEPTED

        def invalidate(self, key: Any) -> None:
            self.data.pop(key, None)

        def clear(self) -> None:
            self.data.clear()

    async with frontend.open(frontend.builder(clock).name("plain").storage(Plain()).build()) as c:
        with pytest.raises(UnsupportedError, match="tier 'plain'"):
            await c.add("k", 1)
        with pytest.raises(UnsupportedError):
            await c.delete("k")
        await c.insert("k", 1)  # the rest still works
        assert (await c.get_many(["k"]))["k"].value == 1


async def test_a_tiers_circuit_breaker_guards_its_updates(frontend, clock) -> None:
    tier = MockTier()
    cache = (frontend.builder(clock).name("guarded").storage(tier)
             .circuit_breaker(failure_threshold=2, window=60, cooldown=5).build())
    async with frontend.open(cache) as c:
        await c.insert("n", 1)
        tier.fail_when(lambda req: isinstance(req, UpdateRequest))
        for _ in range(2):  # two failed updates open the breaker
            with pytest.raises(TierError) as failed:
                await c.incr("n")
            assert isinstance(failed.value.__cause__, MockTierError)
        tier.clear_operations()
        with pytest.raises(TierError) as refused:  # open: refused without reaching the tier
            await c.add("other", 1)
        assert isinstance(refused.value.__cause__, CircuitOpenError)
        assert tier.operations == []
        assert c.stats()["tiers"]["guarded"]["breaker_opens"] == 1
        tier.clear_failures()
        clock.advance(5)  # past the cooldown: the next update probes, succeeds and closes it
        assert await c.incr("n", 2) == 3
        assert await c.touch("n", 10) is True
        assert (await c.get("n")).value == 3


# -- atomic under threads and tasks ----------------------------------------------------------


def in_threads(n: int, work: Any) -> None:
    """Run ``work(i)`` in ``n`` threads started together; re-raise the first error."""
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait(10)
        work(i)

    with ThreadPoolExecutor(n) as pool:
        for future in [pool.submit(run, i) for i in range(n)]:
            future.result(60)


async def test_incr_is_atomic_under_8_threads_or_200_tasks(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        await c.insert("n", 0)
        if frontend.is_sync:
            in_threads(8, lambda i: [c.sync.incr("n") for _ in range(50)])
            want = 400
        else:
            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    tg.start_soon(c.incr, "n")
            want = 200
        assert (await c.get("n")).value == want


async def test_add_has_one_winner_against_concurrent_adds_and_inserts(frontend, clock, stack) -> None:
    async with frontend.open(stack(frontend, clock)) as c:
        wins: list[int] = []
        if frontend.is_sync:
            def work(i: int) -> None:
                for round_ in range(10):
                    if c.sync.add(("k", round_), i):
                        wins.append(round_)

            in_threads(8, work)
            rounds = 10
        else:
            async def one(i: int) -> None:
                if await c.add(("k", 0), i):
                    wins.append(0)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
            rounds = 1
        assert sorted(wins) == list(range(rounds))  # exactly one winner per key
        # An insert overwrites; an add after it does not.
        await c.insert(("k", 0), "inserted")
        assert await c.add(("k", 0), "late") is False
        assert (await c.get(("k", 0))).value == "inserted"
