"""Async peers for ``compare.py``: hit, decorator hit, protected miss, 200-task stampede.

Every case is a setup coroutine run inside the event loop that returns a zero-argument
callable returning an awaitable (a ``functools.partial`` of a one-argument coroutine
function, so all rows pay the same call overhead). ``backends`` says where a case runs:
the asyncio peers (cashews, aiocache, async-lru, theine, cachebox) are asyncio-only; trio
gets cachet and the floor.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

import anyio

KEYS = {f"k{i}": i for i in range(1000)}
HOT = "k5"
TTL = 600
SIZE = 10_000
BOTH = ("asyncio", "trio")
ASYNCIO = ("asyncio",)

Thunk = Callable[[], Awaitable[Any]]
# (name, kind, settings, backends, setup); setup is async and returns the thunk
Case = tuple[str, str, str, tuple[str, ...], Callable[[], Awaitable[Thunk]]]

_CLEANUP: list[Callable[[], Awaitable[Any]]] = []


async def cleanup() -> None:
    while _CLEANUP:
        await _CLEANUP.pop()()


async def _floor() -> Thunk:
    d = dict(KEYS)

    async def read(k: str) -> Any:
        return d.get(k)

    return partial(read, HOT)


async def _cashews_cache() -> Any:
    from cashews import Cache

    c = Cache()
    c.setup("mem://?size=10000")
    await c.init()
    _CLEANUP.append(c.close)
    return c


async def _cashews_get() -> Thunk:
    c = await _cashews_cache()
    for k, v in KEYS.items():
        await c.set(k, v, expire=TTL)
    assert await c.get(HOT) == KEYS[HOT]
    return partial(c.get, HOT)


async def _aiocache_get() -> Thunk:
    from aiocache import SimpleMemoryCache

    c = SimpleMemoryCache()
    for k, v in KEYS.items():
        await c.set(k, v, ttl=TTL)
    assert await c.get(HOT) == KEYS[HOT]
    _CLEANUP.append(c.close)
    return partial(c.get, HOT)


async def _async_lru() -> Thunk:
    from async_lru import alru_cache

    @alru_cache(maxsize=SIZE, ttl=TTL)
    async def load(k: str) -> Any:
        return KEYS[k]

    for k in KEYS:
        await load(k)
    return partial(load, HOT)


async def _cachet_cache(protected: bool = False) -> Any:
    import cachet

    b = cachet.AsyncCache.builder().memory(SIZE).ttl(TTL)
    c = (b.stampede_protection() if protected else b).build()
    await c.__aenter__()
    _CLEANUP.append(lambda: c.__aexit__(None, None, None))
    return c


async def _cachet_get() -> Thunk:
    c = await _cachet_cache()
    for k, v in KEYS.items():
        await c.insert(k, v)
    assert (await c.get(HOT)).value == KEYS[HOT]
    return partial(c.get, HOT)


ASYNC_HIT: list[Case] = [
    ("await dict-reading coroutine (floor)", "floor", "`async def read(k): return d.get(k)`", BOTH, _floor),
    ("cashews mem://", "python", "`Cache().setup('mem://?size=10000')`, `set(k, v, expire=600)`, `await get(k)`", ASYNCIO, _cashews_get),
    ("aiocache SimpleMemoryCache", "python", "`SimpleMemoryCache()` (NullSerializer default), `set(k, v, ttl=600)`, `await get(k)`", ASYNCIO, _aiocache_get),
    ("async-lru @alru_cache", "python", "`@alru_cache(maxsize=10_000, ttl=600)`; a hit is an awaited call", ASYNCIO, _async_lru),
    ("cachet AsyncCache.get", "cachet", "`AsyncCache.builder().memory(10_000).ttl(600).build()`, `await get(k)`", BOTH, _cachet_get),
]


# -- decorator hit ----------------------------------------------------------------------------


async def _floor_memo() -> Thunk:
    d: dict[str, Any] = {}

    async def load(k: str) -> Any:
        return KEYS[k]

    async def memo(k: str) -> Any:
        v = d.get(k, d)
        if v is d:
            v = d[k] = await load(k)
        return v

    await memo(HOT)
    return partial(memo, HOT)


async def _cashews_decorator() -> Thunk:
    c = await _cashews_cache()

    @c(ttl=TTL)
    async def load(k: str) -> Any:
        return KEYS[k]

    await load(HOT)
    return partial(load, HOT)


async def _aiocache_decorator() -> Thunk:
    from aiocache import cached

    @cached(ttl=TTL)
    async def load(k: str) -> Any:
        return KEYS[k]

    await load(HOT)
    return partial(load, HOT)


async def _theine_async() -> Thunk:
    import theine

    @theine.Memoize(SIZE, timedelta(seconds=TTL))
    async def load(k: str) -> Any:
        return KEYS[k]

    @load.key
    def _key(k: str) -> str:
        return k

    await load(HOT)
    return partial(load, HOT)


async def _cachebox_async() -> Thunk:
    import cachebox

    @cachebox.cached(cachebox.TTLCache(SIZE, global_ttl=TTL))
    async def load(k: str) -> Any:
        return KEYS[k]

    await load(HOT)
    return partial(load, HOT)


def _cachet_decorator(protected: bool) -> Callable[[], Awaitable[Thunk]]:
    async def setup() -> Thunk:
        c = await _cachet_cache(protected)

        @c.cached()
        async def load(k: str) -> Any:
            return KEYS[k]

        await load(HOT)
        return partial(load, HOT)

    return setup


ASYNC_DECORATOR: list[Case] = [
    ("hand-written async memo (floor)", "floor", "a coroutine reading a `dict`, awaiting the loader on a miss", BOTH, _floor_memo),
    ("async-lru @alru_cache", "python", "`@alru_cache(maxsize=10_000, ttl=600)`", ASYNCIO, _async_lru),
    ("cashews @cache", "python", "`@cache(ttl=600)` on `mem://` (default `protected=True`)", ASYNCIO, _cashews_decorator),
    ("aiocache @cached", "python", "`@cached(ttl=600)` (SimpleMemoryCache)", ASYNCIO, _aiocache_decorator),
    ("theine @Memoize (async)", "hybrid", "`@Memoize(10_000, timedelta(seconds=600))`, custom key", ASYNCIO, _theine_async),
    ("cachebox @cached (async)", "native", "`@cached(TTLCache(10_000, global_ttl=600))`, default lock", ASYNCIO, _cachebox_async),
    ("cachet @cache.cached()", "cachet", "`@cache.cached()` on `memory(10_000).ttl(600)`", BOTH, _cachet_decorator(False)),
    ("cachet @cache.cached(), stampede on", "cachet", "as above plus `.stampede_protection()`", BOTH, _cachet_decorator(True)),
]


async def measure_async(fns: dict[str, Thunk], rounds: int, number: int) -> dict[str, float]:
    async def once(fn: Thunk, n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        return (time.perf_counter_ns() - t0) / n

    # Slow peers (tens of microseconds per hit) get fewer calls per sample, so that every
    # sample lasts about as long as a fast one's and the table stays within its budget.
    samples: dict[str, list[float]] = {name: [] for name in fns}
    counts: dict[str, int] = {}
    for name, fn in fns.items():
        est = await once(fn, max(number // 10, 1))
        counts[name] = max(200, min(number, int(number * 1_000 / max(est, 1.0))))
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(await once(fn, counts[name]))
    return {name: statistics.median(s) for name, s in samples.items()}


def run_hits(cases: list[Case], backend: str, rounds: int, number: int) -> dict[str, float]:
    out: dict[str, float] = {}

    async def main() -> None:
        fns = {name: await setup() for name, _, _, backends, setup in cases if backend in backends}
        out.update(await measure_async(fns, rounds, number))
        await cleanup()

    anyio.run(main, backend=backend)
    return out


# -- protected miss-then-load on unique keys ---------------------------------------------------

MissSetup = Callable[[], Awaitable[Callable[[int], Awaitable[Any]]]]


async def _miss_floor() -> Callable[[int], Awaitable[Any]]:
    d: dict[int, int] = {}

    async def get(k: int) -> int | None:
        return d.get(k)

    async def load(k: int) -> int:
        return k

    async def put(k: int, v: int) -> None:
        d[k] = v

    async def memo(k: int) -> Any:
        v = await get(k)
        if v is None:
            v = await load(k)
            await put(k, v)
        return v

    return memo


async def _miss_cashews() -> Callable[[int], Awaitable[Any]]:
    c = await _cashews_cache()

    @c(ttl=TTL)
    async def load(k: int) -> int:
        return k

    return load


async def _miss_aiocache() -> Callable[[int], Awaitable[Any]]:
    from aiocache import cached_stampede

    @cached_stampede(ttl=TTL, lease=2)
    async def load(k: int) -> int:
        return k

    return load


async def _miss_async_lru() -> Callable[[int], Awaitable[Any]]:
    from async_lru import alru_cache

    @alru_cache(maxsize=10**6, ttl=TTL)
    async def load(k: int) -> int:
        return k

    return load


async def _miss_theine() -> Callable[[int], Awaitable[Any]]:
    import theine

    @theine.Memoize(10**6, timedelta(seconds=TTL))
    async def load(k: int) -> int:
        return k

    @load.key
    def _key(k: int) -> int:
        return k

    return load


async def _miss_cachet_goi(entered: bool = True) -> Callable[[int], Awaitable[Any]]:
    import cachet

    c = cachet.AsyncCache.builder().memory(10**6).ttl(TTL).stampede_protection().build()
    if entered:  # shared loads are detached: one task per miss
        await c.__aenter__()
        _CLEANUP.append(lambda: c.__aexit__(None, None, None))
    else:  # the load runs in the caller's task
        _CLEANUP.append(c.close)
    gi = c.get_or_insert

    async def miss(k: int) -> Any:
        async def load() -> int:
            return k

        return (await gi(k, load)).value

    return miss


async def _miss_cachet_goi_not_entered() -> Callable[[int], Awaitable[Any]]:
    return await _miss_cachet_goi(entered=False)


async def _miss_cachet_decorator() -> Callable[[int], Awaitable[Any]]:
    import cachet

    c = cachet.AsyncCache.builder().memory(10**6).ttl(TTL).stampede_protection().build()
    await c.__aenter__()
    _CLEANUP.append(lambda: c.__aexit__(None, None, None))

    @c.cached()
    async def load(k: int) -> int:
        return k

    return load


ASYNC_MISS: list[tuple[str, str, str, tuple[str, ...], MissSetup]] = [
    ("await get + load + set on dicts (floor)", "floor", "three awaited dict coroutines, no protection", BOTH, _miss_floor),
    ("cashews @cache", "python", "`@cache(ttl=600)` on `mem://` (default `protected=True`: one task per key in flight)", ASYNCIO, _miss_cashews),
    ("aiocache @cached_stampede", "python", "`@cached_stampede(ttl=600, lease=2)` (SimpleMemoryCache, RedLock)", ASYNCIO, _miss_aiocache),
    ("async-lru @alru_cache", "python", "`@alru_cache(maxsize=1e6, ttl=600)` (coalesces on a shared future)", ASYNCIO, _miss_async_lru),
    ("theine @Memoize (async)", "hybrid", "`@Memoize(1e6, timedelta(seconds=600))`, custom key (CachedAwaitable)", ASYNCIO, _miss_theine),
    ("cachet get_or_insert", "cachet", "`memory(1e6).ttl(600).stampede_protection()`, `await get_or_insert(k, load)`", BOTH, _miss_cachet_goi),
    ("cachet @cache.cached()", "cachet", "same cache, `@cache.cached()`", BOTH, _miss_cachet_decorator),
    ("cachet get_or_insert, not entered", "cachet",
     "same builder, never `async with`: the load runs in the caller's task (no detached load)", BOTH,
     _miss_cachet_goi_not_entered),
]


def run_misses(backend: str, rounds: int, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    cases = [c for c in ASYNC_MISS if backend in c[3]]

    async def main() -> None:
        counter = itertools.count()
        samples: dict[str, list[float]] = {c[0]: [] for c in cases}
        for r in range(rounds + 1):
            for name, _, _, _, setup in cases:
                fn = await setup()
                keys = [next(counter) for _ in range(n)]
                t0 = time.perf_counter_ns()
                for k in keys:
                    await fn(k)
                dt = (time.perf_counter_ns() - t0) / n
                if r:
                    samples[name].append(dt)
                await cleanup()
        out.update({k: statistics.median(v) for k, v in samples.items()})

    anyio.run(main, backend=backend)
    return out


# -- stampede: 200 tasks, one cold key, 50 ms loader -------------------------------------------

LOAD_S = 0.05
StSetup = Callable[[Callable[[], Awaitable[int]]], Awaitable[Thunk]]


async def _st_floor(load: Callable[[], Awaitable[int]]) -> Thunk:
    state: dict[str, Any] = {}

    async def get() -> Any:
        ev = state.get("ev")
        if ev is None:
            ev = state["ev"] = anyio.Event()
            state["v"] = await load()
            ev.set()
        else:
            await ev.wait()
        return state["v"]

    return get


async def _st_cashews(load: Callable[[], Awaitable[int]]) -> Thunk:
    c = await _cashews_cache()

    @c(ttl=TTL)
    async def f(k: str) -> int:
        return await load()

    return partial(f, "cold")


async def _st_cashews_lock(load: Callable[[], Awaitable[int]]) -> Thunk:
    c = await _cashews_cache()

    @c(ttl=TTL, lock=True)
    async def f(k: str) -> int:
        return await load()

    return partial(f, "cold")


async def _st_aiocache(load: Callable[[], Awaitable[int]]) -> Thunk:
    from aiocache import cached_stampede

    @cached_stampede(ttl=TTL, lease=2)
    async def f(k: str) -> int:
        return await load()

    return partial(f, "cold")


async def _st_async_lru(load: Callable[[], Awaitable[int]]) -> Thunk:
    from async_lru import alru_cache

    @alru_cache(maxsize=10, ttl=TTL)
    async def f(k: str) -> int:
        return await load()

    return partial(f, "cold")


async def _st_theine(load: Callable[[], Awaitable[int]]) -> Thunk:
    import theine

    @theine.Memoize(10, timedelta(seconds=TTL))
    async def f(k: str) -> int:
        return await load()

    @f.key
    def _key(k: str) -> str:
        return k

    return partial(f, "cold")


async def _st_cachet(load: Callable[[], Awaitable[int]]) -> Thunk:
    import cachet

    c = cachet.AsyncCache.builder().memory(10).stampede_protection().build()
    await c.__aenter__()
    _CLEANUP.append(lambda: c.__aexit__(None, None, None))

    async def get() -> int:
        return (await c.get_or_insert("cold", load)).value  # type: ignore[no-any-return]

    return get


ASYNC_STAMPEDE: list[tuple[str, str, str, tuple[str, ...], StSetup]] = [
    ("bare anyio.Event single-flight (floor)", "floor", "one leader awaits the loader, the others wait on an `anyio.Event`", BOTH, _st_floor),
    ("cashews @cache", "python", "`@cache(ttl=600)`, default `protected=True`", ASYNCIO, _st_cashews),
    ("cashews @cache(lock=True)", "python", "`@cache(ttl=600, lock=True)` (its documented stampede lock)", ASYNCIO, _st_cashews_lock),
    ("aiocache @cached_stampede", "python", "`@cached_stampede(ttl=600, lease=2)`", ASYNCIO, _st_aiocache),
    ("async-lru @alru_cache", "python", "`@alru_cache(maxsize=10, ttl=600)`", ASYNCIO, _st_async_lru),
    ("theine @Memoize (async)", "hybrid", "`@Memoize(10, timedelta(seconds=600))`", ASYNCIO, _st_theine),
    ("cachet get_or_insert", "cachet", "`.stampede_protection()`", BOTH, _st_cachet),
]


def stampede(backend: str, tasks: int, runs: int) -> list[dict[str, Any]]:
    cases = [c for c in ASYNC_STAMPEDE if backend in c[3]]
    results: dict[str, list[tuple[int, float, float]]] = {c[0]: [] for c in cases}

    async def main() -> None:
        for _ in range(runs):
            for name, _, _, _, setup in cases:
                calls = 0

                async def load() -> int:
                    nonlocal calls
                    calls += 1
                    await anyio.sleep(LOAD_S)
                    return 1

                get = await setup(load)
                bad: list[Any] = []

                async def one(get: Thunk = get, bad: list[Any] = bad) -> None:
                    v = await get()
                    if v != 1:
                        bad.append(v)

                c0, w0 = time.process_time(), time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for _ in range(tasks):
                        tg.start_soon(one)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if bad:
                    raise RuntimeError(f"{name}: wrong value {bad[0]!r}")
                results[name].append((calls, wall, cpu))
                await cleanup()

    anyio.run(main, backend=backend)
    return [{"case": name, "kind": kind, "settings": settings,
             "calls": max(r[0] for r in results[name]),
             "calls_all": [r[0] for r in results[name]],
             "wall_ms": statistics.median(r[1] for r in results[name]) * 1e3,
             "cpu_ms": statistics.median(r[2] for r in results[name]) * 1e3}
            for name, kind, settings, _, _ in cases]
