"""An L2 Redis hit through cachet against redis-py's own GET, in one run.

    python benchmarks/bench_redis.py [--rounds 15] [--ops 2000]

Starts its own ``redis-server`` on a free loopback port. Each round measures, one call
at a time (``perf_counter_ns`` around each call, so both sides pay the same timer):

- floor: redis-py ``GET`` of the very record the cache stores (sync / asyncio client);
- for reference, the same ``GET`` sent on one of the client's connections directly
  (``send_command`` + ``read_response``), without ``Redis.get``'s per-command pool
  checkout, retry wrapper and event hooks: the sync ``RedisTier`` reads this way
  (``cachet/tiers/_redis_direct.py``);
- cachet: ``cache.get(key)`` over memory L1 + signed-pickle boundary + Redis L2, where
  L1 misses every time, so each get encodes the key, reads Redis, checks the HMAC,
  unpickles, and offers the copy to L1. Two ways of keeping L1 empty:
  ``never``: L1 has ``InsertPolicy.never()`` (the promotion is built and rejected);
  ``evict``: L1 accepts the promotion and the benchmark removes it between gets
  (untimed), so the timed get pays for the real L1 insert.

Variants alternate call by call (the order rotating), so drift and load from other
processes hit all of them alike; the figure is the median over every sample. trio reaches Redis through worker
threads (redis-py's async client is asyncio-only); it is reported against the same
threaded GET done by hand and against the sync GET.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
import redis.asyncio

import cachet
from cachet import InsertPolicy
from cachet.tiers import MemoryTier
from tests.redis_server import RedisServer

NS = "bench"
KEY = "user:42"
VALUE = {"id": 42, "name": "Ada", "roles": ["admin"]}  # a small value: ~60 B pickled
SECRET = b"benchmark secret"

now_ns = time.perf_counter_ns


def sync_cache(url: str, evict: bool) -> tuple[Any, MemoryTier | None]:
    below = cachet.sync.Cache.builder().redis(url, namespace=NS)
    top = cachet.sync.Cache.builder()
    if evict:
        l1 = MemoryTier(1000)
        top = top.storage(l1)
    else:
        l1 = None
        top = top.memory(1000).insert_policy(InsertPolicy.never())
    return top.serialize(secret=SECRET).fallback(below).build(), l1


def async_cache(url: str, evict: bool) -> tuple[Any, MemoryTier | None]:
    below = cachet.aio.Cache.builder().redis(url, namespace=NS)
    top = cachet.aio.Cache.builder()
    if evict:
        l1 = MemoryTier(1000)
        top = top.storage(l1)
    else:
        l1 = None
        top = top.memory(1000).insert_policy(InsertPolicy.never())
    return top.serialize(secret=SECRET).fallback(below).build(), l1


Variant = tuple[str, Callable[[], Any], "Callable[[], Any] | None"]


def interleave_sync(variants: list[Variant], n: int, add: Callable[[str, int], None]) -> None:
    """``n`` calls of each variant, alternating call by call (order rotating)."""
    k = len(variants)
    for i in range(n):
        for j in range(k):
            name, fn, between = variants[(i + j) % k]
            if between is not None:
                between()
            t0 = now_ns()
            fn()
            add(name, now_ns() - t0)


async def interleave_async(variants: list[Variant], n: int, add: Callable[[str, int], None]) -> None:
    k = len(variants)
    for i in range(n):
        for j in range(k):
            name, fn, between = variants[(i + j) % k]
            if between is not None:
                between()
            t0 = now_ns()
            await fn()
            add(name, now_ns() - t0)


def check(entry: Any) -> None:
    if entry is None or entry.value != VALUE:
        raise SystemExit(f"benchmark setup is wrong: got {entry!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=2000, help="calls per variant per round")
    args = parser.parse_args()
    rounds, n = args.rounds, args.ops

    with RedisServer() as server:
        url = server.url
        samples: dict[str, list[int]] = {}

        def add(name: str, ns: int) -> None:
            samples.setdefault(name, []).append(ns)

        # -- sync -----------------------------------------------------------------------
        raw = redis.Redis.from_url(url)
        never, _ = sync_cache(url, evict=False)
        evicting, l1 = sync_cache(url, evict=True)
        never.insert(KEY, VALUE)
        rkey = f"{NS}:{KEY}".encode()
        assert raw.get(rkey) is not None
        check(never.get(KEY))
        assert l1 is not None
        drop = lambda: l1.invalidate(KEY)  # noqa: E731
        tier = never._core.levels[1].tier.inner  # the RedisTier under the boundary
        tkey = KEY.encode()
        # redis-py's GET minus its per-command plumbing (pool checkout and its select(),
        # retry wrapper, event hooks): what RedisTier's direct read is built on.
        conn = raw.connection_pool.get_connection()

        def conn_get() -> Any:
            conn.send_command("GET", rkey)
            return conn.read_response()

        sync_variants: list[Variant] = [
            ("sync redis-py GET", lambda: raw.get(rkey), None),
            ("sync redis-py connection GET", conn_get, None),
            ("sync RedisTier.get alone", lambda: tier.get(tkey), None),
            ("sync cachet get (L1 never)", lambda: never.get(KEY), None),
            ("sync cachet get (L1 evict)", lambda: evicting.get(KEY), drop),
        ]
        interleave_sync(sync_variants, n // 4, lambda name, ns: None)  # warm up
        for _ in range(rounds):
            interleave_sync(sync_variants, n, add)
        check(evicting.get(KEY))

        # -- asyncio --------------------------------------------------------------------
        async def run_asyncio() -> None:
            araw = redis.asyncio.Redis.from_url(url)
            anever, _ = async_cache(url, evict=False)
            aevict, al1 = async_cache(url, evict=True)
            assert al1 is not None
            adrop = lambda: al1.invalidate(KEY)  # noqa: E731
            async with anever, aevict:
                check(await anever.get(KEY))
                atier = anever._core.levels[1].tier.inner
                variants: list[Variant] = [
                    ("asyncio redis-py GET", lambda: araw.get(rkey), None),
                    ("asyncio RedisTier.get alone", lambda: atier.get(tkey), None),
                    ("asyncio cachet get (L1 never)", lambda: anever.get(KEY), None),
                    ("asyncio cachet get (L1 evict)", lambda: aevict.get(KEY), adrop),
                ]
                await interleave_async(variants, n // 4, lambda name, ns: None)
                for _ in range(rounds):
                    await interleave_async(variants, n, add)
                check(await aevict.get(KEY))
            await araw.aclose()

        asyncio.run(run_asyncio())

        # -- trio (threads) -------------------------------------------------------------
        try:
            import trio
        except ImportError:
            trio = None
        if trio is not None:
            async def run_trio() -> None:
                tnever, _ = async_cache(url, evict=False)
                async with tnever:
                    check(await tnever.get(KEY))
                    threaded = lambda: trio.to_thread.run_sync(raw.get, rkey)  # noqa: E731
                    variants: list[Variant] = [
                        ("trio redis-py GET in a thread", threaded, None),
                        ("trio cachet get (L1 never)", lambda: tnever.get(KEY), None),
                    ]
                    await interleave_async(variants, n // 4, lambda name, ns: None)
                    for _ in range(rounds):
                        await interleave_async(variants, n // 2, add)

            trio.run(run_trio)

        never.close()
        evicting.close()
        raw.connection_pool.release(conn)
        raw.close()

    # -- no I/O: the same stack over an in-process byte tier --------------------------
    # What cachet adds on the CPU (core L2 path, key encoding, HMAC, unpickling,
    # promotion), measured without a socket: the part the L2 round trip must absorb.
    byte_tier = MemoryTier(1000)
    cpu = (cachet.sync.Cache.builder().memory(1000).insert_policy(InsertPolicy.never())
           .serialize(secret=SECRET).fallback(cachet.sync.Cache.builder().storage(byte_tier))
           .build())
    plain = (cachet.sync.Cache.builder().memory(1000).insert_policy(InsertPolicy.never())
             .fallback(cachet.sync.Cache.builder().memory(1000)).build())
    cpu.insert(KEY, VALUE)
    plain.insert(KEY, VALUE)
    check(cpu.get(KEY))
    cpu_variants: list[Variant] = [
        ("cpu: L1 miss, L2 hit, no codec, no I/O", lambda: plain.get(KEY), None),
        ("cpu: L1 miss, L2 hit, signed pickle", lambda: cpu.get(KEY), None),
    ]
    interleave_sync(cpu_variants, n, lambda name, ns: None)
    for _ in range(rounds):
        interleave_sync(cpu_variants, n, add)
    cpu.close()
    plain.close()

    med = {name: statistics.median(xs) for name, xs in samples.items()}
    print(f"redis-server on loopback, {rounds} interleaved rounds x {n} calls, median ns per call")
    print(f"value: {VALUE!r}, signed pickle, Python {sys.version.split()[0]}, redis-py {redis.__version__}")
    print()
    print(f"{'variant':40} {'median ns':>10} {'ratio':>7}")
    floors = {"sync": "sync redis-py GET", "asyncio": "asyncio redis-py GET",
              "trio": "trio redis-py GET in a thread"}
    for name, m in med.items():
        if name.startswith("cpu"):
            continue
        floor = med.get(floors[name.split()[0]], m)
        print(f"{name:40} {m:10.0f} {m / floor:7.3f}x")
    if "trio cachet get (L1 never)" in med:
        print(f"{'trio cachet get vs sync GET':40} {'':10} "
              f"{med['trio cachet get (L1 never)'] / med['sync redis-py GET']:7.3f}x")

    print()
    print("without I/O (what the round trip has to absorb), median ns per call:")
    for name, m in med.items():
        if name.startswith("cpu"):
            print(f"  {name[5:]:38} {m:10.0f}")


if __name__ == "__main__":
    main()
