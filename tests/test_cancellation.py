"""Cancellation and task ownership in ``cachet.aio`` (asyncio and trio), the part peers get
wrong. Warnings are errors in this suite, so "exception was never retrieved" or "task was
destroyed" would fail these tests."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from cachet import AsyncCache, CacheEntry, CacheError, TimeToRefresh
from cachet.testing import ManualClock, MockTier

pytestmark = pytest.mark.anyio


def protected(clock=None):
    return AsyncCache.builder(clock or ManualClock()).memory(100).stampede_protection().build()


async def test_cancelled_waiter_leaves_and_load_goes_on_for_the_others() -> None:
    cache = protected()
    release, calls = anyio.Event(), []

    async def load():
        calls.append(1)
        await release.wait()
        return "v"

    got = []
    async with cache:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect, got, cache.get_or_insert("k", load))  # the leader
            await anyio.wait_all_tasks_blocked()
            doomed = anyio.CancelScope()
            tg.start_soon(_run_in, doomed, cache.get_or_insert("k", load))
            for _ in range(2):
                tg.start_soon(_collect, got, cache.get_or_insert("k", load))
            await anyio.wait_all_tasks_blocked()
            doomed.cancel()
            await anyio.wait_all_tasks_blocked()
            release.set()
        assert [e.value for e in got] == ["v"] * 3
        assert (await cache.get("k")).value == "v"  # the result was cached
    assert calls == [1]


async def _run_in(scope, coro):
    with scope:
        await coro


async def _collect(out, coro):
    out.append(await coro)


@pytest.mark.parametrize("entered", [False, True])
async def test_cancelled_leader_hands_over_unless_the_load_is_detached(entered) -> None:
    # Outside `async with`, the leader runs the load in its own task; when it is
    # cancelled, the waiters see no error: one of them loads again. Inside, the load is
    # detached (SPEC §8): the leader only stops waiting and the load goes on, once.
    cache = protected()
    release, calls = anyio.Event(), []

    async def load():
        calls.append(1)
        await release.wait()
        return "v"

    got = []
    async with contextlib.AsyncExitStack() as stack:
        if entered:
            await stack.enter_async_context(cache)
        async with anyio.create_task_group() as tg:
            leader_scope = anyio.CancelScope()
            tg.start_soon(_run_in, leader_scope, cache.get_or_insert("k", load))
            await anyio.wait_all_tasks_blocked()  # the leader started the load
            for _ in range(3):
                tg.start_soon(_collect, got, cache.get_or_insert("k", load))
            await anyio.wait_all_tasks_blocked()
            leader_scope.cancel()
            await anyio.wait_all_tasks_blocked()  # a waiter took over, or the load goes on
            assert calls == ([1] if entered else [1, 1])
            release.set()
        assert [e.value for e in got] == ["v"] * 3
        assert (await cache.get("k")).value == "v"
    assert calls == ([1] if entered else [1, 1])
    assert len(cache._core.flights) == 0


async def test_timed_out_waiter_stops_waiting() -> None:
    cache = protected()
    release = anyio.Event()
    got = []

    async def load():
        await release.wait()
        return "v"

    async with cache:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect, got, cache.get_or_insert("k", load))  # the leader
            await anyio.wait_all_tasks_blocked()
            with anyio.move_on_after(0.01) as scope:
                await cache.get_or_insert("k", load)
            assert scope.cancelled_caught  # the waiter left; the load is still running
            release.set()
        assert got[0].value == "v" and (await cache.get("k")).value == "v"


async def test_sole_caller_cancelled_abandons_its_load() -> None:
    # SPEC §3: if every waiter has left, the work may be cancelled. It is, and nothing
    # stays in flight: the next caller loads afresh.
    cache = protected()
    calls = []

    async def load():
        calls.append(1)
        await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        scope.cancel()
        await cache.get_or_insert("k", load)
    assert len(cache._core.flights) == 0
    assert (await cache.get_or_insert("k", lambda: "w")).value == "w"


async def test_loader_error_reaches_waiters_and_nothing_hangs() -> None:
    cache = protected()
    release = anyio.Event()

    async def load():
        await release.wait()
        raise ValueError("backend down")

    errors = []

    async def call():
        try:
            await cache.get_or_insert("k", load)
        except ValueError as exc:
            errors.append(exc)

    async with cache, anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert len(errors) == 10 and len({id(e) for e in errors}) == 1
    assert len(cache._core.flights) == 0


async def test_background_refresh_needs_async_with() -> None:
    refreshing = (AsyncCache.builder().memory(10).ttl(10).time_to_refresh(5)
                  .fallback(AsyncCache.builder().storage(MockTier())).build())
    with pytest.raises(CacheError, match="async with"):
        await refreshing.get("k")
    # Stampede protection alone needs no task group.
    plain = protected()
    assert (await plain.get_or_insert("k", lambda: 1)).value == 1
    assert (await plain.get("k")).value == 1


async def test_user_task_group_runs_refresh_without_async_with() -> None:
    clock = ManualClock()
    l2 = MockTier()
    async with anyio.create_task_group() as tg:
        cache = (AsyncCache.builder(clock).memory(10).ttl(10).time_to_refresh(TimeToRefresh(5, tg))
                 .fallback(AsyncCache.builder(clock).storage(l2)).build())
        await cache.insert("k", "old")
        l2.insert("k", CacheEntry("new", clock.now()))
        clock.advance(6)
        assert (await cache.get("k")).value == "old"
        await anyio.wait_all_tasks_blocked()
        assert (await cache.get("k")).value == "new"


class _GatedL2:
    """An async tier whose reads wait for ``opened``."""

    def __init__(self, clock) -> None:
        self.mock = MockTier.with_data({"k": CacheEntry("new", clock.now())})
        self.entered, self.opened, self.finished = anyio.Event(), anyio.Event(), []

    async def get(self, key):
        self.entered.set()
        await self.opened.wait()
        self.finished.append(key)
        return self.mock.get(key)

    async def insert(self, key, entry):
        return self.mock.insert(key, entry)

    async def invalidate(self, key):
        self.mock.invalidate(key)

    async def clear(self):
        self.mock.clear()


def refreshing_cache(clock, l2):
    return (AsyncCache.builder(clock).memory(10).ttl(10).time_to_refresh(5)
            .fallback(AsyncCache.builder(clock).storage(l2)).build())


async def test_block_exception_propagates_unchanged_and_refresh_is_cancelled() -> None:
    clock = ManualClock()
    l2 = _GatedL2(clock)
    cache = refreshing_cache(clock, l2)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):  # not an ExceptionGroup
        async with cache:
            await cache.insert("k", "old")
            clock.advance(6)
            await cache.get("k")  # stale: a refresh starts and blocks in L2
            await l2.entered.wait()
            raise Boom
    assert l2.finished == []  # the refresh was cancelled, not awaited forever
    assert cache._core.refreshing == set() and len(cache._core.guard) == 0


async def test_leaving_async_with_waits_for_background_work_and_closes() -> None:
    clock = ManualClock()
    l2 = _GatedL2(clock)
    cache = refreshing_cache(clock, l2)
    async with cache:
        await cache.insert("k", "old")
        clock.advance(6)
        await cache.get("k")
        await l2.entered.wait()
        l2.opened.set()
    assert l2.finished == ["k"]  # the refresh finished before `async with` ended
    with pytest.raises(CacheError, match="closed"):
        await cache.get("k")
