"""Detached shared loads (SPEC §8): on an entered ``cachet.aio.Cache`` with stampede
protection, a shared load runs in the cache's task group. A caller that is cancelled or
times out only stops waiting; the load runs once, fills the cache and wakes whoever
still waits; leaving ``async with`` cancels it and tells its waiters. Warnings are
errors in this suite, so a coroutine never awaited or an exception never retrieved
fails these tests. asyncio and trio."""

from __future__ import annotations

import logging

import anyio
import pytest

from cachet import AsyncCache, CacheError, LoaderTimeout
from cachet._core import attributes as a
from cachet.telemetry import CacheTierEvent
from cachet.testing import ManualClock

pytestmark = pytest.mark.anyio

# How the load runs: as plain calls (Core.start_load, the factory's awaitable detached),
# or as the core's flow (Core._detached): fail-safe on, with nothing expired to serve,
# changes nothing here but the path.
PATH = "plain"


@pytest.fixture(autouse=True, params=["plain", "flow"])
def path(request, monkeypatch):
    monkeypatch.setattr(f"{__name__}.PATH", request.param)
    return request.param


def protected(handler=None, hard_timeout=None):
    b = AsyncCache.builder(ManualClock()).name("d").memory(100).ttl(60).stampede_protection()
    if handler is not None:
        b = b.event_handler(handler)
    if hard_timeout is not None:
        b = b.loader_timeouts(hard=hard_timeout)
    if PATH == "flow":
        b = b.fail_safe(60)
    cache = b.build()
    assert cache._core.direct_load == (PATH == "plain" and handler is None and hard_timeout is None)
    return cache


class Loader:
    """A loader held until the test releases it, counting its calls and how they ended."""

    def __init__(self, value="v", error=None):
        self.value, self.error = value, error
        self.release = anyio.Event()
        self.calls = 0
        self.cancelled = 0

    async def __call__(self):
        self.calls += 1
        try:
            await self.release.wait()
        except BaseException:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return self.value


async def give_up(scope, coro, out):
    """A caller that stops waiting when ``scope`` is cancelled (as a request timeout does)."""
    with scope:
        out.append(await coro)


async def test_callers_giving_up_one_after_another_share_one_load() -> None:
    # The storm of issue 17, without real time: each caller gives up while the load is
    # still running and new ones keep arriving; every one of them, the first included,
    # is cancelled before the load ends.
    cache = protected()
    load = Loader()
    got = []
    async with cache:
        async with anyio.create_task_group() as tg:
            scopes = []
            for _ in range(10):
                scope = anyio.CancelScope()
                scopes.append(scope)
                tg.start_soon(give_up, scope, cache.get_or_insert("k", load), got)
                await anyio.wait_all_tasks_blocked()
                if len(scopes) > 2:
                    scopes[-3].cancel()  # the caller from two arrivals ago gives up
                    await anyio.wait_all_tasks_blocked()
            for scope in scopes:
                scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert load.calls == 1 and load.cancelled == 0 and got == []
            late = []
            tg.start_soon(give_up, anyio.CancelScope(), cache.get_or_insert("k", load), late)
            await anyio.wait_all_tasks_blocked()
            load.release.set()
        assert [e.value for e in late] == ["v"]  # the next caller joined the running load
        assert (await cache.get("k")).value == "v"  # and the value is cached
    assert load.calls == 1 and load.cancelled == 0
    assert len(cache._core.flights) == 0 and len(cache._core.guard) == 0


async def test_callers_with_timeouts_share_one_load() -> None:
    # The same storm with anyio's own timeouts: each caller's deadline has passed by its
    # first wait (move_on_after(0)), so every one gives up while the load runs, and the
    # load is asked for once.
    cache = protected()
    load = Loader()
    timed_out = 0
    async with cache:
        for _ in range(20):
            with anyio.move_on_after(0) as scope:
                await cache.get_or_insert("k", load)
            timed_out += scope.cancelled_caught
        assert timed_out == 20 and load.calls == 1
        load.release.set()
        await anyio.wait_all_tasks_blocked()
        assert (await cache.get("k")).value == "v"
    assert load.calls == 1 and load.cancelled == 0


async def test_a_failed_load_whose_callers_left_is_reported(caplog) -> None:
    caplog.set_level(logging.ERROR, logger=a.TARGET)
    cache = protected()
    load = Loader(error=RuntimeError("backend down"))
    async with cache:
        with anyio.move_on_after(0) as scope:
            await cache.get_or_insert("k", load)
        assert scope.cancelled_caught
        load.release.set()
        await anyio.wait_all_tasks_blocked()
        assert len(cache._core.flights) == 0
        assert (await cache.get_or_insert("k", lambda: "w")).value == "w"  # nothing cached
    assert cache.stats()["load_errors"] == 1
    (record,) = [r for r in caplog.records if r.name == a.TARGET]
    assert record.levelno == logging.ERROR and "backend down" in record.getMessage()
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_a_failed_load_reaches_telemetry_as_a_load_error() -> None:
    events = []

    class Handler:
        def on_tier_event(self, event):
            events.append(event)

        def on_operation_complete(self, event):
            pass

    cache = protected(Handler())
    load = Loader(error=RuntimeError("backend down"))
    async with cache:
        with anyio.move_on_after(0):
            await cache.get_or_insert("k", load)
        load.release.set()
        await anyio.wait_all_tasks_blocked()
    errors = [e for e in events if isinstance(e, CacheTierEvent) and e.event == a.LOAD_ERROR]
    assert len(errors) == 1 and errors[0].tier_name == "d" and errors[0].request_id == 0
    assert cache.stats()["load_errors"] == 1


async def test_a_failed_load_someone_waits_for_is_raised_not_reported(caplog) -> None:
    caplog.set_level(logging.ERROR, logger=a.TARGET)
    cache = protected()
    boom = RuntimeError("backend down")
    load = Loader(error=boom)
    errors = []

    async def waiter():
        try:
            await cache.get_or_insert("k", load)
        except RuntimeError as exc:
            errors.append(exc)

    async with cache, anyio.create_task_group() as tg:
        leader = anyio.CancelScope()
        tg.start_soon(give_up, leader, cache.get_or_insert("k", load), [])
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        leader.cancel()  # the leader leaves; the waiter still waits
        await anyio.wait_all_tasks_blocked()
        load.release.set()
    assert errors == [boom]
    assert cache.stats()["load_errors"] == 0
    assert [r for r in caplog.records if r.name == a.TARGET] == []


async def test_leaving_the_block_cancels_detached_loads_and_tells_their_waiters() -> None:
    cache = protected()
    load = Loader()
    errors = []

    async def waiter():
        try:
            await cache.get_or_insert("k", load)
        except CacheError as exc:
            errors.append(exc)

    with anyio.fail_after(5):  # prompt: the load never finishes on its own
        async with anyio.create_task_group() as outside, cache:
            for _ in range(3):
                outside.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert load.calls == 1
    assert len(errors) == 3 and all("closed while loading 'k'" in str(e) for e in errors)
    assert load.cancelled == 1  # the factory itself was cancelled, not left running
    assert len(cache._core.flights) == 0 and len(cache._core.guard) == 0
    with pytest.raises(CacheError, match="closed"):
        await cache.get_or_insert("k", load)


async def test_invalidate_during_a_detached_load_stops_its_write_back() -> None:
    cache = protected()
    load = Loader()
    got = []
    async with cache:
        async with anyio.create_task_group() as tg:
            leader = anyio.CancelScope()
            tg.start_soon(give_up, leader, cache.get_or_insert("k", load), [])
            tg.start_soon(give_up, anyio.CancelScope(), cache.get_or_insert("k", load), got)
            await anyio.wait_all_tasks_blocked()
            leader.cancel()
            await cache.invalidate("k")
            load.release.set()
        assert [e.value for e in got] == ["v"]  # who waited gets the value
        assert await cache.get("k") is None  # which the invalidate kept out of the cache
    assert load.calls == 1


async def test_a_detached_load_keeps_its_hard_timeout() -> None:
    cache = protected(hard_timeout=0.01)
    load = Loader()
    async with cache:
        with pytest.raises(LoaderTimeout):
            await cache.get_or_insert("k", load)
        load.release.set()  # it goes on in the background; its result is cached
        await anyio.wait_all_tasks_blocked()
        assert (await cache.get("k")).value == "v"
    assert load.calls == 1


async def test_an_unentered_cache_still_loads_in_its_callers_task() -> None:
    cache = protected()
    assert not cache._core.detach
    seen = []

    async def load():
        seen.append(anyio.get_current_task().id)
        return "v"

    await cache.get_or_insert("k", load)
    assert seen == [anyio.get_current_task().id]
    async with cache:
        assert cache._core.detach
        await cache.get_or_insert("j", load)
        assert seen[1] != anyio.get_current_task().id  # inside, a task of the cache's
    assert not cache._core.detach
