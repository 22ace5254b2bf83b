"""SPEC §3 and the races of DESIGN.md: stampede protection, re-entrancy, invalidate
during a load or a refresh, on real threads (sync) and real tasks (asyncio, trio)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from cachet import Cache, CacheEntry, ReentrantLoadError
from cachet.service import GetRequest, InsertRequest
from cachet.testing import MockTier

from .helpers import wait_until

pytestmark = pytest.mark.anyio

N_THREADS = 32
N_TASKS = 200




def flight_waiters(cache, op: str, key) -> int:
    flight = cache._core.flights.find(op, key)
    return -1 if flight is None else flight.waiters


class Gate:
    """Holds a loader (or a tier read) until the test opens it; works for threads and tasks."""

    def __init__(self, frontend) -> None:
        self.sync = frontend.is_sync
        self.entered = threading.Event() if self.sync else anyio.Event()
        self.opened = threading.Event() if self.sync else anyio.Event()
        self.calls = 0

    def loader(self, value):
        if self.sync:
            def load():
                self.calls += 1
                self.entered.set()
                assert self.opened.wait(10)
                if isinstance(value, BaseException):
                    raise value
                return value
        else:
            async def load():
                self.calls += 1
                self.entered.set()
                await self.opened.wait()
                if isinstance(value, BaseException):
                    raise value
                return value
        return load


class GatedTier(MockTier):
    """A MockTier whose reads wait on a gate (sync) ..."""

    nonblocking = False

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    def get(self, key):
        entry = super().get(key)  # read first, answer when the gate opens
        self.gate.entered.set()
        assert self.gate.opened.wait(10)
        return entry


class AsyncGatedTier:
    """... or an async tier whose reads await it (aio)."""

    def __init__(self, gate: Gate) -> None:
        self.mock = MockTier()
        self.gate = gate

    async def get(self, key):
        entry = self.mock.get(key)  # read first, answer when the gate opens
        self.gate.entered.set()
        await self.gate.opened.wait()
        return entry

    async def insert(self, key, entry):
        return self.mock.insert(key, entry)

    async def invalidate(self, key):
        self.mock.invalidate(key)

    async def clear(self):
        self.mock.clear()


# -- stampede ----------------------------------------------------------------------------


async def run_concurrently(frontend, n, fn):
    """Call ``fn(i)`` from ``n`` threads (sync) or tasks (aio); returns (results, errors)."""
    results, errors = [None] * n, [None] * n

    if frontend.is_sync:
        def one(i):
            try:
                results[i] = fn(i)
            except BaseException as exc:
                errors[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        return threads, results, errors

    async def aone(i):
        try:
            results[i] = await fn(i)
        except Exception as exc:
            errors[i] = exc

    return aone, results, errors


@pytest.mark.parametrize("outcome", ["value", "error"])
async def test_stampede_one_load_shared_by_all(frontend, clock, outcome) -> None:
    cache = frontend.builder(clock).memory(100).ttl(60).stampede_protection().build()
    gate = Gate(frontend)
    value = "v" if outcome == "value" else RuntimeError("loader failed")
    n = N_THREADS if frontend.is_sync else N_TASKS
    async with frontend.open(cache) as c:
        if frontend.is_sync:
            threads, results, errors = await run_concurrently(
                frontend, n, lambda i: cache.get_or_insert("k", gate.loader(value)))
            wait_until(lambda: flight_waiters(cache, "cache.get_or_insert", "k") == n - 1,
                       "every thread to join the load")
            gate.opened.set()
            for t in threads:
                t.join(10)
        else:
            aone, results, errors = await run_concurrently(
                frontend, n, lambda i: cache.get_or_insert("k", gate.loader(value)))
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(aone, i)
                await anyio.wait_all_tasks_blocked()
                assert flight_waiters(cache, "cache.get_or_insert", "k") == n - 1
                gate.opened.set()
        assert gate.calls == 1
        if outcome == "value":
            assert [r.value for r in results] == ["v"] * n and errors == [None] * n
        else:
            assert all(e is value for e in errors)  # the leader's exception, for everyone
        assert len(cache._core.flights) == 0  # the in-flight record died with the call
        assert cache.stats()["coalesced_waits"] == n - 1
        # The next call retries (after an error) or hits (after a value).
        again = await c.get_or_insert("k", frontend.factory(lambda: "w"))
        assert again.value == ("v" if outcome == "value" else "w")


async def test_get_and_invalidate_coalesce(frontend, clock) -> None:
    gate = Gate(frontend)
    l2 = GatedTier(gate) if frontend.is_sync else AsyncGatedTier(gate)
    cache = (frontend.builder(clock).memory(10)
             .fallback(frontend.builder(clock).storage(l2)).stampede_protection().build())
    async with frontend.open(cache):
        if frontend.is_sync:
            threads, results, _ = await run_concurrently(frontend, 8, lambda i: cache.get("k"))
            wait_until(lambda: flight_waiters(cache, "cache.get", "k") == 7, "gets to coalesce")
            gate.opened.set()
            for t in threads:
                t.join(10)
            reads = [op for op in l2.operations if isinstance(op, GetRequest)]
        else:
            aone, results, _ = await run_concurrently(frontend, 8, lambda i: cache.get("k"))
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(aone, i)
                await anyio.wait_all_tasks_blocked()
                assert flight_waiters(cache, "cache.get", "k") == 7
                gate.opened.set()
            reads = [op for op in l2.mock.operations if isinstance(op, GetRequest)]
        assert len(reads) == 1 and results == [None] * 8
        assert cache.stats()["coalesced_waits"] == 7


async def test_without_protection_every_caller_loads(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).build()
    calls = []
    async with frontend.open(cache) as c:
        if frontend.is_sync:
            barrier = threading.Barrier(4)

            def load():
                calls.append(1)
                barrier.wait(10)  # all four are loading at once
                return 1

            threads, _, errors = await run_concurrently(frontend, 4, lambda i: cache.get_or_insert("k", load))
            for t in threads:
                t.join(10)
        else:
            gate = Gate(frontend)
            aone, _, errors = await run_concurrently(frontend, 4, lambda i: c.get_or_insert("k", gate.loader(1)))
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(aone, i)
                await anyio.wait_all_tasks_blocked()
                gate.opened.set()
            calls = [1] * gate.calls
    assert len(calls) == 4 and errors == [None] * 4


# -- re-entrancy -------------------------------------------------------------------------


@pytest.mark.parametrize("two_tiers", [False, True])
@pytest.mark.parametrize("stampede", [True, False])
async def test_a_cycle_of_nested_loads_is_refused(frontend, clock, stampede, two_tiers) -> None:
    """A's factory loads B, whose factory loads A: refused, on the plain path (one tier)
    and the flow's (two), and nothing is left held."""
    b = frontend.builder(clock).memory(10)
    if two_tiers:
        b = b.fallback(frontend.builder(clock).memory(10))
    cache = (b.stampede_protection() if stampede else b).build()
    async with frontend.open(cache) as c:
        if frontend.is_sync:
            def load_a() -> Any:
                return cache.get_or_insert("B", load_b).value

            def load_b() -> Any:
                return cache.get_or_insert("A", lambda: 1).value
        else:
            async def load_a() -> Any:
                return (await cache.get_or_insert("B", load_b)).value

            async def load_b() -> Any:
                return (await cache.get_or_insert("A", lambda: 1)).value
        with pytest.raises(ReentrantLoadError, match="'A'"):
            await c.get_or_insert("A", load_a)
        assert len(cache._core.flights) == 0 and len(cache._core.guard) == 0
        assert (await c.get_or_insert("A", frontend.factory(lambda: 2))).value == 2  # A itself is fine


@pytest.mark.parametrize("stampede", [True, False])
async def test_reentrant_load_fails_fast(frontend, clock, stampede) -> None:
    b = frontend.builder(clock).memory(10)
    cache = (b.stampede_protection() if stampede else b).build()
    async with frontend.open(cache) as c:
        if frontend.is_sync:
            def load():
                return cache.get_or_insert("k", lambda: "inner").value
        else:
            async def load():
                return (await cache.get_or_insert("k", lambda: "inner")).value
        with pytest.raises(ReentrantLoadError, match="k"):
            await c.get_or_insert("k", load)
        # Other keys from inside a load are fine.
        if frontend.is_sync:
            def other():
                return cache.get_or_insert("j", lambda: 1).value + 1
        else:
            async def other():
                return (await cache.get_or_insert("j", lambda: 1)).value + 1
        assert (await c.get_or_insert("k", other)).value == 2
        assert len(cache._core.flights) == 0


# -- invalidate racing a load or a refresh ------------------------------------------------


@pytest.mark.parametrize("stampede", [True, False])
@pytest.mark.parametrize("how", ["invalidate", "clear", "insert"])
@pytest.mark.parametrize("tiers", [1, 2])
async def test_write_during_load_is_not_overwritten_by_the_load(frontend, clock, stampede, how, tiers) -> None:
    l2 = MockTier()
    b = frontend.builder(clock).memory(10)
    if tiers == 2:
        b = b.fallback(frontend.builder(clock).storage(l2))
    cache = (b.stampede_protection() if stampede else b).build()
    gate = Gate(frontend)
    async with frontend.open(cache) as c:
        if frontend.is_sync:
            out = {}
            t = threading.Thread(target=lambda: out.setdefault("v", cache.get_or_insert("k", gate.loader("old"))))
            t.start()
            assert gate.entered.wait(10)
        else:
            out = {}

            async def leader():
                out["v"] = await c.get_or_insert("k", gate.loader("old"))

            tg = anyio.create_task_group()
            await tg.__aenter__()
            tg.start_soon(leader)
            await gate.entered.wait()
        if how == "invalidate":
            await c.invalidate("k")
        elif how == "clear":
            await c.clear()
        else:
            await c.insert("k", "inserted")
        # A caller arriving after the write starts afresh instead of joining the old load.
        if how != "insert":
            fresh = await c.get_or_insert("k", frontend.factory(lambda: "new"))
            assert fresh.value == "new"
        gate.opened.set()
        if frontend.is_sync:
            t.join(10)
        else:
            await tg.__aexit__(None, None, None)
        assert out["v"].value == "old"  # the load's caller still gets its value
        expected = "inserted" if how == "insert" else "new"
        assert (await c.get("k")).value == expected
        if tiers == 2:
            assert l2.data["k"].value == expected
            assert not [op for op in l2.operations
                        if isinstance(op, InsertRequest) and op.entry.value == "old"]
        assert len(cache._core.guard) == 0
        assert len(cache._core.flights) == 0


@pytest.mark.parametrize("stampede", [True, False])
@pytest.mark.parametrize("writer", ["load", "promotion"])
def test_invalidate_racing_a_write_waits_for_its_undo(stampede, writer) -> None:
    """The narrowest race of a load (or of a get's promotion from L2): another thread's
    invalidate lands after the value is written and before the writer looks again. The
    write is undone, and the invalidate returns only after that, so no call after it can
    see the old value."""
    from cachet.tiers import MemoryTier

    tier = MemoryTier(10)
    b = Cache.builder().storage(tier)
    l2 = MockTier()
    if writer == "promotion":
        l2.data["k"] = CacheEntry("old")
        b = b.fallback(Cache.builder().storage(l2))
    write = tier.insert
    racer: dict[str, threading.Thread] = {}

    def insert_then_race(key, entry):
        if entry.value != "old":
            return write(key, entry)
        t = racer["t"] = threading.Thread(target=cache.invalidate, args=(key,))
        t.start()  # it marks the write stale, empties the tiers, then waits for it
        wait_until(lambda: "k" not in l2.data if writer == "promotion" else cache._core.guard.tokens["k"].stale,
                   "the invalidate to mark the write stale")
        outcome = write(key, entry)  # lands after the invalidate emptied the tier
        assert t.is_alive(), "the invalidate returned while an older write was under way"
        return outcome

    tier.insert = insert_then_race
    cache = (b.stampede_protection() if stampede else b).build()
    if writer == "load":
        entry = cache.get_or_insert("k", lambda: "old")
        assert entry.value == "old" and entry.cached_at is None  # returned, not stored
    else:
        assert cache.get("k").value == "old"  # the caller began before the invalidate
        assert "k" not in l2.data
    racer["t"].join(10)
    assert not racer["t"].is_alive()
    assert cache.get("k") is None
    assert cache.get_or_insert("k", lambda: "new").value == "new"
    assert len(cache._core.guard) == 0 and len(cache._core.flights) == 0


async def test_invalidate_during_refresh_drops_the_refreshed_value(frontend, clock) -> None:
    gate = Gate(frontend)
    l2 = GatedTier(gate) if frontend.is_sync else AsyncGatedTier(gate)
    mock = l2 if frontend.is_sync else l2.mock
    mock.data["k"] = CacheEntry("refreshed", clock.now())
    l1 = MockTier.with_data({"k": CacheEntry("stale", clock.now() - 6)})
    cache = (frontend.builder(clock).storage(l1).ttl(10).time_to_refresh(frontend.ttr(5))
             .fallback(frontend.builder(clock).storage(l2)).build())
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "stale"
        if frontend.is_sync:
            runner = threading.Thread(target=frontend.executor.run_pending)
            runner.start()
            assert gate.entered.wait(10)
        else:
            await gate.entered.wait()
        await c.invalidate("k")
        gate.opened.set()
        if frontend.is_sync:
            runner.join(10)
        else:
            await anyio.wait_all_tasks_blocked()
        assert not l1.contains_key("k")
        assert not [op for op in l1.operations if isinstance(op, InsertRequest)]
        assert cache._core.refreshing == set() and len(cache._core.guard) == 0


@pytest.mark.parametrize("path", ["plain", "flow"])
def test_an_interrupted_leader_thread_does_not_interrupt_its_waiters(path) -> None:
    # A KeyboardInterrupt (or SystemExit) in the thread leading a shared load is that
    # thread's: the waiters get a CacheError that says what happened, and may call again.
    from cachet import Cache, CacheError

    b = Cache.builder().memory(10).ttl(60).stampede_protection()
    cache = (b.fail_safe(60) if path == "flow" else b).build()
    assert cache._core.direct_load == (path == "plain")
    joined, outcomes = threading.Event(), {}

    def load():
        assert joined.wait(10)
        raise KeyboardInterrupt

    def leader():
        try:
            cache.get_or_insert("k", load)
        except BaseException as exc:
            outcomes["leader"] = exc

    def waiter():
        try:
            cache.get_or_insert("k", lambda: "never")
        except BaseException as exc:
            outcomes["waiter"] = exc

    with cache:
        lead = threading.Thread(target=leader)
        lead.start()
        wait_until(lambda: flight_waiters(cache, "cache.get_or_insert", "k") == 0, "the leader to start")
        wait_ = threading.Thread(target=waiter)
        wait_.start()
        wait_until(lambda: flight_waiters(cache, "cache.get_or_insert", "k") == 1, "the waiter to join")
        joined.set()
        lead.join(10)
        wait_.join(10)
        assert isinstance(outcomes["leader"], KeyboardInterrupt)
        assert isinstance(outcomes["waiter"], CacheError) and "interrupted" in str(outcomes["waiter"])
        assert isinstance(outcomes["waiter"].__cause__, KeyboardInterrupt)
        assert cache.get_or_insert("k", lambda: "again").value == "again"  # nothing stuck
