"""The demo behind ``python -m cachet demo``: memory (L1) over SQLite (L2), two frontends.

1. ``cachet.sync``: ``clients`` threads ask for the same keys in different orders through
   ``get_or_insert`` over a slow function; stampede protection makes each key load once.
   After the L1's time to refresh, a second round serves the stale L1 copies at once
   and refreshes them from the L2 in the background.
2. ``cachet.aio`` on asyncio: ``clients`` tasks ask for the same keys through a separate
   cache (its own, empty L1) on the same SQLite file: the L2 serves them, no loads.

The SQLite file lives in a temporary directory unless ``--path`` is given; a second run
on the same path finds its L2 filled and loads nothing.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

KEYS = 20
LOAD_SECONDS = 0.05
TTR = 0.3


def run(path: str | None, clients: int) -> int:
    """Run the demo on ``path`` (a SQLite file; default: a temporary one); returns an exit code."""
    if path is not None:
        db = os.path.abspath(path)
        if os.path.isdir(db):
            print(f"cachet demo: --path {path} is a directory; give a file name, such as "
                  f"{os.path.join(path, 'demo.db')}", file=sys.stderr)
            return 2
        try:
            os.makedirs(os.path.dirname(db), exist_ok=True)  # --path new/dir/demo.db works
        except OSError as exc:
            print(f"cachet demo: cannot create the directory for {path}: {exc}", file=sys.stderr)
            return 2
        return _run(db, clients, persistent=True)
    with tempfile.TemporaryDirectory(prefix="cachet-demo-") as d:
        return _run(os.path.join(d, "demo.db"), clients, persistent=False)


def _run(db: str, clients: int, persistent: bool) -> int:
    from .sync import Cache

    clients = max(1, clients)
    print(f"cachet demo: memory (L1) over SQLite (L2) at {db}")
    print(f"  {KEYS} keys, a backing function that takes {LOAD_SECONDS * 1000:.0f} ms, "
          f"{clients} clients per frontend")
    started = time.perf_counter()
    rows_before = _rows(db)

    # -- 1. threads on cachet.sync -------------------------------------------------------
    loads = _Counter()

    def slow_square(n: int) -> int:
        loads.add()
        time.sleep(LOAD_SECONDS)
        return n * n

    cache: Cache[int, int] = (
        Cache.builder().name("demo-sync").memory(1000).ttl(60).time_to_refresh(TTR)
        .stampede_protection()
        .fallback(Cache.builder().name("sqlite").sqlite(db).ttl(3600))
        .build()
    )

    def client(seed: int) -> int:
        order = list(range(KEYS))
        random.Random(seed).shuffle(order)
        return sum(cache.get_or_insert(n, partial(slow_square, n)).value for n in order)

    t0 = time.perf_counter()
    with cache:
        with ThreadPoolExecutor(clients) as pool:
            first = list(pool.map(client, range(clients)))
        time.sleep(TTR)  # let the L1 copies go stale (wall-clock time: this is a demo)
        with ThreadPoolExecutor(clients) as pool:
            second = list(pool.map(client, range(clients, 2 * clients)))
    sync_stats: Any = cache.stats()
    sync_loads = loads.value
    ok = len(set(first + second)) == 1
    _report("sync", f"{clients} threads x {KEYS} keys x 2 rounds", sync_loads, sync_stats,
            time.perf_counter() - t0)

    # -- 2. tasks on cachet.aio (asyncio) ------------------------------------------------
    import anyio

    aio_loads = _Counter()
    aio_stats: Any = None

    async def main() -> bool:
        nonlocal aio_stats
        from .aio import Cache as AsyncCache

        async def slow_square_async(n: int) -> int:
            aio_loads.add()
            await anyio.sleep(LOAD_SECONDS)
            return n * n

        acache: AsyncCache[int, int] = (
            AsyncCache.builder().name("demo-aio").memory(1000).ttl(60).stampede_protection()
            .fallback(AsyncCache.builder().name("sqlite").sqlite(db).ttl(3600))
            .build()
        )
        totals: list[int] = []

        async def aclient(seed: int) -> None:
            order = list(range(KEYS))
            random.Random(seed).shuffle(order)
            total = 0
            for n in order:
                total += (await acache.get_or_insert(n, partial(slow_square_async, n))).value
            totals.append(total)

        async with acache, anyio.create_task_group() as tg:
            for i in range(clients):
                tg.start_soon(aclient, 100 + i)
        aio_stats = acache.stats()
        return len(set(totals)) == 1 and totals[0] == first[0]

    t0 = time.perf_counter()
    ok = anyio.run(main) and ok
    _report("asyncio", f"{clients} tasks x {KEYS} keys", aio_loads.value, aio_stats,
            time.perf_counter() - t0)

    total = sync_loads + aio_loads.value
    print(f"loads this run: {total} (L2 rows before: {rows_before}, after: {_rows(db)}); "
          f"answers agree: {ok}; {time.perf_counter() - started:.2f} s")
    if persistent:
        print(f"run it again with --path {db}: the SQLite L2 survives the restart, so it loads less")
    else:
        print("run with --path FILE twice to see the SQLite L2 survive a restart")
    return 0 if ok else 1


def _report(label: str, what: str, loads: int, stats: Any, seconds: float) -> None:
    tiers = stats["tiers"]
    hits = ", ".join(f"{name} {t['hits']}" for name, t in tiers.items())
    refreshes = sum(t["refreshes"] for t in tiers.values())
    print(f"{label + ':':<9}{what}: loads {loads}; hits per tier: {hits}; "
          f"coalesced waits {stats['coalesced_waits']}; refreshes {refreshes} ({seconds:.2f} s)")


def _rows(db: str) -> int:
    if not os.path.exists(db):
        return 0
    from .tiers import SQLiteTier

    with SQLiteTier(db) as tier:
        return tier.len()


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1
