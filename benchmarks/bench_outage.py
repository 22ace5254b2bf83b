"""An L2 outage: Redis frozen (SIGSTOP) for 5 s under 8 threads (issue 18).

Memory over Redis (signed, socket timeout 1 s); 8 threads call ``get_or_insert`` on 200
keys (a 1 ms loader) for 1 s, then Redis is frozen for 5 s, then thawed (SIGCONT) and
the threads go on for 2 s. Each configuration runs on a fresh redis-server:

- default: the tier's errors reach the callers (SPEC: ``TierError``);
- ``.degraded_reads()`` alone: no errors, but every read of a cold key waits the socket
  timeout while Redis is frozen;
- ``.degraded_reads()`` with the tier's ``.circuit_breaker()``: after the breaker opens,
  calls cost the loader only.

Reported per run: calls, errors that reached a caller, the slowest call that started
while Redis was frozen and after the breaker first opened (without a breaker: 1 s after
the freeze) and ended before the thaw, and how long after the thaw Redis answered a read
again.

    python benchmarks/bench_outage.py
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cachet
from tests.redis_server import RedisServer

THREADS, KEYS, FREEZE_S = 8, 200, 5.0


def run(config: str) -> dict[str, float]:
    with RedisServer() as server:
        below = (cachet.Cache.builder().name("redis").ttl(600)
                 .redis(server.url, namespace=f"o-{uuid.uuid4().hex[:8]}", socket_timeout=1.0))
        if config == "degraded + breaker":
            below = below.circuit_breaker(failure_threshold=5, window=10, cooldown=0.5)
        settled = {"at": float("inf")}  # calls that start after this count as "frozen, settled"

        class Opened:  # the breaker's first opening settles the outage
            def on_tier_event(self, event: object) -> None:
                if getattr(event, "event", None) == "cache.breaker_opened":
                    settled["at"] = min(settled["at"], time.perf_counter())

            def on_operation_complete(self, event: object) -> None:
                pass

        top = (cachet.Cache.builder().name("l1").memory(50).ttl(600).serialize(secret=b"s")
               .event_handler(Opened()).fallback(below))
        cache = (top if config == "default" else top.degraded_reads()).build()
        phase = {"now": "before"}
        stats = {"calls": 0, "errors": 0, "slowest_frozen_ms": 0.0}
        lock = threading.Lock()
        stop = threading.Event()

        def load() -> int:
            time.sleep(0.001)
            return 1

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                key = rng.randrange(KEYS)
                t0 = time.perf_counter()
                try:
                    cache.get_or_insert(key, load)
                    failed = 0
                except Exception:
                    failed = 1
                took = (time.perf_counter() - t0) * 1000
                with lock:
                    stats["calls"] += 1
                    stats["errors"] += failed
                    if phase["now"] == "frozen" and (t0 >= settled["at"] or (config != "degraded + breaker"
                                                     and t0 >= frozen_at + 1.0)):
                        stats["slowest_frozen_ms"] = max(stats["slowest_frozen_ms"], took)

        with cache:
            threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            frozen_at = time.perf_counter()
            phase["now"] = "frozen"
            time.sleep(FREEZE_S)
            phase["now"] = "thawed"
            def answered() -> int:  # reads Redis answered (a hit or a miss)
                row = cache.stats()["tiers"]["redis"]
                return int(row["hits"] + row["misses"])

            before = answered()
            os.kill(server.pid, signal.SIGCONT)
            thawed = time.perf_counter()
            recovered = None
            while time.perf_counter() - thawed < 5:
                if answered() > before:
                    recovered = time.perf_counter() - thawed
                    break
                time.sleep(0.005)
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join(10)
        stats["recovered_s"] = float("nan") if recovered is None else recovered
        return stats


def main() -> None:
    print(f"Redis frozen {FREEZE_S:.0f} s under {THREADS} threads (get_or_insert, {KEYS} keys, 1 ms loader, "
          f"socket timeout 1 s)\n")
    print("| configuration | calls | errors to callers | slowest call, frozen (after open / 1 s) | "
          "Redis answers again after SIGCONT |")
    print("|---|---:|---:|---:|---:|")
    for config in ("default", "degraded", "degraded + breaker"):
        s = run(config)
        print(f"| {config} | {s['calls']:,.0f} | {s['errors']:,.0f} | {s['slowest_frozen_ms']:,.0f} ms | "
              f"{s['recovered_s'] * 1000:,.0f} ms |")


if __name__ == "__main__":
    main()
