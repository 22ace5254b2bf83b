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
    print(f"{hist.ops} operations, {len(hist.reads)} reads of a value, 0 lost writes")


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


def test_a_promotion_of_the_old_value_cannot_land_after_an_insert() -> None:
    # The race the threads found, without randomness: a get misses L1 just before an
    # insert of the key starts; the insert marks the key's readers (none yet), and the
    # get then reads L2 before the insert reaches it and copies the old value up. The
    # insert used to write L1 first, so that copy landed after it and L1 kept the old
    # value for good. Now the insert writes L2 first, marks the readers again, then L1.
    from cachet import CacheEntry
    from cachet.service import InsertRequest
    from cachet.testing import MockTier

    l2 = MockTier.with_data({"k": CacheEntry("old", time.time(), 3600.0)})
    in_l2_insert, release = threading.Event(), threading.Event()

    def hold(request: Any) -> bool:  # the insert waits inside L2 until the get has read it
        if isinstance(request, InsertRequest):
            in_l2_insert.set()
            assert release.wait(10)
        return False

    l2.fail_when(hold)

    class L1(MockTier):
        """Starts the insert when the get has missed, and waits for it to reach L2."""

        armed = True

        def get(self, key: Any) -> Any:
            entry = super().get(key)
            if self.armed:
                self.armed = False
                writer.start()
                assert in_l2_insert.wait(10)
            return entry

    l1 = L1()
    cache = (Cache.builder().name("l1").storage(l1).ttl(3600)
             .fallback(Cache.builder().name("l2").storage(l2).ttl(3600)).build())
    writer = threading.Thread(target=cache.insert, args=("k", "new"))
    with cache:
        got = cache.get("k")  # misses L1, reads "old" from L2, copies it up
        release.set()
        writer.join(10)
        assert got.value in ("old", "new")  # it overlapped the insert: either is right
        assert cache.get("k").value == "new"  # the insert returned: it wins
        assert l1.data["k"].value == "new" and l2.data["k"].value == "new"
