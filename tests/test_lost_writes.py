"""A completed write wins (SPEC §8, issue 17): after ``insert(k, …)`` or ``invalidate(k)``
returns, no read sees a value that a load or a promotion started before it. Randomized
histories checked by ``tests/race_check.py``: 16 threads (sync) or 64 tasks (aio, some
giving up at once) on 20 keys, over memory alone, memory over a SQLite file and memory
over a test-owned redis-server, with stampede protection on and a small memory tier so
that reads go below and promote. ``CACHET_RACE_SECONDS`` sets each run's length
(default 2 s); ``benchmarks/bench_races.py`` runs them for minutes."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from typing import Any

import anyio
import pytest

from cachet import AsyncCache, Cache

from .race_check import History, async_worker, sync_worker

SECONDS = float(os.environ.get("CACHET_RACE_SECONDS", "2"))
STACKS = ["memory", "sqlite", "redis"]


def build(builder: Any, stack: str, tmp_path: Any, server: Any) -> Any:
    b = builder().name("l1").memory(8).ttl(3600).stampede_protection()
    if stack == "sqlite":
        b = b.fallback(builder().name("l2").sqlite(str(tmp_path / "races.db")).ttl(3600))
    elif stack == "redis":
        ns = f"race-{uuid.uuid4().hex[:12]}"
        b = b.serialize(secret=b"race").fallback(builder().name("l2").redis(server.url, namespace=ns).ttl(3600))
    return b.build()


@pytest.fixture
def backing(request: pytest.FixtureRequest, stack: str) -> Any:
    return request.getfixturevalue("server") if stack == "redis" else None


def check(hist: History) -> None:
    lost = hist.lost_writes()
    assert hist.ops > 1000 and len(hist.reads) > 100
    assert lost == [], f"{len(lost)} lost writes in {hist.ops} operations, e.g. {lost[:3]}"


@pytest.mark.parametrize("stack", STACKS)
def test_no_lost_writes_under_threads(stack, tmp_path, backing) -> None:
    cache = build(Cache.builder, stack, tmp_path, backing)
    hists = [History() for _ in range(16)]
    errors: list[BaseException] = []
    until = time.monotonic() + SECONDS

    def run(i: int) -> None:
        try:
            sync_worker(cache, hists[i], random.Random(i), until, time.monotonic)
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    with cache:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 30)
    assert errors == []
    for h in hists[1:]:
        hists[0].merge(h)
    check(hists[0])


@pytest.mark.anyio
@pytest.mark.parametrize("stack", STACKS)
async def test_no_lost_writes_under_tasks(stack, tmp_path, backing) -> None:
    cache = build(AsyncCache.builder, stack, tmp_path, backing)
    hist = History()
    until = anyio.current_time() + SECONDS
    async with cache, anyio.create_task_group() as tg:
        for i in range(64):
            tg.start_soon(async_worker, cache, hist, random.Random(i), until, anyio.current_time)
    check(hist)
