"""L2 hit over Redis and memory per entry, for ``compare.py``.

Redis: one ``redis-server`` on loopback (started here); each library reads one small value
it stored itself. Variants alternate call by call (order rotating), each call timed on its
own, so drift hits all alike; the figure is the median over all samples.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VALUE = {"id": 42, "name": "Ada", "roles": ["admin"]}
KEY = "user:42"
SECRET = b"benchmark secret"
now_ns = time.perf_counter_ns

REDIS_SETTINGS = {
    "redis-py GET (floor)": "`redis.Redis.from_url(url).get(key)` of the bytes cachet stores (no decoding)",
    "dogpile.cache redis backend": "`configure('dogpile.cache.redis', arguments={'url': url})`, `region.get(k)` (unsigned pickle)",
    "cashews redis://": "`Cache().setup(url)`, `await get(k)` (unsigned pickle, its default)",
    "aiocache RedisCache": "`RedisCache(endpoint, port)` (JsonSerializer, its default), `await get(k)`",
    "cachet get (L1 never)": "`memory(1000).insert_policy(InsertPolicy.never()).serialize(secret=...).fallback(redis(url))`: every get misses L1, reads Redis, checks the HMAC, unpickles",
    "cachet get (L1 never, unsigned pickle)": "the same with `.serialize(allow_unsigned_pickle=True)`: the work the peers do (they do not sign)",
    "redis-py GET in a worker thread (floor)": "`trio.to_thread.run_sync(client.get, key)` (redis-py has no trio client)",
}


def _interleave(variants: list[tuple[str, Callable[[], Any]]], n: int, add: Callable[[str, int], None]) -> None:
    k = len(variants)
    for i in range(n):
        for j in range(k):
            name, fn = variants[(i + j) % k]
            t0 = now_ns()
            fn()
            add(name, now_ns() - t0)


async def _ainterleave(variants: list[tuple[str, Callable[[], Awaitable[Any]]]], n: int,
                       add: Callable[[str, int], None]) -> None:
    k = len(variants)
    for i in range(n):
        for j in range(k):
            name, fn = variants[(i + j) % k]
            t0 = now_ns()
            await fn()
            add(name, now_ns() - t0)


def _check(v: Any, name: str) -> None:
    if getattr(v, "value", v) != VALUE:
        raise SystemExit(f"{name}: benchmark setup is wrong, got {v!r}")


def redis_tables(rounds: int, ops: int) -> dict[str, dict[str, float]]:
    import redis
    import redis.asyncio
    from dogpile.cache import make_region

    import cachet
    from cachet import InsertPolicy
    from tests.redis_server import RedisServer

    out: dict[str, dict[str, float]] = {}
    with RedisServer() as server:
        url = server.url
        host, port = url.split("//", 1)[1].split("/")[0].split(":")

        def sync_cache(signed: bool = True) -> Any:
            below = cachet.Cache.builder().redis(url, namespace="cachet" if signed else "plain")
            top = cachet.Cache.builder().memory(1000).insert_policy(InsertPolicy.never())
            top = top.serialize(secret=SECRET) if signed else top.serialize(allow_unsigned_pickle=True)
            return top.fallback(below).build()

        def async_cache(signed: bool = True) -> Any:
            below = cachet.AsyncCache.builder().redis(url, namespace="cachet" if signed else "plain")
            top = cachet.AsyncCache.builder().memory(1000).insert_policy(InsertPolicy.never())
            top = top.serialize(secret=SECRET) if signed else top.serialize(allow_unsigned_pickle=True)
            return top.fallback(below).build()

        # -- sync ------------------------------------------------------------------------
        raw = redis.Redis.from_url(url)
        cc = sync_cache()
        cc.insert(KEY, VALUE)
        cu = sync_cache(signed=False)
        cu.insert(KEY, VALUE)
        _check(cu.get(KEY), "cachet unsigned")
        rkey = next(k for k in raw.keys("cachet*"))
        region = make_region().configure("dogpile.cache.redis", arguments={"url": url}, expiration_time=600)
        region.set(KEY, VALUE)
        _check(region.get(KEY), "dogpile")
        _check(cc.get(KEY), "cachet")
        samples: dict[str, list[int]] = {}

        def add(name: str, ns: int) -> None:
            samples.setdefault(name, []).append(ns)

        variants = [
            ("redis-py GET (floor)", lambda: raw.get(rkey)),
            ("dogpile.cache redis backend", lambda: region.get(KEY)),
            ("cachet get (L1 never)", lambda: cc.get(KEY)),
            ("cachet get (L1 never, unsigned pickle)", lambda: cu.get(KEY)),
        ]
        _interleave(variants, ops // 4, lambda n, ns: None)
        for _ in range(rounds):
            _interleave(variants, ops, add)
        out["sync"] = {k: statistics.median(v) for k, v in samples.items()}
        cc.close()
        cu.close()

        # -- asyncio ---------------------------------------------------------------------
        async def run_asyncio() -> None:
            from aiocache import RedisCache
            from cashews import Cache as Cashews

            araw = redis.asyncio.Redis.from_url(url)
            ac = async_cache()
            au = async_cache(signed=False)
            cw = Cashews()
            cw.setup(url)
            await cw.init()
            await cw.set(KEY, VALUE, expire=600)
            ai = RedisCache(endpoint=host, port=int(port), namespace="aiocache")
            await ai.set(KEY, VALUE, ttl=600)
            async with ac, au:
                await au.insert(KEY, VALUE)
                _check(await ac.get(KEY), "cachet")
                _check(await au.get(KEY), "cachet unsigned")
                _check(await cw.get(KEY), "cashews")
                _check(await ai.get(KEY), "aiocache")
                samples: dict[str, list[int]] = {}

                def add(name: str, ns: int) -> None:
                    samples.setdefault(name, []).append(ns)

                avariants = [
                    ("redis-py GET (floor)", lambda: araw.get(rkey)),
                    ("cashews redis://", lambda: cw.get(KEY)),
                    ("aiocache RedisCache", lambda: ai.get(KEY)),
                    ("cachet get (L1 never)", lambda: ac.get(KEY)),
                    ("cachet get (L1 never, unsigned pickle)", lambda: au.get(KEY)),
                ]
                await _ainterleave(avariants, ops // 4, lambda n, ns: None)
                for _ in range(rounds):
                    await _ainterleave(avariants, ops, add)
                out["asyncio"] = {k: statistics.median(v) for k, v in samples.items()}
            await cw.close()
            await ai.close()
            await araw.aclose()

        asyncio.run(run_asyncio())

        # -- trio ------------------------------------------------------------------------
        import trio

        async def run_trio() -> None:
            tc = async_cache()
            async with tc:
                _check(await tc.get(KEY), "cachet")
                samples: dict[str, list[int]] = {}

                def add(name: str, ns: int) -> None:
                    samples.setdefault(name, []).append(ns)

                tvariants = [
                    ("redis-py GET in a worker thread (floor)", lambda: trio.to_thread.run_sync(raw.get, rkey)),
                    ("cachet get (L1 never)", lambda: tc.get(KEY)),
                ]
                await _ainterleave(tvariants, ops // 4, lambda n, ns: None)
                for _ in range(rounds):
                    await _ainterleave(tvariants, ops // 2, add)
                out["trio"] = {k: statistics.median(v) for k, v in samples.items()}

        trio.run(run_trio)
        raw.close()
    return out


# -- memory per entry -------------------------------------------------------------------------

N_ENTRIES = 100_000


def _fill(name: str, keys: list[str], values: list[int]) -> Any:
    from datetime import timedelta

    if name == "dict (floor)":
        d: dict[str, int] = {}
        for k, v in zip(keys, values, strict=True):
            d[k] = v
        return d
    if name == "cachetools TTLCache":
        import cachetools

        c: Any = cachetools.TTLCache(N_ENTRIES, ttl=600)
        for k, v in zip(keys, values, strict=True):
            c[k] = v
        return c
    if name == "cachetools LRUCache":
        import cachetools

        c = cachetools.LRUCache(N_ENTRIES)
        for k, v in zip(keys, values, strict=True):
            c[k] = v
        return c
    if name == "dogpile.cache memory":
        from dogpile.cache import make_region

        r = make_region().configure("dogpile.cache.memory", expiration_time=600)
        for k, v in zip(keys, values, strict=True):
            r.set(k, v)
        return r
    if name == "theine Cache":
        import theine

        c = theine.Cache(N_ENTRIES)
        ttl = timedelta(seconds=600)
        for k, v in zip(keys, values, strict=True):
            c.set(k, v, ttl)
        return c
    if name == "cachebox TTLCache":
        import cachebox

        c = cachebox.TTLCache(N_ENTRIES, global_ttl=600)
        for k, v in zip(keys, values, strict=True):
            c[k] = v
        return c
    if name == "cachet memory tier (ttl)":
        import cachet

        c = cachet.Cache.builder().memory(N_ENTRIES).ttl(600).build()
        for k, v in zip(keys, values, strict=True):
            c.insert(k, v)
        return c
    raise KeyError(name)


MEMORY_CASES = {
    "dict (floor)": ("floor", "a plain `dict`"),
    "cachetools TTLCache": ("python", "`TTLCache(100_000, ttl=600)` (the reference of issue 8)"),
    "cachetools LRUCache": ("python", "`LRUCache(100_000)`"),
    "dogpile.cache memory": ("python", "memory region, `expiration_time=600` (stores `CachedValue` tuples)"),
    "theine Cache": ("hybrid", "`Cache(100_000)`, `set(k, v, timedelta(seconds=600))`"),
    "cachebox TTLCache": ("native", "`TTLCache(100_000, global_ttl=600)` (Rust heap: not seen by tracemalloc)"),
    "cachet memory tier (ttl)": ("cachet", "`memory(100_000).ttl(600)`, `insert(k, v)` (a `CacheEntry` per value)"),
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def memory_one(name: str) -> dict[str, float]:
    """Bytes per entry for N_ENTRIES str-key/int-value entries (keys and values made first)."""
    keys = [f"key:{i:08d}" for i in range(N_ENTRIES)]
    values = [i * 7 + 1_000_000 for i in range(N_ENTRIES)]  # distinct ints, not small-int cached
    gc.collect()
    _fill(name, keys[:10], values[:10])  # import and warm up outside the measurement
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    obj = _fill(name, keys, values)
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_bytes()
    del obj
    return {"traced": traced / N_ENTRIES, "rss": (rss1 - rss0) / N_ENTRIES}
