"""Invalidation propagation latency between two processes on loopback.

    python benchmarks/bench_backplane.py [--samples 500]

Starts its own ``redis-server`` on a free loopback port and a second process (the cache
worker of ``tests/backplane_worker.py``). Per sample: this process (A) inserts a key and
the worker (B) reads it into its L1; B then spins on its L1 copy and A calls
``cache.invalidate(key)``. The latency is from just before A's ``invalidate`` call to
the moment B sees the key gone from its L1 (``perf_counter`` is CLOCK_MONOTONIC, shared
by processes on one host). It includes A's L2 delete, the PUBLISH, Redis fan-out, B's
subscriber thread waking and evicting, and B's spinning loop noticing. For scale, the
floor rows give a redis-py PING round trip and a raw PUBLISH-to-subscriber hop between
the same two kinds of process-local objects (one process, two connections).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

import cachet
from cachet.backplane import RedisBackplane
from tests.backplane_worker import SECRET, serve
from tests.redis_server import RedisServer


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def row(name: str, xs: list[float]) -> str:
    us = [x * 1e6 for x in xs]
    return f"| {name} | {len(us)} | {statistics.median(us):.0f} | {pct(us, 99):.0f} | {max(us):.0f} |"


def call(conn, *cmd, timeout: float = 10.0):
    conn.send(cmd)
    if not conn.poll(timeout):
        raise RuntimeError(f"worker did not answer {cmd[0]!r}")
    status, value = conn.recv()
    if status != "ok":
        raise RuntimeError(value)
    return value


def floors(url: str, samples: int) -> tuple[list[float], list[float]]:
    client = redis.Redis.from_url(url)
    sub = redis.Redis.from_url(url).pubsub()
    sub.subscribe("floor")
    while (m := sub.get_message(timeout=1)) is None or m["type"] != "subscribe":
        pass
    ping, hop = [], []
    for _ in range(samples):
        t0 = time.perf_counter()
        client.ping()
        ping.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.publish("floor", b"x")
        while (m := sub.get_message(timeout=1)) is None:
            pass
        hop.append(time.perf_counter() - t0)
    sub.close()
    client.close()
    return ping, hop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    with RedisServer() as server:
        ns = "bench-bp"
        ctx = multiprocessing.get_context("spawn")
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(child, server.url, ns, {}), daemon=True)
        proc.start()
        child.close()
        bp = RedisBackplane(server.url, namespace=ns)
        cache = (cachet.Cache.builder().memory(10_000).backplane(bp).serialize(secret=SECRET)
                 .fallback(cachet.Cache.builder().redis(server.url, namespace=ns)).build())
        try:
            if not conn.poll(30):
                raise RuntimeError("worker did not start")
            conn.recv()
            assert call(conn, "connected", 10) and bp.wait_connected(10)
            lat: list[float] = []
            for i in range(args.samples):
                key = ("bench", i)
                received = call(conn, "stats")["received"]
                cache.insert(key, i)
                deadline = time.monotonic() + 5
                while call(conn, "stats")["received"] == received:  # our insert reached B
                    if time.monotonic() > deadline:
                        raise RuntimeError("insert message lost")
                assert call(conn, "get", key) == i and call(conn, "peek", key) == i
                assert call(conn, "watch", key, 5.0) == "watching"
                t0 = time.perf_counter()
                cache.invalidate(key)
                if not conn.poll(10):
                    raise RuntimeError("watch timed out")
                status, seen = conn.recv()
                if status != "ok" or seen is None:
                    raise RuntimeError(f"B still holds {key!r}")
                lat.append(seen - t0)
            ping, hop = floors(server.url, args.samples)
            print(f"Python {sys.version.split()[0]}, {threading.active_count()} threads here, "
                  f"redis-server on loopback, {args.samples} samples")
            print()
            print("| case | samples | median µs | p99 µs | max µs |")
            print("|---|---:|---:|---:|---:|")
            print(row("invalidate in A → gone from B's L1", lat))
            print(row("floor: redis-py PING round trip", ping))
            print(row("floor: PUBLISH → subscriber (one process)", hop))
        finally:
            cache.close()
            try:
                call(conn, "close", timeout=15)
            except (RuntimeError, EOFError, OSError):
                pass
            proc.join(10)
            if proc.is_alive():
                proc.kill()
            conn.close()


if __name__ == "__main__":
    main()
