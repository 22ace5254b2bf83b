"""Cancellation and task ownership in ``cachet.aio`` (asyncio and trio), the part peers get
wrong. Warnings are errors in this suite, so "exception was never retrieved" or "task was
destroyed" would fail these tests."""

from __future__ import annotations

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
            doomed = anyio.CancelScope()
            tg.start_soon(_run_in, doomed, cache.get_or_insert("k", load))
            for _ in range(3):
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


async def test_cancelled_leader_does_not_cancel_the_load() -> None:
    cache = protected()
    release, calls = anyio.Event(), []

    async def load():
        calls.append(1)
        await release.wait()
        return "v"

    got = []
    async with cache:
        async with anyio.create_task_group() as tg:
            leader_scope = anyio.CancelScope()
            tg.start_soon(_run_in, leader_scope, cache.get_or_insert("k", load))
            await anyio.wait_all_tasks_blocked()  # the leader started the load
            tg.start_soon(_collect, got, cache.get_or_insert("k", load))
            await anyio.wait_all_tasks_blocked()
            leader_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            release.set()
        assert got[0].value == "v"
    assert calls == [1]


async def test_timed_out_waiter_stops_waiting() -> None:
    cache = protected()
    release = anyio.Event()

    async def load():
        await release.wait()
        return "v"

    async with cache:
        with anyio.move_on_after(0.01) as scope:
            await cache.get_or_insert("k", load)
        assert scope.cancelled_caught
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert (await cache.get("k")).value == "v"


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


async def test_background_work_needs_async_with() -> None:
    cache = protected()
    with pytest.raises(CacheError, match="async with"):
        await cache.get_or_insert("k", lambda: 1)
    refreshing = (AsyncCache.builder().memory(10).ttl(10).time_to_refresh(5)
                  .fallback(AsyncCache.builder().storage(MockTier())).build())
    with pytest.raises(CacheError, match="async with"):
        await refreshing.get("k")
    plain = AsyncCache.builder().memory(10).build()  # no background work: no task group needed
    await plain.insert("k", 1)
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


async def test_block_exception_propagates_unchanged_and_work_is_cancelled() -> None:
    cache = protected()
    started = anyio.Event()

    async def load():
        started.set()
        await anyio.sleep_forever()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):  # not an ExceptionGroup
        async with cache:
            async with anyio.create_task_group() as tg:
                async def waiter():
                    with pytest.raises(CacheError, match="closed"):
                        await cache.get_or_insert("k", load)
                tg.start_soon(waiter)
                await started.wait()
                tg.cancel_scope.cancel()
            raise Boom
    assert len(cache._core.flights) == 0


async def test_leaving_async_with_waits_for_background_work_and_closes() -> None:
    cache = protected()
    done = []

    async def load():
        await anyio.sleep(0)
        done.append(1)
        return 1

    async with cache, anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(_run_in, scope, cache.get_or_insert("k", load))
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the caller leaves; the shared load is still running
    assert done == [1]  # the shared load finished before `async with` ended  # the shared load finished before `async with` ended
    with pytest.raises(CacheError, match="closed"):
        await cache.get("k")
