"""Chaos: many concurrent operations over a fault-injecting L2, on sync (threads), asyncio
and trio (tasks), with invariants checked during and after the run (issue 9).

Stack: memory L1 (ttl + time-to-refresh) over ``ChaosTier(MockTier())`` (``AsyncChaosTier``
on aio), stampede protection, a ``ManualClock`` that one worker advances. Every value is
``(key, version)``; a ``Ledger`` records every version written (inserted or loaded) and
every invalidate / clear that succeeded, and judges what the cache returns and what the
tiers hold at the end. See docs/resilience.md.

``CACHET_CHAOS_SCALE`` multiplies the number of operations (default 1: a few seconds for
the whole file); ``CACHET_CHAOS_SEED`` changes the seed.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import anyio
import pytest

from cachet import CacheEntry, LoaderError, TierError, TimeToRefresh
from cachet.testing import AsyncChaosTier, ChaosError, ChaosTier, ManualClock, MockTier
from cachet.tiers import MemoryTier

pytestmark = pytest.mark.anyio

SCALE = float(os.environ.get("CACHET_CHAOS_SCALE", "1"))
SEED = int(os.environ.get("CACHET_CHAOS_SEED", "9"))
WORKERS = 8
OPS_PER_WORKER = max(10, int(150 * SCALE))
KEYS = 10
OP_BOUND = 10.0  # seconds: no single operation may take longer (hangs are released every few ms)
RELEASE_EVERY = 0.003

OPS = ["get", "get_or_insert", "try_get_or_insert", "optionally_get_or_insert", "insert",
       "invalidate", "clear", "tick"]
WEIGHTS = [30, 28, 5, 5, 12, 10, 2, 6]


class Boom(Exception):
    """What a loader raises on purpose."""


class Ledger:
    """What was written, what was killed, and every broken invariant seen."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)  # one order for everything (next() is atomic in CPython)
        self.lock = threading.Lock()
        # key -> version -> "born" sequence number (None while its insert is still running):
        # an invalidate that starts after birth must remove the version for good.
        self.versions: dict[Hashable, dict[int, int | None]] = {k: {} for k in range(KEYS)}
        # successful invalidate(key) / clear (key None): (key, start, end) sequence numbers
        self.kills: list[tuple[Hashable | None, int, int]] = []
        # (key, version) -> when the call that wrote it returned (its write, and the undo of
        # a write that lost a race with an invalidate, are over by then)
        self.settled: dict[tuple[Hashable, int], int] = {}
        self.problems: list[str] = []
        self.resurrections: list[str] = []  # invalidated values served or held afterwards
        self.returned = 0
        self.errors: dict[str, int] = {}

    def seq(self) -> int:
        return next(self._seq)

    # -- writes --------------------------------------------------------------------------

    def new_insert(self, key: Hashable) -> int:
        v = self.seq()
        with self.lock:
            self.versions[key][v] = None  # not born until the insert returned
        return v

    def insert_done(self, key: Hashable, v: int) -> None:
        born = self.seq()
        with self.lock:
            self.versions[key][v] = born
            self.settled[(key, v)] = born

    def new_load(self, key: Hashable) -> int:
        v = self.seq()  # the loader started: the version is born now (the write guard's promise)
        with self.lock:
            self.versions[key][v] = v
        return v

    def load_done(self, key: Hashable, loaded: list[int]) -> None:
        """The call whose loader produced ``loaded`` returned (or raised)."""
        end = self.seq()
        with self.lock:
            for v in loaded:
                self.settled[(key, v)] = end

    def killed(self, key: Hashable | None, start: int) -> None:
        end = self.seq()
        with self.lock:
            self.kills.append((key, start, end))

    # -- judgements ----------------------------------------------------------------------

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def resurrected(self, text: str) -> None:
        with self.lock:
            self.resurrections.append(text)

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1

    def check_returned(self, op: str, key: Hashable, entry: Any, *, may_be_none: bool, since: int) -> None:
        """``entry`` came back from ``op(key)``, which started at sequence number ``since``."""
        if entry is None:
            if not may_be_none:
                self.problem(f"{op}({key!r}) returned None")
            return
        if not isinstance(entry, CacheEntry):
            self.problem(f"{op}({key!r}) returned {entry!r}, not a CacheEntry")
            return
        value = entry.value
        with self.lock:
            self.returned += 1
            ok = (isinstance(value, tuple) and len(value) == 2 and value[0] == key
                  and value[1] in self.versions[key])
        if not ok:
            self.problem(f"{op}({key!r}) returned {value!r}, never written for that key")
        elif self.dead(key, value[1], before=since):
            self.resurrected(f"{op}({key!r}) returned {value!r}, invalidated before the call began "
                         f"(call at {since}; {self.story(key, value[1])})")

    def story(self, key: Hashable, v: int) -> str:
        with self.lock:
            born = self.versions[key].get(v)
            kills = [(s, e) for k, s, e in self.kills if (k is None or k == key) and born is not None and s > born]
        kind = "loaded" if born == v else "inserted"
        return f"{kind}, born at {born}; killed by invalidate/clear at (start, end) {kills[:3]}"

    def dead(self, key: Hashable, v: int, before: float | None = None) -> bool:
        """Whether an invalidate or clear that started after version ``v`` was born (its
        insert returned, its loader started) removed it for a call starting at ``before``
        (None: at the end of the run).

        A write already on its way to a slow tier can land after the invalidate returned;
        the load then undoes it, so a read is judged only once the loading call returned
        (a load whose caller was cancelled may still be running: never judged by reads).
        """
        with self.lock:
            born = self.versions[key].get(v)
            if born is None:
                return False
            if before is None:
                before, settled = float("inf"), 0
            else:
                settled = self.settled.get((key, v), None)
                if settled is None:
                    return False
            return any(start > born and max(end, settled) < before
                       for k, start, end in self.kills if k is None or k == key)

    def check_held(self, tier: str, held: dict[Hashable, CacheEntry[Any]]) -> None:
        for key, entry in held.items():
            value = entry.value
            if not (isinstance(value, tuple) and len(value) == 2 and value[0] == key
                    and value[1] in self.versions.get(key, {})):
                self.problem(f"{tier} holds {value!r} under {key!r}, never written for that key")
            elif self.dead(key, value[1]):
                self.resurrected(f"{tier} holds {value!r}, invalidated after it was written or loaded")


EXPECTED = (TierError, Boom, LoaderError)


def build(frontend: Any, clock: ManualClock, chaos: Any) -> tuple[Any, MemoryTier]:
    l1 = MemoryTier(64, clock=clock, ttl=30)
    spawner = None  # the cache's own pool (sync) or task group (aio): real concurrency
    lower = frontend.builder(clock).storage(chaos).name("l2").ttl(300)
    cache = (frontend.builder(clock).storage(l1).name("l1").ttl(30)
             .time_to_refresh(TimeToRefresh(10, spawner))
             .stampede_protection().fallback(lower).build())
    return cache, l1


def make_chaos(frontend: Any, faults: str) -> tuple[Any, Any, MockTier]:
    """(outer wrapper, error wrapper, storage): delays and hangs on every operation,
    errors on ``get`` and ``insert`` only ("writes": every invalidate and clear then
    reaches every tier, so the end state can be judged exactly) or on all four."""
    kind = ChaosTier if frontend.is_sync else AsyncChaosTier
    storage = MockTier()
    error_ops = ["get", "insert"] if faults == "writes" else ["get", "insert", "invalidate", "clear"]
    errors = kind(storage, error_rate=0.1, seed=SEED, ops=error_ops)
    outer = kind(errors, delay=(0.0, 0.002), delay_rate=0.3, hang_rate=0.02, seed=SEED + 1)
    return outer, errors, storage


def thread_count() -> int:
    """Live threads, without trio's thread cache: anyio's pytest runner drives trio in guest
    mode, which waits for I/O in such a thread (idle cached workers, never the cache's)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("Trio thread"))


def core_idle(cache: Any) -> list[str]:
    core = cache._core
    leaks = []
    if len(core.flights):
        leaks.append(f"flights: {len(core.flights)}")
    if len(core.guard):
        leaks.append(f"write guard: {len(core.guard)}")
    if core.refreshing:
        leaks.append(f"refreshing: {core.refreshing}")
    return leaks


# -- sync: threads --------------------------------------------------------------------


def sync_worker(cache: Any, clock: ManualClock, ledger: Ledger, rng: random.Random) -> None:
    for _ in range(OPS_PER_WORKER):
        op = rng.choices(OPS, WEIGHTS)[0]
        key = rng.randrange(KEYS)
        t0 = time.monotonic()
        try:
            sync_op(cache, clock, ledger, rng, op, key)
        except EXPECTED as exc:
            ledger.error(exc)
        except Exception as exc:
            ledger.problem(f"{op}({key!r}) raised {exc!r}")
        took = time.monotonic() - t0
        if took > OP_BOUND:
            ledger.problem(f"{op}({key!r}) took {took:.1f} s")


def sync_loader(ledger: Ledger, rng: random.Random, key: Hashable, loaded: list[int]) -> Callable[[], Any]:
    fate = rng.random()

    def load() -> Any:
        v = ledger.new_load(key)
        loaded.append(v)
        if fate < 0.2:
            time.sleep(0.001)
        if fate > 0.9:
            raise Boom(key)
        return (key, v)

    return load


def sync_op(cache: Any, clock: ManualClock, ledger: Ledger, rng: random.Random, op: str, key: int) -> None:
    if op == "tick":
        clock.advance(rng.uniform(0, 4))
    elif op == "get":
        since = ledger.seq()
        ledger.check_returned(op, key, cache.get(key), may_be_none=True, since=since)
    elif op == "insert":
        v = ledger.new_insert(key)
        try:
            cache.insert(key, (key, v))
        finally:
            ledger.insert_done(key, v)
    elif op in ("invalidate", "clear"):
        start = ledger.seq()
        if op == "clear":
            cache.clear()
        else:
            cache.invalidate(key)
        ledger.killed(key if op == "invalidate" else None, start)
    else:
        since, loaded = ledger.seq(), []
        try:
            entry = getattr(cache, op)(key, sync_loader(ledger, rng, key, loaded))
        finally:
            ledger.load_done(key, loaded)
        ledger.check_returned(op, key, entry, may_be_none=op == "optionally_get_or_insert", since=since)


def run_sync(frontend: Any, faults: str) -> tuple[Ledger, tuple[Any, Any, MockTier], MemoryTier, list[str], int]:
    baseline = thread_count()
    clock = ManualClock(1_000_000.0)
    chaos, errors, storage = make_chaos(frontend, faults)
    cache, l1 = build(frontend, clock, chaos)
    ledger = Ledger()
    stop = threading.Event()

    def releaser() -> None:
        while not stop.wait(RELEASE_EVERY):
            chaos.release()

    # Daemons: if the cache deadlocks, the test fails instead of blocking the interpreter's exit.
    helpers = [threading.Thread(target=releaser, daemon=True)]
    helpers += [threading.Thread(target=sync_worker, daemon=True, args=(cache, clock, ledger, random.Random(SEED * 100 + i)))
                for i in range(WORKERS)]
    for t in helpers:
        t.start()
    deadline = time.monotonic() + OP_BOUND * 6
    for t in helpers[1:]:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in helpers[1:] if t.is_alive()]
    stop.set()
    chaos.close()  # releases whatever still hangs, so the test can clean up either way
    for t in helpers:
        t.join(OP_BOUND)
    cache.close()
    leaks = core_idle(cache)
    return ledger, (chaos, errors, storage), l1, hung + leaks, thread_count() - baseline


# -- aio: tasks -----------------------------------------------------------------------


async def aio_worker(cache: Any, clock: ManualClock, ledger: Ledger, rng: random.Random) -> None:
    for _ in range(OPS_PER_WORKER):
        op = rng.choices(OPS, WEIGHTS)[0]
        key = rng.randrange(KEYS)
        # Some callers give up early: a waiter's (or leader's) cancellation is its own.
        patience = rng.uniform(0.0005, 0.003) if rng.random() < 0.1 else None
        t0 = time.monotonic()
        try:
            with anyio.fail_after(OP_BOUND):
                if patience is None:
                    await aio_op(cache, clock, ledger, rng, op, key)
                else:
                    with anyio.move_on_after(patience):
                        await aio_op(cache, clock, ledger, rng, op, key)
        except EXPECTED as exc:
            ledger.error(exc)
        except TimeoutError:
            ledger.problem(f"{op}({key!r}) did not finish in {OP_BOUND} s")
        except Exception as exc:
            ledger.problem(f"{op}({key!r}) raised {exc!r}")
        took = time.monotonic() - t0
        if took > OP_BOUND:
            ledger.problem(f"{op}({key!r}) took {took:.1f} s")


def aio_loader(ledger: Ledger, rng: random.Random, key: Hashable, loaded: list[int]) -> Callable[[], Any]:
    fate = rng.random()

    async def load() -> Any:
        v = ledger.new_load(key)
        loaded.append(v)
        if fate < 0.2:
            await anyio.sleep(0.001)
        if fate > 0.9:
            raise Boom(key)
        return (key, v)

    return load


async def aio_op(cache: Any, clock: ManualClock, ledger: Ledger, rng: random.Random, op: str, key: int) -> None:
    if op == "tick":
        clock.advance(rng.uniform(0, 4))
    elif op == "get":
        since = ledger.seq()
        ledger.check_returned(op, key, await cache.get(key), may_be_none=True, since=since)
    elif op == "insert":
        v = ledger.new_insert(key)
        try:
            await cache.insert(key, (key, v))
        finally:
            ledger.insert_done(key, v)
    elif op in ("invalidate", "clear"):
        start = ledger.seq()
        if op == "clear":
            await cache.clear()
        else:
            await cache.invalidate(key)
        ledger.killed(key if op == "invalidate" else None, start)
    else:
        since, loaded = ledger.seq(), []
        try:
            entry = await getattr(cache, op)(key, aio_loader(ledger, rng, key, loaded))
        except anyio.get_cancelled_exc_class():
            loaded.clear()  # the shared load may go on for other callers: leave it unsettled
            raise
        finally:
            ledger.load_done(key, loaded)
        ledger.check_returned(op, key, entry, may_be_none=op == "optionally_get_or_insert", since=since)


async def run_aio(frontend: Any, faults: str) -> tuple[Ledger, tuple[Any, Any, MockTier], MemoryTier, list[str], int]:
    baseline = thread_count()
    clock = ManualClock(1_000_000.0)
    chaos, errors, storage = make_chaos(frontend, faults)
    cache, l1 = build(frontend, clock, chaos)
    ledger = Ledger()
    hung: list[str] = []

    async def releaser() -> None:
        while True:
            await anyio.sleep(RELEASE_EVERY)
            chaos.release()

    with anyio.move_on_after(OP_BOUND * 6) as scope:
        async with cache:
            async with anyio.create_task_group() as tg:
                tg.start_soon(releaser)
                async with anyio.create_task_group() as workers:
                    for i in range(WORKERS):
                        workers.start_soon(aio_worker, cache, clock, ledger, random.Random(SEED * 100 + i))
                tg.cancel_scope.cancel()
            chaos.close()
    if scope.cancelled_caught:
        hung.append("the run (or leaving `async with cache`) did not finish in time")
    return ledger, (chaos, errors, storage), l1, hung + core_idle(cache), thread_count() - baseline


# -- the tests ------------------------------------------------------------------------


async def chaos_run(frontend: Any, faults: str) -> tuple[Ledger, Any, Any, list[str], int]:
    if frontend.is_sync:
        ledger, (chaos, errors, storage), l1, leaks, extra_threads = run_sync(frontend, faults)
    else:
        ledger, (chaos, errors, storage), l1, leaks, extra_threads = await run_aio(frontend, faults)
    if faults == "writes":  # every invalidate and clear reached every tier: judge the end state
        with l1._lock:
            held_l1 = dict(l1._data)
        ledger.check_held("L1", held_l1)
        ledger.check_held("L2", dict(storage.data))
    return ledger, chaos, errors, leaks, extra_threads


@pytest.mark.parametrize("faults", ["writes", "everything"])
async def test_chaos_run_keeps_the_invariants(frontend: Any, faults: str) -> None:
    """No hang, no leak, no value under a key it was not written for, only typed errors."""
    ledger, chaos, errors, leaks, extra_threads = await chaos_run(frontend, faults)

    assert not leaks, leaks
    assert extra_threads == 0, f"{extra_threads} thread(s) left behind after close(): {threading.enumerate()}"
    assert not ledger.problems, "\n".join(ledger.problems[:20])

    # The run did what it claims: faults were met, errors surfaced as TierError, values flowed.
    total = WORKERS * OPS_PER_WORKER
    assert errors.stats.errors > 0 and chaos.stats.delays > 0 and chaos.stats.hangs > 0, (errors, chaos)
    assert ledger.errors.get("TierError", 0) > 0, ledger.errors
    assert ledger.errors.get("Boom", 0) > 0, ledger.errors
    assert ledger.returned > total // 4, (ledger.returned, total)
    assert set(ledger.errors) <= {"TierError", "Boom", "LoaderError"}, ledger.errors


async def test_chaos_run_never_serves_an_invalidated_value(frontend: Any) -> None:
    """A value invalidated (after its insert returned or its loader started) is neither
    returned to a later call nor held by a tier at the end."""
    ledger, *_ = await chaos_run(frontend, "writes")
    assert not ledger.resurrections, f"{len(ledger.resurrections)} times:\n" + "\n".join(ledger.resurrections[:20])


async def test_invalidate_racing_a_promotion_leaves_nothing_behind(frontend: Any) -> None:
    """Minimal reproduction of what the chaos run finds: L2's invalidate stalls; a get in
    the meantime misses L1, reads the old value from L2 and promotes it; once the
    invalidate has returned, L1 still serves the old value."""
    sync = frontend.is_sync
    l2 = (ChaosTier if sync else AsyncChaosTier)(MockTier(), hang_rate=1.0, ops=["invalidate"])
    cache = frontend.builder().memory(10).fallback(frontend.builder().storage(l2)).build()
    async with frontend.open(cache) as c:
        await c.insert("k", "old")
        if sync:
            t = threading.Thread(target=cache.invalidate, args=("k",))
            t.start()
            while l2.stats.hangs == 0:
                time.sleep(0.001)
            await c.get("k")  # meanwhile: L1 miss, L2 hit, promoted
            l2.release()
            t.join(5)
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.invalidate, "k")
                await anyio.wait_all_tasks_blocked()
                await c.get("k")
                l2.release()
        assert not l2.inner.data
        assert await c.get("k") is None


# -- the wrapper itself ---------------------------------------------------------------


def test_chaos_tier_is_deterministic_with_a_seed() -> None:
    def trace(seed: int) -> list[str]:
        chaos = ChaosTier(MockTier(), error_rate=0.3, seed=seed)
        out = []
        for i in range(200):
            try:
                chaos.insert(i, CacheEntry(i))
                out.append("ok")
            except ChaosError:
                out.append("err")
        return out

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)
    assert 30 < trace(1).count("err") < 90


def test_chaos_tier_hangs_until_released_and_closes_cleanly() -> None:
    inner = MockTier()
    chaos = ChaosTier(inner, hang_rate=1.0, seed=0)
    done = threading.Event()

    def write() -> None:
        chaos.insert("k", CacheEntry("v"))
        done.set()

    t = threading.Thread(target=write)
    t.start()
    assert not done.wait(0.05)  # hung
    assert "k" not in inner.data
    chaos.release()
    t.join(5)
    assert done.is_set() and inner.data["k"].value == "v"  # a released hang goes on
    chaos.close()
    chaos.get("k")  # closed: never hangs again
    assert chaos.stats.hangs == 1 and chaos.stats.calls == 2  # closed: the second call did not hang


def test_chaos_tier_hides_the_inner_tier() -> None:
    chaos = ChaosTier(MemoryTier(10))
    assert chaos.nonblocking is False and not hasattr(chaos, "inline")  # the cache cannot go around it
    with pytest.raises(TypeError, match="AsyncChaosTier"):
        ChaosTier(AsyncChaosTier(MockTier()))
    with pytest.raises(ValueError, match="error_rate"):
        ChaosTier(MockTier(), error_rate=2)
    with pytest.raises(ValueError, match="unknown operations"):
        ChaosTier(MockTier(), ops=["put"])


async def test_async_chaos_tier_hangs_until_released(anyio_backend: str) -> None:
    chaos = AsyncChaosTier(MockTier(), hang_rate=1.0, delay=0.001, seed=3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos.insert, "k", CacheEntry("v"))
        await anyio.wait_all_tasks_blocked()
        assert not chaos.inner.data
        chaos.release()
    assert chaos.inner.data["k"].value == "v"
    with anyio.move_on_after(0.01) as scope:  # a hung call can also be cancelled
        await chaos.get("k")
    assert scope.cancelled_caught
    chaos.close()
    assert (await chaos.get("k")) is not None
