"""Loads (issue 3): a protected miss-then-load, and a stampede on one cold key.

1. Miss-then-load on unique keys through ``get_or_insert`` with stampede protection on,
   against the floor of awaiting a get, a load and a set on dict-backed coroutines.
2. Stampede: 200 tasks (asyncio, trio) and 32 threads (sync) on one cold key with a
   50 ms loader: loader calls, wall time against the loader's own time, and process CPU
   time against a bare ``anyio.Event`` single-flight doing the same.

    python benchmarks/bench_load.py
"""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from _timing import table

import cachet

N = 20_000


def miss_rows(backend: str) -> str:
    out: dict[str, float] = {}

    async def main() -> None:
        samples: dict[str, list[float]] = {"await get + load + set on dicts (floor)": [],
                                           "cachet get_or_insert, protected miss": []}
        counter = itertools.count()

        async def floor_round() -> float:
            d: dict[int, int] = {}

            async def get(k: int) -> int | None:
                return d.get(k)

            async def load(k: int) -> int:
                return k

            async def put(k: int, v: int) -> None:
                d[k] = v

            t0 = time.perf_counter_ns()
            for _ in range(N):
                k = next(counter)
                if await get(k) is None:
                    await put(k, await load(k))
            return (time.perf_counter_ns() - t0) / N

        async def cachet_round() -> float:
            cache = cachet.AsyncCache.builder().memory(N * 2).ttl(600).stampede_protection().build()
            async with cache:
                gi = cache.get_or_insert
                t0 = time.perf_counter_ns()
                for _ in range(N):
                    k = next(counter)

                    async def load(k: int = k) -> int:
                        return k

                    await gi(k, load)
                return (time.perf_counter_ns() - t0) / N

        for _ in range(7):
            samples["await get + load + set on dicts (floor)"].append(await floor_round())
            samples["cachet get_or_insert, protected miss"].append(await cachet_round())
        out.update({k: statistics.median(v) for k, v in samples.items()})

    anyio.run(main, backend=backend)
    return table(f"protected miss-then-load on {backend}", out,
                 "await get + load + set on dicts (floor)", {"cachet get_or_insert, protected miss": 8.0})


def stampede_async(backend: str, tasks: int = 200) -> str:
    rows = []

    async def bare() -> tuple[int, float, float]:
        calls, event, result = 0, anyio.Event(), {}

        async def one() -> None:
            nonlocal calls
            if calls == 0:
                calls += 1
                await anyio.sleep(0.05)
                result["v"] = 1
                event.set()
            else:
                await event.wait()

        c0, w0 = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(one)
        return calls, time.perf_counter() - w0, time.process_time() - c0

    async def cached() -> tuple[int, float, float]:
        calls = 0

        async def load() -> int:
            nonlocal calls
            calls += 1
            await anyio.sleep(0.05)
            return 1

        cache = cachet.AsyncCache.builder().memory(10).stampede_protection().build()
        async with cache:
            c0, w0 = time.process_time(), time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(tasks):
                    tg.start_soon(cache.get_or_insert, "cold", load)
            return calls, time.perf_counter() - w0, time.process_time() - c0

    async def main() -> None:
        results: dict[str, list[tuple[int, float, float]]] = {"bare anyio.Event single-flight": [],
                                                              "cachet": []}
        for _ in range(5):
            results["bare anyio.Event single-flight"].append(await bare())
            results["cachet"].append(await cached())
        for name, rs in results.items():
            calls = max(r[0] for r in rs)
            wall = statistics.median(r[1] for r in rs)
            cpu = statistics.median(r[2] for r in rs)
            rows.append((name, calls, wall, cpu))

    anyio.run(main, backend=backend)
    base_cpu = rows[0][3]
    lines = [f"## stampede: {tasks} {backend} tasks, one cold key, 50 ms loader", "",
             "| case | loader calls | wall ms | wall / 50 ms | CPU ms | CPU / bare |", "|---|---:|---:|---:|---:|---:|"]
    for name, calls, wall, cpu in rows:
        lines.append(f"| {name} | {calls} | {wall * 1e3:.1f} | {wall / 0.05:.2f} | {cpu * 1e3:.1f} | {cpu / base_cpu:.2f} |")
    return "\n".join(lines)


def stampede_threads(threads: int = 32) -> str:
    calls = 0
    lock = threading.Lock()

    def load() -> int:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return 1

    walls = []
    for _ in range(5):
        cache = cachet.Cache.builder().memory(10).stampede_protection().build()
        barrier = threading.Barrier(threads)

        def one(cache: cachet.Cache[str, int] = cache, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            cache.get_or_insert("cold", load)

        ts = [threading.Thread(target=one) for _ in range(threads)]
        w0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        walls.append(time.perf_counter() - w0)
        cache.close()
    wall = statistics.median(walls)
    return (f"## stampede: {threads} threads, one cold key, 50 ms loader\n\n"
            f"loader calls: {calls} over 5 runs (one per run); median wall {wall * 1e3:.1f} ms "
            f"({wall / 0.05:.2f}x the loader's own time)")


if __name__ == "__main__":
    print(f"Python {sys.version.split()[0]}, cachet {cachet.__version__}\n")
    for backend in ("asyncio", "trio"):
        print(miss_rows(backend), end="\n\n")
    for backend in ("asyncio", "trio"):
        print(stampede_async(backend), end="\n\n")
    print(stampede_threads())
