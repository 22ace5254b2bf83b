"""The Redis backplane and the distributed lock, against real ``redis-server`` processes.

Two kinds of tests: in-process (two caches with their own backplanes, as two processes
would have, on sync, asyncio and trio) and multi-process (spawned workers from
``tests/backplane_worker.py`` driven over pipes). Waits poll with a deadline; nothing
sleeps to make something happen.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachet import CacheEntry
from cachet.backplane import RedisBackplane, RedisLock, decode_message_key, encode_message_key
from cachet.tiers import MemoryTier

from .backplane_worker import SECRET, serve
from .redis_server import RedisCluster, require_redis_server

redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

FAST = {"heartbeat": 0.2, "outage_ttl": 0.3, "reconnect_backoff": (0.02, 0.2)}
DEADLINE = 5.0  # generous: propagation takes milliseconds


@pytest.fixture
def ns() -> str:
    return f"bp-{uuid.uuid4().hex[:10]}"


def backplane_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cachet-backplane")]


def eventually(check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(0.005)


async def aeventually(check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    import anyio

    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await anyio.sleep(0.005)


# -- messages ------------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    "k", "", "\ud800 lone surrogate", b"\x00\xff", 0, -(2**100), 3.5, float("inf"), True,
    False, None, (), ("user", 42, (b"x", None, 1.5)),
])
def test_message_keys_round_trip(key: Any) -> None:
    import json

    back = decode_message_key(json.loads(json.dumps(encode_message_key(key))))
    assert back == key and type(back) is type(key)


@pytest.mark.parametrize("data", [
    [], ["s"], ["s", 1], ["q", "x"], ["i", "1" * 5000], ["t", "notalist"], ["b", "***"],
    ["t", [["t", [["t", []]]]] * 1], "s",
])
def test_bad_message_keys_are_rejected(data: Any) -> None:
    if data == ["t", [["t", [["t", []]]]]]:  # valid nesting: accepted
        assert decode_message_key(data) == (((),),)
        return
    with pytest.raises(ValueError):
        decode_message_key(data)


def test_unencodable_keys_have_no_message_form() -> None:
    with pytest.raises(TypeError):
        encode_message_key(frozenset({1}))


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        RedisBackplane("redis://127.0.0.1:1/0", heartbeat=0)
    with pytest.raises(ValueError, match="reconnect_backoff"):
        RedisBackplane("redis://127.0.0.1:1/0", reconnect_backoff=(2, 1))
    with pytest.raises(TypeError):
        RedisBackplane(object())
    with pytest.raises(ValueError, match="on_timeout"):
        RedisLock("redis://127.0.0.1:1/0", on_timeout="maybe")


# -- in-process: two caches, two backplanes, one namespace (sync, asyncio, trio) -------


def two_caches(frontend: Any, url: str, ns: str, **options: Any) -> list[tuple[Any, MemoryTier, RedisBackplane]]:
    out = []
    for _ in range(2):
        l1 = MemoryTier(100)
        bp = RedisBackplane(url, namespace=ns, **{**FAST, **options})
        below = frontend.builder().redis(url, namespace=ns)
        cache = (frontend.builder().storage(l1).backplane(bp).serialize(secret=SECRET)
                 .fallback(below).build())
        out.append((cache, l1, bp))
    return out


def in_l1(l1: MemoryTier, key: Any) -> Any:
    entry = l1.get(key)
    return None if entry is None else entry.value


async def test_writes_propagate_between_caches(frontend, server, ns) -> None:
    baseline = threading.active_count()
    (ca, l1a, bpa), (cb, l1b, bpb) = two_caches(frontend, server.url, ns)
    async with frontend.open(ca) as a, frontend.open(cb) as b:
        assert bpa.wait_connected(DEADLINE) and bpb.wait_connected(DEADLINE)
        await a.insert("k", 1)
        await aeventually(lambda: bpb.stats()["received"] == 1)  # A's insert reached B
        assert (await b.get("k")).value == 1 and in_l1(l1b, "k") == 1  # promoted into B's L1

        # An insert elsewhere evicts B's copy; B's next get reads the new value below.
        await a.insert("k", 2)
        await aeventually(lambda: in_l1(l1b, "k") is None)
        assert (await b.get("k")).value == 2

        # An invalidate elsewhere: B misses.
        await a.invalidate("k")
        await aeventually(lambda: in_l1(l1b, "k") is None)
        assert await b.get("k") is None

        # Tuple keys and a clear.
        await a.insert(("user", 7), "x")
        await aeventually(lambda: bpb.stats()["received"] == 4)
        assert (await b.get(("user", 7))).value == "x" and in_l1(l1b, ("user", 7)) == "x"
        await b.insert("other", 3)  # B's own insert: A evicts, B keeps its copy
        await aeventually(lambda: bpb.stats()["ignored_own"] >= 1)
        assert in_l1(l1b, "other") == 3
        await a.clear()
        await aeventually(lambda: in_l1(l1b, ("user", 7)) is None and in_l1(l1b, "other") is None)
        assert bpb.stats()["remote_clears"] == 1

        # A process ignores its own messages: A's copies survive its own publishes.
        await a.insert("mine", 1)
        assert bpa.stats()["published"] == 6
        await aeventually(lambda: bpa.stats()["ignored_own"] == 6)
        assert in_l1(l1a, "mine") == 1
        assert bpb.stats()["received"] >= 5 and bpb.stats()["decode_errors"] == 0
    assert not backplane_threads()
    if frontend.is_sync:  # anyio keeps idle worker threads around for a while
        assert threading.active_count() == baseline


async def test_unencodable_key_clears_other_l1(frontend, server, ns) -> None:
    """A key with no message form (the serialization boundary would refuse it, but an L1
    alone may hold one) makes the others clear their whole L1."""
    (ca, _, bpa), (cb, l1b, bpb) = two_caches(frontend, server.url, ns)
    async with frontend.open(ca), frontend.open(cb) as b:
        assert bpa.wait_connected(DEADLINE) and bpb.wait_connected(DEADLINE)
        await b.insert("k", 1)
        bpa.publish("invalidate", frozenset({1}))
        await aeventually(lambda: in_l1(l1b, "k") is None)
        assert bpb.stats()["fallback_clears"] == 1


async def test_garbage_on_the_channel_clears_l1(server, ns, caplog) -> None:
    (cb, l1b, bpb), (other, _, _) = two_caches(_sync(), server.url, ns)
    client = redis.Redis.from_url(server.url)
    try:
        with cb, other:
            assert bpb.wait_connected(DEADLINE)
            cb.insert("k", 1)
            with caplog.at_level(logging.WARNING, logger="cachet"):
                client.publish(bpb.channel, b"\x80 not json")
                await aeventually(lambda: in_l1(l1b, "k") is None)
            assert bpb.stats()["decode_errors"] == 1
            assert any(getattr(r, "cache.event", None) == "backplane.decode_error"
                       for r in caplog.records)
    finally:
        client.close()


def _sync() -> Any:
    from .frontends import Frontend

    return Frontend("sync")


async def test_outage_clears_l1_and_recovers(frontend, own_server, ns, caplog) -> None:
    """Redis dies: L1 is cleared when the backplane notices, and every outage_ttl until
    it reconnects; on reconnect it is cleared again; nothing hangs."""
    (ca, l1a, bpa), (cb, l1b, bpb) = two_caches(frontend, own_server.url, ns)
    async with frontend.open(ca) as a, frontend.open(cb) as b:
        assert bpa.wait_connected(DEADLINE) and bpb.wait_connected(DEADLINE)
        await a.insert("k", "old")
        assert (await b.get("k")).value == "old"
        with caplog.at_level(logging.INFO, logger="cachet"):
            own_server.kill()
            t0 = time.monotonic()
            await aeventually(lambda: not bpb.connected and in_l1(l1b, "k") is None)
            assert time.monotonic() - t0 <= bpb.staleness_bound + 1.0
            # A copy made during the outage lives at most outage_ttl (+ scheduling).
            l1b.insert("during", CacheEntry("x", time.time()))
            await aeventually(lambda: in_l1(l1b, "during") is None, bpb.outage_ttl + 1.0)
            # Writes fail fast instead of hanging; the publish failure is counted.
            with pytest.raises(Exception):  # noqa: B017 - TierError from L2
                await a.insert("k", "new")
            own_server.start()
            await aeventually(lambda: bpa.connected and bpb.connected)
        assert bpb.stats()["disconnects"] >= 1 and bpb.stats()["connects"] >= 2
        assert bpb.stats()["outage_clears"] >= 3
        events = {getattr(r, "cache.event", None) for r in caplog.records}
        assert {"backplane.disconnected", "backplane.reconnected"} <= events
        # Working again (the restarted server is empty).
        await a.insert("k", "newer")
        assert (await b.get("k")).value == "newer"
        await a.invalidate("k")
        await aeventually(lambda: in_l1(l1b, "k") is None)
    assert not backplane_threads()


async def test_silent_subscription_is_noticed_by_heartbeat(own_server, ns) -> None:
    """A subscriber that stops getting answers (server paused) is declared dead within
    2 * heartbeat and clears L1, although no socket error occurs."""
    import os
    import signal

    (cb, l1b, bpb), (ca, _, _) = two_caches(_sync(), own_server.url, ns)
    with cb, ca:
        assert bpb.wait_connected(DEADLINE)
        cb.insert("k", 1)
        assert own_server.pid is not None
        os.kill(own_server.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            eventually(lambda: in_l1(l1b, "k") is None and not bpb.connected)
            assert time.monotonic() - t0 <= 2 * bpb.heartbeat + 1.0
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
        eventually(lambda: bpb.connected)


async def test_one_backplane_per_cache(server, ns) -> None:
    bp = RedisBackplane(server.url, namespace=ns, **FAST)
    cache = _sync().builder().memory(10).backplane(bp).build()
    with cache, pytest.raises(RuntimeError, match="one cache"):
        _sync().builder().memory(10).backplane(bp).build()
    assert not backplane_threads()


async def test_cluster_round_trip(ns) -> None:
    exe = require_redis_server()
    with RedisCluster(exe) as cluster:
        url = "redis+cluster://" + cluster.url[len("redis://"):]
        caches = []
        for _ in range(2):
            l1 = MemoryTier(100)
            bp = RedisBackplane(url, namespace=ns, **FAST)
            below = _sync().builder().redis(cluster.url, namespace=ns, cluster=True)
            caches.append((_sync().builder().storage(l1).backplane(bp).serialize(secret=SECRET)
                           .fallback(below).build(), l1, bp))
        (a, _, bpa), (b, l1b, bpb) = caches
        with a, b:
            assert bpa.wait_connected(DEADLINE) and bpb.wait_connected(DEADLINE)
            for i in range(5):  # keys in different slots
                a.insert(f"k{i}", i)
                assert b.get(f"k{i}").value == i
                a.invalidate(f"k{i}")
                eventually(lambda i=i: in_l1(l1b, f"k{i}") is None)
                assert b.get(f"k{i}") is None
        with RedisLock(url, namespace=ns, lease=5) as lock:
            token = lock.acquire("cold")
            assert token is not None and lock.acquire("cold") is None
            assert lock.release("cold", token) and lock.acquire("cold") is not None
    assert not backplane_threads()


# -- the lock ------------------------------------------------------------------------


async def test_lock_owner_only_release_and_lease(server, ns) -> None:
    with RedisLock(server.url, namespace=ns, lease=0.3, backoff=(0.02, 0.1)) as lock:
        token = lock.acquire("k")
        assert token is not None
        assert lock.acquire("k") is None
        assert not lock.release("k", "not the token")
        # A holder that never releases (crashed) is bounded by the lease: the waiter
        # notices through its backoff checks.
        t0 = time.monotonic()
        assert lock.wait("k", DEADLINE)
        assert 0.2 <= time.monotonic() - t0 <= 0.3 + 1.0
        assert lock.stats()["woken_by_check"] == 1
        assert not lock.release("k", token)  # expired: no longer ours


async def test_lock_release_wakes_waiter(server, ns) -> None:
    with RedisLock(server.url, namespace=ns, lease=30, backoff=(5, 5)) as lock:
        token = lock.acquire("k")
        assert token is not None
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(lock.wait("k", 20)))
        waiter.start()
        # The waiter checks once after subscribing; then only the release can wake it
        # before its next check in 5 s.
        eventually(lambda: lock.stats()["checks"] == 1)
        t0 = time.monotonic()
        assert lock.release("k", token)
        waiter.join(DEADLINE)
        assert woke == [True] and time.monotonic() - t0 < 2.0
        assert lock.stats()["woken_by_release"] == 1


async def test_lock_get_or_insert_waits_for_the_holder(frontend, server, ns) -> None:
    """Another process holds the lock and stores the value: this cache's loader waits
    for the release and returns the stored value without running its factory."""
    (ca, _, bpa), (cb, _, bpb) = two_caches(frontend, server.url, ns)
    lock = RedisLock(server.url, namespace=ns, backoff=(5, 5))
    calls: list[int] = []

    async def factory() -> str:
        calls.append(1)
        return "mine"

    import anyio

    try:
        async with frontend.open(ca) as a, frontend.open(cb) as b:
            token = lock.acquire("cold")
            assert token is not None
            result: list[Any] = []

            async def ask() -> None:
                if frontend.is_sync:  # blocking: run it beside the loop
                    result.append(await anyio.to_thread.run_sync(
                        lock.get_or_insert, b.sync, "cold", lambda: "mine"))
                else:
                    result.append(await lock.aget_or_insert(b, "cold", factory))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await aeventually(lambda: lock.stats()["contended"] >= 1)
                await a.insert("cold", "theirs")
                assert lock.release("cold", token)
            assert result[0].value == "theirs" and calls == []
            assert lock.stats()["reread_hits"] == 1

            # Uncontended: the holder runs the factory.
            if frontend.is_sync:
                entry = lock.get_or_insert(b.sync, "warm", lambda: calls.append(1) or "mine")
            else:
                entry = await lock.aget_or_insert(b, "warm", factory)
            assert entry.value == "mine" and calls == [1]
            assert lock.stats()["loads"] == 1 and lock._client.exists(lock.names("warm")[0]) == 0
    finally:
        lock.close()


# -- real processes ------------------------------------------------------------------


class Worker:
    """A spawned cache process answering commands over a pipe (bounded waits)."""

    def __init__(self, ctx: Any, url: str, ns: str, options: dict[str, Any]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, url, ns, options), daemon=True)
        self.proc.start()
        child.close()

    def ready(self, timeout: float = 30) -> None:
        self.reply(timeout)

    def send(self, *cmd: Any) -> None:
        self.conn.send(cmd)

    def reply(self, timeout: float = DEADLINE) -> Any:
        if not self.conn.poll(timeout):
            raise AssertionError(f"worker {self.proc.pid} did not answer within {timeout}s (hung?)")
        status, value = self.conn.recv()
        if status != "ok":
            raise AssertionError(f"worker {self.proc.pid} failed: {value}")
        return value

    def call(self, *cmd: Any, timeout: float = DEADLINE) -> Any:
        self.send(*cmd)
        return self.reply(timeout)

    def close(self) -> int:
        """Close the cache; return how many threads it left beyond its baseline."""
        try:
            return int(self.call("close", timeout=15))
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
            self.conn.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., list[Worker]]]:
    ctx = multiprocessing.get_context("spawn")
    started: list[Worker] = []

    def start(n: int, url: str, ns: str, options: dict[str, Any] | None = None) -> list[Worker]:
        batch = [Worker(ctx, url, ns, options or {"backplane": FAST}) for _ in range(n)]
        started.extend(batch)
        for w in batch:
            w.ready()
        for w in batch:
            assert w.call("connected", DEADLINE) is True
        return batch

    yield start
    for w in started:
        if w.proc.is_alive():
            try:
                w.close()
            except (AssertionError, OSError, EOFError):
                w.proc.kill()
                w.proc.join(5)


def wait_for(worker: Worker, cmd: tuple[Any, ...], expected: Any, timeout: float = DEADLINE) -> None:
    eventually(lambda: worker.call(*cmd) == expected, timeout)


def test_processes_invalidate_insert_clear(server, ns, workers) -> None:
    a, b = workers(2, server.url, ns)
    a.call("insert", "k", 1)
    eventually(lambda: b.call("stats")["received"] == 1)  # A's insert reached B
    assert b.call("get", "k") == 1 and b.call("peek", "k") == 1
    t0 = time.monotonic()
    a.call("invalidate", "k")
    wait_for(b, ("peek", "k"), None)  # B's next get misses L1 ...
    assert time.monotonic() - t0 < 1.0
    assert b.call("get", "k") is None  # ... and L2
    a.call("insert", ("t", 1), "v1")
    eventually(lambda: b.call("stats")["received"] == 3)
    assert b.call("get", ("t", 1)) == "v1" and b.call("peek", ("t", 1)) == "v1"
    a.call("insert", ("t", 1), "v2")
    wait_for(b, ("peek", ("t", 1)), None)
    assert b.call("get", ("t", 1)) == "v2"
    b.call("insert", "x", 1)
    eventually(lambda: a.call("stats")["received"] == 1)
    assert a.call("get", "x") == 1 and a.call("peek", "x") == 1
    b.call("clear")
    wait_for(a, ("peek", "x"), None)
    eventually(lambda: a.call("stats")["remote_clears"] == 1)
    # Own messages ignored: B kept what it inserted until its own clear.
    stats_a, stats_b = a.call("stats"), b.call("stats")
    assert stats_a["ignored_own"] == stats_a["published"] >= 3
    assert stats_b["ignored_own"] == stats_b["published"] >= 2
    assert stats_b["evictions"] >= 3 and stats_a["remote_clears"] == 1
    assert a.close() == 0 and b.close() == 0  # no thread left behind


def test_cold_key_asked_by_eight_processes_is_loaded_once(server, ns, workers) -> None:
    procs = workers(8, server.url, ns)
    for w in procs:
        w.send("load", "cold", f"{ns}:loads", f"{ns}:arrived", len(procs))
    values = {w.reply(timeout=30) for w in procs}
    client = redis.Redis.from_url(server.url)
    try:
        assert int(client.get(f"{ns}:loads")) == 1
    finally:
        client.close()
    assert len(values) == 1 and next(iter(values)).startswith("loaded-by-")
    stats = [w.call("lock_stats") for w in procs]
    assert sum(s["loads"] for s in stats) == 1
    assert sum(s["contended"] for s in stats) >= 1  # somebody really waited
    assert sum(s["timeouts"] for s in stats) == 0
    for w in procs:
        assert w.close() == 0


def test_processes_survive_a_redis_restart(own_server, ns, workers) -> None:
    a, b = workers(2, own_server.url, ns)
    a.call("insert", "k", "old")
    assert b.call("get", "k") == "old"
    own_server.kill()
    # B notices and drops its copy within the documented bound.
    wait_for(b, ("peek", "k"), None, timeout=FAST["heartbeat"] * 2 + FAST["outage_ttl"] + 2)
    # No process hangs: calls answer (with an error from L2) within the socket timeout.
    b.send("get", "k")
    with pytest.raises(AssertionError, match="failed"):
        b.reply(timeout=DEADLINE)
    b.call("insert_l1", "stale", "x")  # a copy made during the outage
    own_server.start()
    eventually(lambda: a.call("connected", 0.1) and b.call("connected", 0.1))
    # Dropped: on reconnect (or by the outage ttl before it).
    wait_for(b, ("peek", "stale"), None)
    # And propagation works again.
    a.call("insert", "k", "new")
    assert b.call("get", "k") == "new"
    a.call("invalidate", "k")
    wait_for(b, ("peek", "k"), None)
    stats = b.call("stats")
    assert stats["disconnects"] >= 1 and stats["connects"] >= 2 and stats["connected"]
    assert a.close() == 0 and b.close() == 0
