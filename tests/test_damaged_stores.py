"""Stores damaged by hand, read through a cache on sync, asyncio and trio: every damaged
row or value is a miss, counted in the tier's ``decode_errors``, and the next load
replaces it (never an error that sticks, never an entry that cannot expire)."""

from __future__ import annotations

import sqlite3
import struct
import uuid
from typing import Any

import pytest

from cachet import CacheEntry

pytestmark = pytest.mark.anyio

DAMAGE = {  # column -> (key, the value written over it)
    "cached_at": [("at-text", "yesterday"), ("at-blob", b"\x00\x01"), ("at-inf", float("inf")),
                  ("at-minus-inf", float("-inf"))],
    "ttl": [("ttl-text", "soon"), ("ttl-blob", b"\x00"), ("ttl-zero", 0.0), ("ttl-inf", float("inf"))],
}
KEYS = [key for rows in DAMAGE.values() for key, _ in rows]


def over_sqlite(frontend: Any, clock: Any, db: str) -> Any:
    below = frontend.builder(clock).name("l2").sqlite(db)
    return frontend.builder(clock).name("l1").memory(100).fallback(below).build()


def damage_sqlite_rows(db: str) -> None:
    conn = sqlite3.connect(db)
    for column, rows in DAMAGE.items():
        for key, bad in rows:
            conn.execute(f"UPDATE cachet_v1 SET {column} = ? WHERE key = ?", (bad, key.encode()))
    conn.commit()
    conn.close()


async def test_damaged_sqlite_rows_read_as_counted_misses_and_are_replaced(frontend, clock, tmp_path) -> None:
    db = str(tmp_path / "cache.db")
    async with frontend.open(over_sqlite(frontend, clock, db)) as c:
        for key in KEYS:
            await c.insert(key, CacheEntry(f"old {key}", None, 3600.0))
    damage_sqlite_rows(db)

    async with frontend.open(over_sqlite(frontend, clock, db)) as c:
        for key in KEYS:
            assert await c.get(key) is None
        assert c.stats()["tiers"]["l2"]["decode_errors"] == len(KEYS)
        for key in KEYS:
            got = await c.get_or_insert(key, frontend.factory(lambda key=key: f"new {key}"))
            assert got.value == f"new {key}"
    async with frontend.open(over_sqlite(frontend, clock, db)) as c:  # the rows were replaced
        for key in KEYS:
            assert (await c.get(key)).value == f"new {key}"
        assert c.stats()["tiers"]["l2"]["decode_errors"] == 0


async def test_a_bulk_read_counts_each_damaged_sqlite_row_and_serves_the_rest(
        frontend, clock, tmp_path, monkeypatch) -> None:
    from cachet.tiers import SQLiteTier

    db = str(tmp_path / "cache.db")
    async with frontend.open(over_sqlite(frontend, clock, db)) as c:
        await c.insert_many({key: CacheEntry(f"old {key}", None, 3600.0) for key in [*KEYS, "fine"]})
    damage_sqlite_rows(db)

    def one_key(*args: Any) -> Any:
        raise AssertionError("a key read on its own: the bulk read was not used")

    monkeypatch.setattr(SQLiteTier, "get_row", one_key)  # only get_rows may read
    async with frontend.open(over_sqlite(frontend, clock, db)) as c:
        found = await c.get_many([*KEYS, "fine"])
        assert {k: e.value for k, e in found.items()} == {"fine": "old fine"}
        assert c.stats()["tiers"]["l2"]["decode_errors"] == len(KEYS)


HEADER = struct.Struct("<BBdd")  # the Redis tier's record header: format, flags, cached_at, ttl


@pytest.mark.redis
async def test_damaged_redis_values_read_as_counted_misses_and_are_replaced(frontend, clock, server) -> None:
    redis = pytest.importorskip("redis")
    ns = f"t-{uuid.uuid4().hex[:12]}"

    def cache() -> Any:
        below = frontend.builder(clock).name("l2").redis(server.url, namespace=ns)
        return frontend.builder(clock).name("l1").memory(100).serialize(secret=b"s").fallback(below).build()

    async with frontend.open(cache()) as c:
        await c.insert("good", "v")
    raw = redis.Redis.from_url(server.url)
    try:
        good = raw.get(f"{ns}:good".encode())
        body = good[HEADER.size:]
        damaged = {
            "garbage": b"not a record", "empty": b"", "truncated": good[:7],
            "flags": good[:1] + b"\x7f" + good[2:],
            "nan-at": HEADER.pack(good[0], 3, float("nan"), 60.0) + body,
            "inf-at": HEADER.pack(good[0], 3, float("inf"), 60.0) + body,
            "nan-ttl": HEADER.pack(good[0], 3, clock.now(), float("nan")) + body,
            "flipped-byte": good[:HEADER.size] + body[:-1] + bytes([body[-1] ^ 1]),  # fails the signature
        }
        for key, value in damaged.items():
            raw.set(f"{ns}:{key}".encode(), value)
        async with frontend.open(cache()) as c:
            for key in damaged:
                assert await c.get(key) is None, key
            assert c.stats()["tiers"]["l2"]["decode_errors"] == len(damaged)
            for key in damaged:
                assert (await c.get_or_insert(key, frontend.factory(lambda: "new"))).value == "new"
        async with frontend.open(cache()) as c:
            for key in damaged:
                assert (await c.get(key)).value == "new"
    finally:
        raw.close()


# -- moved and re-stamped records ------------------------------------------------------


@pytest.mark.parametrize("secret", [None, b"s"])
async def test_moved_or_restamped_sqlite_rows_read_as_misses(frontend, clock, tmp_path, secret) -> None:
    # A payload's check covers its namespace, key and stamps: a row copied to another
    # key or namespace, or given another ttl, is a counted miss, then replaced.
    db = str(tmp_path / "cache.db")

    def cache(namespace: str = "cachet") -> Any:
        below = frontend.builder(clock).name("l2").sqlite(db, namespace=namespace)
        top = frontend.builder(clock).name("l1").memory(100)
        top = top.serialize(secret=secret) if secret is not None else top
        return top.fallback(below).build()

    async with frontend.open(cache()) as c:
        await c.insert("src", CacheEntry("the src value", None, 3600.0))
    conn = sqlite3.connect(db)
    copy = ("INSERT INTO cachet_v1 (namespace, key, value, cached_at, ttl, expires_at) "
            "SELECT ?, ?, value, cached_at, ttl, expires_at FROM cachet_v1 WHERE namespace = 'cachet' AND key = ?")
    conn.execute(copy, ("cachet", b"moved", b"src"))
    conn.execute(copy, ("other", b"src", b"src"))
    conn.execute(copy, ("cachet", b"restamped", b"src"))
    conn.execute("UPDATE cachet_v1 SET ttl = 1e9, expires_at = 1e18 WHERE key = ?", (b"restamped",))
    conn.commit()
    conn.close()
    async with frontend.open(cache()) as c:
        assert (await c.get("src")).value == "the src value"  # the original still reads
        assert await c.get("moved") is None and await c.get("restamped") is None
        assert c.stats()["tiers"]["l2"]["decode_errors"] == 2
        assert (await c.get_or_insert("moved", frontend.factory(lambda: "new"))).value == "new"
    async with frontend.open(cache("other")) as c:
        assert await c.get("src") is None
        assert c.stats()["tiers"]["l2"]["decode_errors"] == 1
    async with frontend.open(cache()) as c:
        assert (await c.get("moved")).value == "new"  # the load replaced the moved row


@pytest.mark.redis
async def test_moved_or_restamped_redis_records_read_as_misses(frontend, clock, server) -> None:
    redis = pytest.importorskip("redis")
    ns, other = f"t-{uuid.uuid4().hex[:12]}", f"u-{uuid.uuid4().hex[:12]}"

    def cache(namespace: str) -> Any:
        below = frontend.builder(clock).name("l2").redis(server.url, namespace=namespace)
        return frontend.builder(clock).name("l1").memory(100).serialize(secret=b"s").fallback(below).build()

    async with frontend.open(cache(ns)) as c:
        await c.insert("src", CacheEntry("the src value", None, 60.0))
    raw = redis.Redis.from_url(server.url)
    try:
        good = raw.get(f"{ns}:src".encode())
        fmt, flags, at, _ = HEADER.unpack_from(good)
        raw.set(f"{ns}:moved".encode(), good)
        raw.set(f"{other}:src".encode(), good)
        raw.set(f"{ns}:long-ttl".encode(), HEADER.pack(fmt, flags, at, 1e9) + good[HEADER.size:])
        raw.set(f"{ns}:older".encode(), HEADER.pack(fmt, flags, at - 30, 60.0) + good[HEADER.size:])
        async with frontend.open(cache(ns)) as c:
            assert (await c.get("src")).value == "the src value"
            for key in ("moved", "long-ttl", "older"):
                assert await c.get(key) is None, key
            assert c.stats()["tiers"]["l2"]["decode_errors"] == 3
            assert (await c.get_or_insert("moved", frontend.factory(lambda: "new"))).value == "new"
        async with frontend.open(cache(other)) as c:
            assert await c.get("src") is None
            assert c.stats()["tiers"]["l2"]["decode_errors"] == 1
    finally:
        raw.close()
