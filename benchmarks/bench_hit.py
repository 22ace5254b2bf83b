"""Hit-path benchmark (issues 2 and 3): the cache's hit against the floors, in one run.

Sync: ``dict[k]`` under a ``threading.Lock`` is the floor; cachetools ``TTLCache`` under a
Lock for reference; cachet's ``Cache.get`` on a warm key (memory tier with a TTL,
telemetry off); and a two-tier stack with TTR and stampede protection on.

Async: awaiting a coroutine that reads a dict is the floor; ``await cache.get(k)`` on a
warm key, on asyncio and on trio.

    python benchmarks/bench_hit.py
"""

from __future__ import annotations

import sys
import threading
import time
from functools import partial
from pathlib import Path

import anyio
import cachetools

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, table

import cachet
from cachet.testing import MockTier


def sync_rows() -> str:
    lock = threading.Lock()
    d = {f"k{i}": i for i in range(1000)}

    def locked_dict(k: str) -> object:
        with lock:
            return d[k]

    ttl = cachetools.TTLCache(10_000, ttl=600)
    ttl.update(d)
    tlock = threading.Lock()

    def ttlcache(k: str) -> object:
        with tlock:
            return ttl[k]

    one = cachet.Cache.builder().memory(10_000).ttl(600).build()
    two = (cachet.Cache.builder().memory(10_000).ttl(600).time_to_refresh(300)
           .fallback(cachet.Cache.builder().storage(MockTier()).ttl(3600))
           .stampede_protection().build())
    for c in (one, two):
        for k, v in d.items():
            c.insert(k, v)
    get1, get2 = one.get, two.get
    assert get1("k5") is not None and get2("k5") is not None

    @one.cached()
    def square(n: str) -> str:
        return n

    square("k5")
    tc_lock = threading.Lock()

    @cachetools.cached(cachetools.TTLCache(10_000, ttl=600), lock=tc_lock)
    def tc_square(n: str) -> str:
        return n

    tc_square("k5")
    # Every case is a partial of a one-argument callable: the same call overhead for all.
    medians = interleaved({
        "locked dict[k] (floor)": partial(locked_dict, "k5"),
        "cachetools TTLCache + Lock": partial(ttlcache, "k5"),
        "cachet Cache.get (memory, ttl)": partial(get1, "k5"),
        "cachet Cache.get (2 tiers, ttr, stampede)": partial(get2, "k5"),
        "cachetools @cached(TTLCache, lock=Lock) hit": partial(tc_square, "k5"),
        "cachet @cache.cached() hit": partial(square, "k5"),
    })
    return table("sync L1 hit", medians, "locked dict[k] (floor)", {
        "cachet Cache.get (memory, ttl)": 2.0,
        "cachet Cache.get (2 tiers, ttr, stampede)": 2.5,
        "cachet @cache.cached() hit": 2.5,
    })


def async_rows(backend: str) -> str:
    out: dict[str, float] = {}

    async def main() -> None:
        d = {f"k{i}": i for i in range(1000)}

        async def read(k: str) -> object:
            return d.get(k)

        cache = cachet.AsyncCache.builder().memory(10_000).ttl(600).build()
        for k, v in d.items():
            await cache.insert(k, v)
        get = cache.get
        assert await get("k5") is not None

        @cache.cached()
        async def square(n: str) -> str:
            return n

        await square("k5")

        async def measure(fn: object, number: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(number):
                await fn("k5")  # type: ignore[operator]
            return (time.perf_counter_ns() - t0) / number

        fns = {"await dict-reading coroutine (floor)": read, "await cachet get (memory, ttl)": get,
               "await @cache.cached() hit": square}
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for fn in fns.values():
            await measure(fn, 5000)
        for _ in range(15):
            for name, fn in fns.items():
                samples[name].append(await measure(fn, 50_000))
        import statistics

        out.update({k: statistics.median(v) for k, v in samples.items()})

    anyio.run(main, backend=backend)
    return table(f"async hit on {backend}", out, "await dict-reading coroutine (floor)",
                 {"await cachet get (memory, ttl)": 3.0, "await @cache.cached() hit": 4.0})


if __name__ == "__main__":
    print(f"Python {sys.version.split()[0]}, cachet {cachet.__version__}\n")
    print(sync_rows(), end="\n\n")
    print(async_rows("asyncio"), end="\n\n")
    print(async_rows("trio"))
