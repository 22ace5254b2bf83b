"""A small trio program's tests, written the way trio users write them (pytest-trio)."""

from __future__ import annotations

import trio
import trio.testing

import cachet
from cachet.testing import ManualClock


async def fetch_profile(cache: cachet.AsyncCache[str, dict[str, str]], user: str,
                        calls: list[str]) -> dict[str, str]:
    async def load() -> dict[str, str]:
        calls.append(user)
        await trio.sleep(0.05)  # the slow backend
        return {"user": user}

    return (await cache.get_or_insert(user, load)).value


async def test_program_loads_once_for_many_tasks(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[str] = []
    cache = cachet.AsyncCache.builder(ManualClock()).memory(100).ttl(60).stampede_protection().build()
    results: list[dict[str, str]] = []
    async with cache, trio.open_nursery() as nursery:
        for _ in range(50):
            async def one() -> None:
                results.append(await fetch_profile(cache, "ada", calls))
            nursery.start_soon(one)
    assert calls == ["ada"]
    assert results == [{"user": "ada"}] * 50


async def test_a_waiter_that_times_out_does_not_cancel_the_shared_load(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[str] = []
    got: list[dict[str, str]] = []
    cache = cachet.AsyncCache.builder(ManualClock()).memory(100).stampede_protection().build()

    async def patient() -> None:
        got.append(await fetch_profile(cache, "bob", calls))

    async def impatient() -> None:
        with trio.move_on_after(0.01):
            await fetch_profile(cache, "bob", calls)  # gives up before the load ends

    async with cache, trio.open_nursery() as nursery:
        nursery.start_soon(patient)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(impatient)
    assert calls == ["bob"] and got == [{"user": "bob"}]


async def test_hit_is_not_a_checkpoint() -> None:
    cache = cachet.AsyncCache.builder().memory(10).build()
    await cache.insert("k", 1)
    with trio.CancelScope() as scope:
        scope.cancel()
        # A hit completes without yielding, so a pending cancel does not interrupt it.
        assert (await cache.get("k")).value == 1
