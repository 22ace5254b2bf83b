"""SQLiteTier: a real file, real threads and processes (SPEC §7 "SQLite")."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cachet import CacheEntry, InsertOutcome, ManualClock, TierError
from cachet._core.tier import KEEP
from cachet.serialize import encode_key
from cachet.tiers import SQLiteTier

pytestmark = pytest.mark.anyio


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cache.db")


def l2(frontend, clock, db: str, **kw):
    return frontend.builder(clock).name("l2").sqlite(db, **kw)


# -- the tier on its own ---------------------------------------------------------------


def test_bytes_round_trip_and_entry_fields(db: str) -> None:
    with SQLiteTier(db) as tier:
        assert tier.get(b"k") is None
        assert tier.insert(b"k", CacheEntry(b"\x00v", cached_at=10.0, ttl=None)) is InsertOutcome.ACCEPTED
        assert tier.get(b"k") == CacheEntry(b"\x00v", 10.0, None)
        tier.insert(b"k", CacheEntry(b"w", cached_at=11.0))
        assert tier.get(b"k") == CacheEntry(b"w", 11.0, None)
        assert tier.len() == 1
        tier.invalidate(b"k")
        assert tier.get(b"k") is None and tier.len() == 0


def test_memory_database_works_too() -> None:
    tier = SQLiteTier()
    tier.insert(b"a", CacheEntry(b"1", cached_at=0.0))
    assert tier.get(b"a") == CacheEntry(b"1", 0.0, None)
    tier.close()


@pytest.mark.parametrize("call", [
    lambda t: t.get("k"),
    lambda t: t.insert("k", CacheEntry(b"v", cached_at=0.0)),
    lambda t: t.insert(b"k", CacheEntry("v", cached_at=0.0)),
    lambda t: t.invalidate(1),
])
def test_non_bytes_say_to_add_a_boundary(db: str, call) -> None:
    with SQLiteTier(db) as tier, pytest.raises(TypeError, match=r"serialize\(\)"):
        call(tier)


def test_namespaces_share_a_file_but_not_keys(db: str) -> None:
    with SQLiteTier(db, namespace="a") as a, SQLiteTier(db, namespace="b") as b:
        a.insert(b"k", CacheEntry(b"a", cached_at=0.0))
        b.insert(b"k", CacheEntry(b"b", cached_at=0.0))
        assert a.get(b"k").value == b"a" and b.get(b"k").value == b"b"
        a.clear()
        assert a.get(b"k") is None and a.len() == 0
        assert b.get(b"k").value == b"b" and b.len() == 1


@pytest.mark.parametrize("kw", [{"namespace": ""}, {"timeout": 0}, {"max_entries": 0},
                                {"max_entries": 1.5}, {"sweep_interval": -1}, {"ttl": 0}])
def test_bad_arguments_are_value_errors(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SQLiteTier(**kw)  # type: ignore[arg-type]


def test_closed_tier_raises_tier_error_and_close_is_idempotent(db: str) -> None:
    tier = SQLiteTier(db, name="l2")
    tier.insert(b"k", CacheEntry(b"v", cached_at=0.0))
    tier.close()
    tier.close()
    with pytest.raises(TierError, match="closed") as info:
        tier.get(b"k")
    assert info.value.tier == "l2"


# -- expiry, sweeping, the size bound --------------------------------------------------


def test_expiry_is_honoured_on_read_with_the_strict_rule(db: str) -> None:
    clock = ManualClock(1000.0)
    with SQLiteTier(db, clock=clock, ttl=10.0) as tier:
        tier.insert(b"tier-ttl", CacheEntry(b"a", cached_at=1000.0))
        tier.insert(b"own-ttl", CacheEntry(b"b", cached_at=1000.0, ttl=2.0))
        tier.insert(b"future", CacheEntry(b"c", cached_at=1005.0))
        clock.advance(2.0)
        assert tier.get(b"own-ttl") is not None  # now - cached_at == ttl: still fresh
        assert tier.get(b"future") is None  # cached_at in the future counts as expired
        clock.advance(0.001)
        assert tier.get(b"own-ttl") is None
        assert tier.get(b"tier-ttl") is not None
        clock.set(1010.0)
        assert tier.get(b"tier-ttl") is not None
        clock.set(1010.001)
        assert tier.get(b"tier-ttl") is None
        assert tier.len() == 3  # expired rows read as misses; the sweep removes them


def test_a_row_with_a_damaged_ttl_reads_as_a_miss(db: str) -> None:
    """A file damaged or written by something else: a ttl that is not a positive float
    is a miss, at the tier and through the cache, never an error or a wrong entry."""
    from cachet import Cache

    with SQLiteTier(db) as tier:
        tier.insert(b"good", CacheEntry(b"v", time.time(), 3600.0))
    conn = sqlite3.connect(db)
    for key, ttl in ((b"neg", -1.0), (b"zero", 0.0), (b"text", "soon"), (b"blob", b"\x00")):
        conn.execute("INSERT INTO cachet_v1 SELECT namespace, ?, value, cached_at, ?, "
                     "expires_at FROM cachet_v1 WHERE key = ?", (key, ttl, b"good"))
    conn.commit()
    conn.close()
    with SQLiteTier(db) as tier:
        assert tier.get(b"good") is not None
        assert [tier.get(k) for k in (b"neg", b"zero", b"text", b"blob")] == [None] * 4
    cache = Cache.builder().memory(10).fallback(Cache.builder().sqlite(db)).build()
    with cache:
        for k in ("neg", "zero", "text", "blob"):  # str keys encode to the same bytes
            assert cache.get(k) is None


def test_sweep_removes_expired_rows_so_the_file_does_not_grow(db: str) -> None:
    clock = ManualClock(0.0)
    with SQLiteTier(db, clock=clock, sweep_interval=5.0) as tier:
        for i in range(50):
            tier.insert(b"%d" % i, CacheEntry(b"v", cached_at=0.0, ttl=1.0))
        tier.insert(b"forever", CacheEntry(b"v", cached_at=0.0))
        assert tier.len() == 51
        clock.advance(3.0)
        tier.insert(b"x", CacheEntry(b"v", cached_at=3.0, ttl=1.0))
        assert tier.len() == 52  # the first insert swept (nothing expired yet); next sweep not due
        clock.advance(3.0)  # t=6: past the sweep interval
        tier.insert(b"y", CacheEntry(b"v", cached_at=6.0, ttl=100.0))
        assert tier.len() == 2
        assert tier.get(b"forever") is not None and tier.get(b"y") is not None


def test_max_entries_evicts_oldest_first(db: str) -> None:
    with SQLiteTier(db, max_entries=5) as tier:
        for i in range(12):
            tier.insert(b"%d" % i, CacheEntry(b"v", cached_at=float(i)))
            assert tier.len() <= 5
        assert [tier.get(b"%d" % i) is not None for i in range(12)] == [False] * 7 + [True] * 5
        tier.insert(b"8", CacheEntry(b"again", cached_at=20.0))  # rewriting makes it the newest
        tier.insert(b"12", CacheEntry(b"v", cached_at=21.0))  # evicts 7
        tier.insert(b"13", CacheEntry(b"v", cached_at=22.0))  # evicts 9, not the rewritten 8
        assert tier.get(b"7") is None and tier.get(b"9") is None
        assert tier.get(b"8").value == b"again" and tier.get(b"10") is not None


def test_builder_passes_clock_and_tier_ttl(db: str) -> None:
    from cachet import Cache

    clock = ManualClock(50.0)
    cache = Cache.builder(clock).memory(10).fallback(Cache.builder(clock).sqlite(db).ttl(5)).build()
    with cache:
        cache.insert("k", "v")
    with SQLiteTier(db, clock=clock, ttl=5.0) as raw:
        row = raw.get(encode_key("k"))
        assert row is not None and row.cached_at == 50.0 and row.ttl is None
        clock.advance(5.5)
        assert raw.get(encode_key("k")) is None


# -- failures are TierErrors, within the timeout ---------------------------------------


def test_lock_held_beyond_the_timeout_is_a_tier_error(db: str) -> None:
    with SQLiteTier(db, timeout=0.2, name="l2") as tier:
        tier.insert(b"k", CacheEntry(b"v", cached_at=0.0))
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            t0 = time.monotonic()
            with pytest.raises(TierError, match="locked") as info:
                tier.insert(b"k2", CacheEntry(b"v", cached_at=0.0))
            assert time.monotonic() - t0 < 3.0
            assert info.value.tier == "l2" and isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert tier.get(b"k") is not None  # WAL: readers are not blocked by the writer
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        tier.insert(b"k2", CacheEntry(b"v", cached_at=0.0))  # and it recovers


def test_locked_file_on_a_cold_start_is_a_tier_error_not_a_hang(db: str) -> None:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("CREATE TABLE t (x)")  # takes and keeps the exclusive lock
    try:
        with SQLiteTier(db, timeout=0.2) as tier:
            t0 = time.monotonic()
            with pytest.raises(TierError):
                tier.get(b"k")
            assert time.monotonic() - t0 < 3.0
    finally:
        holder.close()


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_file_is_a_tier_error(db: str, content: bytes) -> None:
    Path(db).write_bytes(content)
    with SQLiteTier(db, timeout=0.2, name="l2") as tier:
        for call in (lambda: tier.get(b"k"), lambda: tier.insert(b"k", CacheEntry(b"v", cached_at=0.0)),
                     tier.len, tier.clear):
            with pytest.raises(TierError) as info:
                call()
            assert info.value.tier == "l2"


async def test_corrupt_l2_surfaces_as_tier_error_through_the_cache(frontend, clock, db: str) -> None:
    Path(db).write_bytes(b"garbage" * 1000)
    cache = frontend.builder(clock).memory(10).fallback(l2(frontend, clock, db, timeout=0.2)).build()
    async with frontend.open(cache) as c:
        with pytest.raises(TierError) as info:
            await c.get("k")
        assert info.value.tier == "l2"


# -- threads and processes -------------------------------------------------------------


def test_many_threads_on_one_tier(db: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    with SQLiteTier(db, max_entries=10_000) as tier:
        def work(t: int) -> None:
            try:
                barrier.wait()
                for i in range(100):
                    key = b"%d-%d" % (t, i)
                    tier.insert(key, CacheEntry(key, cached_at=0.0))
                    got = tier.get(key)
                    assert got is not None and got.value == key
                    tier.get(b"%d-%d" % ((t + 1) % 8, i))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert tier.len() == 800


_WORKER = """
import sys, time
from cachet import Cache
path, worker, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
while time.time() < start:  # start together: a cold start on one file
    pass
cache = Cache.builder().memory(10).fallback(Cache.builder().sqlite(path, timeout=10)).build()
with cache:
    for i in range(200):
        cache.insert(("w", worker, i), {"worker": worker, "i": i})
        cache.get(("w", 1 - worker, i))
    for i in range(200):
        assert cache.get(("w", worker, i)).value == {"worker": worker, "i": i}
print("ok")
"""


def _spawn_workers(db: str, n: int) -> list[subprocess.Popen[str]]:
    start = time.time() + 1.0
    return [subprocess.Popen([sys.executable, "-c", _WORKER, db, str(w), str(start)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(n)]


def test_cold_start_and_concurrent_writes_by_two_processes(db: str) -> None:
    assert not os.path.exists(db)
    procs = _spawn_workers(db, 2)
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    with SQLiteTier(db) as tier:
        assert tier.len() == 400


async def test_two_processes_share_one_file(frontend, clock, db: str) -> None:
    """Another process writes; this process (sync, asyncio or trio) reads it from the L2."""
    script = (
        "import sys; from cachet import Cache\n"
        "c = Cache.builder().memory(10).fallback(Cache.builder().sqlite(sys.argv[1])).build()\n"
        "with c:\n"
        "    c.insert(('user', 7), {'name': 'ada'})\n"
        "    c.insert('gone', 1)\n"
    )
    subprocess.run([sys.executable, "-c", script, db], check=True, timeout=60)
    cache = frontend.builder().memory(10).fallback(l2(frontend, None, db)).build()
    async with frontend.open(cache) as c:
        entry = await c.get(("user", 7.0))
        assert entry is not None and entry.value == {"name": "ada"}
        await c.invalidate("gone")
        await c.insert(("user", 8), "from the parent")
    check = (
        "import sys; from cachet import Cache\n"
        "c = Cache.builder().memory(10).fallback(Cache.builder().sqlite(sys.argv[1])).build()\n"
        "with c:\n"
        "    assert c.get('gone') is None\n"
        "    print(c.get(('user', 8)).value)\n"
    )
    out = subprocess.run([sys.executable, "-c", check, db], check=True, timeout=60,
                         capture_output=True, text=True).stdout
    assert out.strip() == "from the parent"


# -- update: read, change and write in one transaction ----------------------------------


def test_update_stores_keeps_and_deletes(db: str) -> None:
    seen: list[CacheEntry[bytes] | None] = []

    def returning(new):
        def change(stored):
            seen.append(stored)
            return new, "result"
        return change

    with SQLiteTier(db, clock=ManualClock(10.0)) as tier:
        assert tier.update(b"k", returning(KEEP)) == "result"
        assert tier.get(b"k") is None and tier.len() == 0
        assert tier.update(b"k", returning(None)) == "result"  # deleting nothing is fine
        assert tier.update(b"k", returning(CacheEntry(b"v", 5.0, 7.0))) == "result"
        assert tier.get(b"k") == CacheEntry(b"v", 5.0, 7.0)
        assert tier.update(b"k", returning(KEEP)) == "result"
        assert tier.get(b"k") == CacheEntry(b"v", 5.0, 7.0)
        assert tier.update(b"k", returning(None)) == "result"
        assert tier.get(b"k") is None and tier.len() == 0
        assert seen == [None, None, None, CacheEntry(b"v", 5.0, 7.0), CacheEntry(b"v", 5.0, 7.0)]


def test_update_sees_the_stored_entry_as_stored_even_expired(db: str) -> None:
    clock = ManualClock(1000.0)
    seen: list[CacheEntry[bytes] | None] = []
    with SQLiteTier(db, clock=clock, ttl=10.0) as tier:
        tier.insert(b"own", CacheEntry(b"\x00a", cached_at=999.5, ttl=2.0))
        tier.insert(b"tier", CacheEntry(b"b", cached_at=1000.0))
        tier.insert(b"none", CacheEntry(b"c", cached_at=None, ttl=None))
        clock.advance(100.0)  # both expired: get misses, update still hands them over
        assert tier.get(b"own") is None and tier.get(b"tier") is None
        for key in (b"own", b"tier", b"none"):
            assert tier.update(key, lambda e: (seen.append(e), (KEEP, None))[1]) is None
    assert seen == [CacheEntry(b"\x00a", 999.5, 2.0), CacheEntry(b"b", 1000.0, None), CacheEntry(b"c", None, None)]


def test_update_stores_expires_at_as_insert_does(db: str) -> None:
    entries = {b"own": CacheEntry(b"v", 100.0, 2.0), b"tier": CacheEntry(b"v", 100.0),
               b"never": CacheEntry(b"v", None)}
    with SQLiteTier(db, ttl=10.0, clock=ManualClock(100.0)) as tier:  # one sweep, on the first write
        for key, entry in entries.items():
            tier.insert(b"i-" + key, entry)
            tier.update(b"u-" + key, lambda e, entry=entry: (entry, None))
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT key, expires_at FROM cachet_v1").fetchall())
    conn.close()
    assert rows == {p + k: v for p in (b"i-", b"u-")
                    for k, v in {b"own": 102.0, b"tier": 110.0, b"never": float("-inf")}.items()}


class _Refused(Exception):
    pass


def test_update_error_in_change_propagates_and_writes_nothing(db: str) -> None:
    def refuse(stored):
        raise _Refused(stored)

    with SQLiteTier(db, clock=ManualClock(2.0)) as tier, SQLiteTier(db, timeout=0.2) as other:
        tier.insert(b"k", CacheEntry(b"v", 1.0, 2.0))
        with pytest.raises(_Refused) as info:
            tier.update(b"k", refuse)
        assert info.value.args == (CacheEntry(b"v", 1.0, 2.0),)
        assert tier.get(b"k") == CacheEntry(b"v", 1.0, 2.0)
        with pytest.raises(TypeError, match=r"serialize\(\)"):  # a str value: refused, rolled back
            tier.update(b"k", lambda e: (CacheEntry("str", 3.0), None))
        with pytest.raises(TypeError, match=r"serialize\(\)"):
            tier.update("k", lambda e: (KEEP, None))
        assert tier.get(b"k") == CacheEntry(b"v", 1.0, 2.0)
        # The transaction is over: another writer gets the file at once, and this tier goes on.
        other.insert(b"k2", CacheEntry(b"w", 1.0))
        assert tier.update(b"k", lambda e: (None, "gone")) == "gone"
        assert tier.get(b"k") is None and tier.get(b"k2") is not None


def test_update_on_the_memory_database(db: str) -> None:
    with SQLiteTier() as tier:
        assert tier.update(b"k", lambda e: (CacheEntry(b"1", 0.0), e)) is None
        assert tier.update(b"k", lambda e: (KEEP, e)) == CacheEntry(b"1", 0.0, None)
        with pytest.raises(_Refused):
            tier.update(b"k", lambda e: (_ for _ in ()).throw(_Refused()))
        assert tier.get(b"k") == CacheEntry(b"1", 0.0, None)  # and the lock was given back


@pytest.mark.parametrize(("column", "bad"), [("cached_at", "yesterday"), ("ttl", -1.0), ("ttl", "soon")])
def test_update_hands_a_damaged_row_to_change_as_none(db: str, column: str, bad: object) -> None:
    with SQLiteTier(db) as tier:
        tier.insert(b"k", CacheEntry(b"v", 1.0, 2.0))
    conn = sqlite3.connect(db)
    conn.execute(f"UPDATE cachet_v1 SET {column} = ? WHERE key = ?", (bad, b"k"))
    conn.commit()
    conn.close()
    seen: list[CacheEntry[bytes] | None] = []
    with SQLiteTier(db) as tier:
        tier.update(b"k", lambda e: (seen.append(e), (KEEP, None))[1])
        tier.update(b"k", lambda e: (seen.append(e), (CacheEntry(b"new", 3.0), None))[1])
        assert tier.get(b"k") == CacheEntry(b"new", 3.0, None)  # the damaged row was replaced
    assert seen == [None, None]


def test_update_locked_beyond_the_timeout_is_a_tier_error(db: str) -> None:
    calls: list[object] = []
    with SQLiteTier(db, timeout=0.2, name="l2") as tier:
        tier.insert(b"k", CacheEntry(b"v", cached_at=0.0))
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        try:
            t0 = time.monotonic()
            with pytest.raises(TierError, match="locked") as info:
                tier.update(b"k", lambda e: (calls.append(e), (None, None))[1])
            assert time.monotonic() - t0 < 3.0
            assert info.value.tier == "l2" and info.value.operation == "update"
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert calls == []
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert tier.update(b"k", lambda e: (None, e)) == CacheEntry(b"v", 0.0, None)  # and it recovers
        assert tier.get(b"k") is None


def _increment(stored: CacheEntry[bytes] | None) -> tuple[CacheEntry[bytes], int]:
    n = (0 if stored is None else int(stored.value)) + 1
    time.sleep(0)  # let another thread run between the read and the write
    return CacheEntry(str(n).encode(), 0.0), n


def _count(tier: SQLiteTier) -> int:
    entry = tier.get(b"n")
    assert entry is not None
    return int(entry.value)


@pytest.mark.parametrize("tiers", [1, 2])
def test_update_increments_from_threads_lose_nothing(db: str, tiers: int) -> None:
    """8 threads x 50 increments of one key, on one tier or on two tiers of one file."""
    errors: list[BaseException] = []
    results: list[int] = []
    barrier = threading.Barrier(8)
    shared = [SQLiteTier(db, timeout=30.0) for _ in range(tiers)]

    def work(tier: SQLiteTier) -> None:
        try:
            barrier.wait()
            results.extend(tier.update(b"n", _increment) for _ in range(50))
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(shared[t % tiers],)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert _count(shared[0]) == 400
        assert sorted(results) == list(range(1, 401))  # every update saw its own predecessor
    finally:
        for tier in shared:
            tier.close()


def _increment_in_a_process(path: str, n: int, barrier: Any) -> None:
    with SQLiteTier(path, timeout=30.0) as tier:
        tier.get(b"n")  # connect (and make the file) before the race starts
        barrier.wait()
        for _ in range(n):
            tier.update(b"n", _increment)


def test_update_increments_from_two_processes_lose_nothing(db: str) -> None:
    SQLiteTier(db).close()  # the schema exists before the workers start
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_increment_in_a_process, args=(db, 100, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with SQLiteTier(db) as tier:
        assert _count(tier) == 200


# -- through the cache, on every frontend ----------------------------------------------


async def test_sqlite_l2_through_the_cache(frontend, clock, db: str) -> None:
    cache = (frontend.builder(clock).memory(10).ttl(5)
             .fallback(l2(frontend, clock, db).ttl(60)).build())
    async with frontend.open(cache) as c:
        await c.insert(("u", 1), {"langs": ["py"]})
        clock.advance(6)  # L1 copy expired, L2 still fresh
        entry = await c.get(("u", 1))
        assert entry is not None and entry.value == {"langs": ["py"]}
        assert cache.stats()["tiers"]["l2"]["hits"] == 1
        clock.advance(55)  # 61 s after the insert: past the L2 ttl too
        assert await c.get(("u", 1)) is None
        assert await c.len() >= 0
        await c.insert("x", 1)
        await c.clear()
        assert await c.get("x") is None


async def test_l2_survives_a_restart(frontend, clock, db: str) -> None:
    first = frontend.builder(clock).memory(10).fallback(l2(frontend, clock, db)).build()
    async with frontend.open(first) as c:
        await c.insert("k", [1, 2, 3])
    calls: list[int] = []
    second = frontend.builder(clock).memory(10).fallback(l2(frontend, clock, db)).build()
    async with frontend.open(second) as c:
        entry = await c.get_or_insert("k", frontend.factory(lambda: calls.append(1) or [0]))
        assert entry.value == [1, 2, 3] and calls == []


async def test_cache_close_closes_the_sqlite_connections(frontend, clock, db: str) -> None:
    cache = frontend.builder(clock).memory(10).fallback(l2(frontend, clock, db)).build()
    tier = cache._core.levels[1].tier.inner
    assert isinstance(tier, SQLiteTier)
    async with frontend.open(cache) as c:
        await c.insert("k", 1)
    with pytest.raises(TierError, match="closed"):
        tier.get(b"k")


async def test_signed_sqlite_l2_refuses_rows_written_unsigned(frontend, clock, db: str) -> None:
    plain = frontend.builder(clock).memory(10).fallback(l2(frontend, clock, db)).build()
    async with frontend.open(plain) as c:
        await c.insert("k", "unsigned")
    signed = (frontend.builder(clock).memory(10).serialize(secret=b"s")
              .fallback(l2(frontend, clock, db)).build())
    async with frontend.open(signed) as c:
        assert await c.get("k") is None
        assert signed._core.levels[1].tier.decode_errors == 1
        await c.insert("k", "signed")
        await c.invalidate("other")
    async with frontend.open(frontend.builder(clock).memory(10).serialize(secret=b"s")
                             .fallback(l2(frontend, clock, db)).build()) as c:
        assert (await c.get("k")).value == "signed"


def test_storage_sqlite_tier_also_gets_the_default_codec(db: str) -> None:
    from cachet import Cache

    tier = SQLiteTier(db)  # the caller's tier: the cache does not close it, the caller does
    cache = Cache.builder().memory(10).fallback(tier).build()
    with tier, cache:
        cache.insert(("a", 1), {"v": 1})
    with SQLiteTier(db) as raw:
        assert raw.get(encode_key(("a", 1))) is not None


# -- the demo --------------------------------------------------------------------------


def test_demo_runs_and_its_l2_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "demo.db")

    def loads() -> int:
        out = subprocess.run([sys.executable, "-m", "cachet", "demo", "--path", path, "--clients", "4"],
                             check=True, timeout=60, capture_output=True, text=True).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("loads this run:"))
        assert "answers agree: True" in line
        assert "sync:" in out and "asyncio:" in out and "coalesced waits" in out and "refreshes" in out
        return int(line.split(":")[1].split()[0])

    assert loads() > 0
    assert loads() == 0


def test_demo_makes_the_directory_of_its_path_and_refuses_a_directory(tmp_path: Path) -> None:
    from cachet.__main__ import main

    path = tmp_path / "new" / "dir" / "demo.db"
    assert main(["demo", "--path", str(path), "--clients", "1"]) == 0 and path.exists()
    assert main(["demo", "--path", str(tmp_path)]) == 2  # a directory, not a file: said, not raised


@pytest.mark.parametrize("payload", [b"", b"\x02pc\x00\x00\x00\x00x", b"\x01pc\x00\x00\x00\x00\x80",
                                     b"\x01jc" + b"\x00" * 8])
async def test_bad_payload_planted_in_the_file_reads_as_a_miss(frontend, clock, db: str, payload: bytes) -> None:
    with SQLiteTier(db) as raw:
        raw.insert(encode_key("k"), CacheEntry(payload, cached_at=clock.now()))
    seen: list[bytes] = []
    cache = frontend.builder(clock).memory(10).fallback(l2(frontend, clock, db)).build()
    cache._core.levels[1].tier.on_decode_error = lambda key, exc: seen.append(key)
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
        assert seen == [b"k"]
        assert (await c.get_or_insert("k", frontend.factory(lambda: "fresh"))).value == "fresh"


# -- unsigned pickles from a file others can write --------------------------------------


@pytest.mark.parametrize("frontend_builder", ["sync", "aio"])
@pytest.mark.parametrize("where", ["folder", "file"])
def test_build_warns_when_others_can_write_an_unsigned_pickle_store(tmp_path, frontend_builder, where) -> None:
    import os

    from cachet import AsyncCache, Cache
    from cachet.serialize import InsecureStoreWarning, JsonCodec

    builder = Cache.builder if frontend_builder == "sync" else AsyncCache.builder
    db = tmp_path / "shared" / "cache.db"
    db.parent.mkdir()
    if where == "folder":
        os.chmod(db.parent, 0o777)
    else:
        db.touch()
        os.chmod(db, 0o666)
    with pytest.warns(InsecureStoreWarning, match="writable by other users") as record:
        builder().memory(10).fallback(builder().sqlite(str(db))).build()
    assert record[0].filename == __file__  # it points at the user's build()
    # Signed or JSON payloads are not code: no warning (warnings are errors in this suite).
    builder().memory(10).serialize(secret=b"s").fallback(builder().sqlite(str(db))).build()
    builder().memory(10).serialize(JsonCodec()).fallback(builder().sqlite(str(db))).build()


def test_no_warning_for_a_store_only_its_owner_can_write(tmp_path) -> None:
    from cachet import Cache

    Cache.builder().sqlite(str(tmp_path / "mine.db")).build()  # tmp_path is 0o700
    Cache.builder().sqlite(":memory:").build()


@pytest.mark.parametrize(("cull", "left"), [(1 / 3, 29), (1.0, 19)])
def test_cull_evicts_that_fraction_of_max_entries_on_the_write_past_it(tmp_path, cull, left) -> None:
    tier = SQLiteTier(tmp_path / "cull.db", max_entries=30, cull=cull)
    for i in range(1, 50):
        tier.insert(b"k%d" % i, CacheEntry(b"v", cached_at=0.0))
    assert tier.len() == left  # as Django's LocMemCache and DatabaseCache count
    assert [i for i in range(1, 50) if tier.get(b"k%d" % i) is not None] == list(range(50 - left, 50))
    tier.close()


def test_cull_needs_max_entries_and_a_fraction(tmp_path) -> None:
    with pytest.raises(ValueError, match="cull must be"):
        SQLiteTier(tmp_path / "c.db", cull=0.5)
    with pytest.raises(ValueError, match="cull must be"):
        SQLiteTier(tmp_path / "c.db", max_entries=10, cull=0)
