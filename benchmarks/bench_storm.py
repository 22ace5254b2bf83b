"""The storm of issue 17: a slow loader and callers that give up before it finishes.

A loader that takes 200 ms; a caller arrives every 10 ms and gives up after 50 ms
(``anyio.move_on_after``, as a service bounds its request time); 1.5 s of arrivals.
Counted per run: loader calls, callers that got a value, and whether the value was
cached at the end. Run on an entered cache (shared loads detached) and on one that is
not entered (a cancelled leader hands its load to a waiter), on asyncio and trio.

    python benchmarks/bench_storm.py
"""

from __future__ import annotations

import anyio

import cachet

LOAD_S, EVERY_S, PATIENCE_S, FOR_S = 0.2, 0.01, 0.05, 1.5


async def storm(entered: bool) -> tuple[int, int, bool]:
    cache = cachet.AsyncCache.builder().memory(10).ttl(60).stampede_protection().build()
    calls = served = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(LOAD_S)
        return "v"

    async def caller() -> None:
        nonlocal served
        with anyio.move_on_after(PATIENCE_S):
            await cache.get_or_insert("k", load)
            served += 1

    async def arrivals() -> None:
        async with anyio.create_task_group() as tg:
            t_end = anyio.current_time() + FOR_S
            while anyio.current_time() < t_end:
                tg.start_soon(caller)
                await anyio.sleep(EVERY_S)

    if entered:
        async with cache:
            await arrivals()
            await anyio.sleep(LOAD_S)  # let a load still running finish
            cached = await cache.get("k") is not None
    else:
        await arrivals()
        cached = await cache.get("k") is not None
        await cache.close()
    return calls, served, cached


def main() -> None:
    print("| backend | cache | loader calls | callers served | cached after |")
    print("|---|---|---:|---:|---|")
    for backend in ("asyncio", "trio"):
        for entered in (True, False):
            calls, served, cached = anyio.run(storm, entered, backend=backend)
            name = "entered (detached loads)" if entered else "not entered (hand-off)"
            print(f"| {backend} | {name} | {calls} | {served} | {cached} |")


if __name__ == "__main__":
    main()
