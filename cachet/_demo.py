"""The demo behind ``python -m cachet demo``."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .sync import Cache


def run(path: str | None, clients: int) -> int:
    loads = 0
    lock = threading.Lock()

    def slow_square(n: int) -> int:
        nonlocal loads
        with lock:
            loads += 1
        time.sleep(0.05)
        return n * n

    cache: Cache[int, int] = (
        Cache.builder().name("demo").memory(1000).ttl(30).stampede_protection().build()
    )
    with cache:
        def client(i: int) -> int:
            return sum(cache.get_or_insert(n, lambda n=n: slow_square(n)).value for n in range(10))

        with ThreadPoolExecutor(clients) as pool:
            totals = list(pool.map(client, range(clients)))
        stats = cache.stats()
    print(f"{clients} threads asked for 10 keys each; loads run: {loads}; totals agree: "
          f"{len(set(totals)) == 1}")
    print(f"coalesced waits: {stats['coalesced_waits']}")
    return 0
