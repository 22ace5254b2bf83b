"""A cache process for the backplane tests and benchmark, driven over a multiprocessing pipe.

``serve(conn, url, namespace, options)`` runs in a spawned process: it builds a sync cache
(memory L1 that the parent can peek at, a backplane, a signed Redis L2, a RedisLock) and
answers commands until ``("close",)``. Every reply is ``("ok", value)`` or
``("error", repr)``, so the parent never waits for an answer that cannot come.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

SECRET = b"backplane test secret"


def build(url: str, namespace: str, options: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    import cachet
    from cachet.backplane import RedisBackplane, RedisLock
    from cachet.tiers import MemoryTier

    l1 = MemoryTier(1000)
    bp = RedisBackplane(url, namespace=namespace, **options.get("backplane", {}))
    lock = RedisLock(url, namespace=namespace, **options.get("lock", {}))
    below = cachet.Cache.builder().redis(url, namespace=namespace)
    cache = (cachet.Cache.builder().storage(l1).backplane(bp).stampede_protection()
             .serialize(secret=SECRET).fallback(below).build())
    return cache, l1, bp, lock


def serve(conn: Any, url: str, namespace: str, options: dict[str, Any]) -> None:
    import redis

    baseline = threading.active_count()
    cache, l1, bp, lock = build(url, namespace, options)
    counter = redis.Redis.from_url(url, socket_timeout=2)
    conn.send(("ok", os.getpid()))
    try:
        while True:
            cmd, *args = conn.recv()
            try:
                if cmd == "close":
                    break
                if cmd == "watch":  # acknowledge first: the parent acts once we watch
                    conn.send(("ok", "watching"))
                conn.send(("ok", handle(cmd, args, cache, l1, bp, lock, counter)))
            except Exception as exc:  # the parent asserts on it
                conn.send(("error", repr(exc)))
    finally:
        cache.close()
        lock.close()
        counter.close()
    conn.send(("ok", threading.active_count() - baseline))
    conn.close()


def handle(cmd: str, args: list[Any], cache: Any, l1: Any, bp: Any, lock: Any, counter: Any) -> Any:
    if cmd == "peek":  # the L1 copy only, without touching the cache's counters
        entry = l1.get(args[0])
        return None if entry is None else entry.value
    if cmd == "get":
        entry = cache.get(args[0])
        return None if entry is None else entry.value
    if cmd == "insert":
        cache.insert(args[0], args[1])
        return None
    if cmd == "insert_l1":  # a local-only copy (simulates a value cached before an outage)
        from cachet import CacheEntry

        l1.insert(args[0], CacheEntry(args[1], time.time()))
        return None
    if cmd == "invalidate":
        cache.invalidate(args[0])
        return None
    if cmd == "clear":
        cache.clear()
        return None
    if cmd == "stats":
        return bp.stats()
    if cmd == "lock_stats":
        return lock.stats()
    if cmd == "connected":
        return bp.wait_connected(args[0])
    if cmd == "load":  # a cold key through the distributed lock; loads counted in Redis
        key, count_key, arrived_key, expected = args

        def factory() -> str:
            counter.incr(count_key)
            # Hold the lock until every process has asked (bounded), so the others
            # really contend and wait instead of arriving after the value is stored.
            deadline = time.monotonic() + 5
            while int(counter.get(arrived_key) or 0) < expected and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            return f"loaded-by-{os.getpid()}"

        counter.incr(arrived_key)
        return lock.get_or_insert(cache, key, factory).value
    if cmd == "watch":  # for the benchmark: time from now until key leaves L1
        key, timeout = args
        deadline = time.monotonic() + timeout
        while l1.get(key) is not None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0)  # let the subscriber thread have the GIL (else: 5 ms switches)
        return time.perf_counter()
    raise ValueError(f"unknown command {cmd!r}")
