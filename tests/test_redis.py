"""The Redis tier against real ``redis-server`` processes, over sync, asyncio and trio.

Each module-level server is started on a free loopback port and stopped by PID; the
outage tests get their own server so that killing it disturbs nobody else. Tests use
a fresh namespace each, so they never see each other's keys.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cachet import CacheEntry, InsertPolicy, TierError, UnsupportedError
from cachet._core.tier import KEEP
from cachet.tiers import RedisTier

from .frontends import SyncFacade
from .redis_server import RedisCluster, RedisServer, require_redis_server

redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def raw(server: RedisServer) -> Iterator[Any]:
    """A plain redis-py client on the shared server, to look behind the tier's back."""
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


SECRET = b"test secret"


def two_tier(frontend: Any, clock: Any, url: str, ns: str, **redis_kw: Any) -> Any:
    """Memory L1 over a signed serialization boundary over Redis L2."""
    below = frontend.builder(clock).redis(url, namespace=ns, **redis_kw)
    return frontend.builder(clock).memory(100).serialize(secret=SECRET).fallback(below).build()


# -- round trips ---------------------------------------------------------------------


async def test_round_trip_and_promotion(frontend, clock, server, raw, ns) -> None:
    cache = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache) as c:
        value = {"id": 7, "tags": ("a", "b"), "blob": b"\x00\xff", "score": 1.5, "none": None}
        await c.insert("k", value)
        await c.insert(("user", 42), [1, 2, 3])
        stored = raw.get(f"{ns}:k".encode())  # str keys read as themselves in Redis
        assert stored is not None and stored[0] == 0xCA
        assert (await c.get("k")).value == value

    # A second cache over the same namespace starts with an empty L1: the hit comes
    # from Redis, keeps its stamp, and is promoted into L1.
    cache2 = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache2) as c:
        entry = await c.get("k")
        assert entry == CacheEntry(value, clock.now(), None)
        assert (await c.get(("user", 42))).value == [1, 2, 3]
        raw.delete(f"{ns}:k".encode())
        assert (await c.get("k")).value == value  # promoted: served by L1 now


async def test_miss_invalidate_and_entry_ttl(frontend, clock, server, ns) -> None:
    cache = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache) as c:
        assert await c.get("absent") is None
        await c.insert("k", CacheEntry.expires_after(b"v", 10))
        await c.invalidate("k")
        assert await c.get("k") is None
        await c.insert("k", CacheEntry.expires_after(b"v", 10))
        clock.advance(10)
        assert (await c.get("k")).value == b"v"  # equal is still fresh
        clock.advance(0.001)
        assert await c.get("k") is None


async def test_server_side_expiry_from_entry_ttl(frontend, clock, server, raw, ns) -> None:
    cache = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache) as c:
        await c.insert("short", CacheEntry.expires_after(b"v", 30))
        await c.insert("forever", b"v")
    pttl = raw.pttl(f"{ns}:short".encode())
    assert 30_000 < pttl <= 31_001  # the ttl, plus the 1 s default slack
    assert raw.pttl(f"{ns}:forever".encode()) == -1  # no ttl: no expiry


def test_server_side_expiry_never_before_the_core_would(server, raw, ns, clock) -> None:
    tier = RedisTier.from_url(server.url, namespace=ns, expiry_slack=0)
    try:
        tier.bind_cache(ttl=60, clock=clock)
        tier.insert(b"tier-ttl", CacheEntry(b"v", clock.now()))
        assert 59_000 < raw.pttl(f"{ns}:tier-ttl".encode()) <= 60_001
        # With the cache's clock, the expiry is what remains of the entry's life.
        tier.insert(b"aged", CacheEntry(b"v", clock.now() - 10, 30.0))
        assert 19_000 < raw.pttl(f"{ns}:aged".encode()) <= 20_001
        # Already dead by the cache's clock: Redis may drop it at once.
        tier.insert(b"dead", CacheEntry(b"v", clock.now() - 100, 30.0))
        assert raw.pttl(f"{ns}:dead".encode()) <= 1
    finally:
        tier.close()


def test_records_keep_stamp_and_ttl_exactly(server, ns) -> None:
    tier = RedisTier.from_url(server.url, namespace=ns)
    try:
        for entry in (CacheEntry(b""), CacheEntry(b"\x00" * 1000, 1.5),
                      CacheEntry(b"x", 1_700_000_000.123456, 0.25)):
            tier.insert(b"k", entry)
            assert tier.get(b"k") == entry
        with pytest.raises(TypeError, match="serialize"):
            tier.insert(b"k", CacheEntry("not bytes"))  # type: ignore[arg-type]
    finally:
        tier.close()


def test_foreign_values_under_our_keys_are_misses(server, raw, ns) -> None:
    tier = RedisTier.from_url(server.url, namespace=ns)
    try:
        for junk in (b"", b"hello", b"\xca" + b"\x00" * 5, b"\xca\x07" + b"\x00" * 16 + b"v"):
            raw.set(f"{ns}:k".encode(), junk)
            assert tier.get(b"k") is None
        # A corrupt ttl (NaN) is a miss, not an exception.
        import struct

        raw.set(f"{ns}:k".encode(), struct.pack("<BBdd", 0xCA, 3, 1.0, float("nan")) + b"v")
        assert tier.get(b"k") is None
    finally:
        tier.close()


# -- namespaces and clear ------------------------------------------------------------


async def test_clear_removes_only_this_namespace(frontend, clock, server, raw, ns) -> None:
    neighbours = {f"{ns}x:k": b"1", f"other-{ns}:k": b"3", ns: b"4"}
    for k, v in neighbours.items():
        raw.set(k, v)
    cache = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache) as c:
        for i in range(2500):  # several SCAN / UNLINK batches
            await c.insert(str(i).encode(), b"v")
        assert await c.len() == 100  # the memory tier counts (primary)
        await c.clear()
        assert await c.get(b"7") is None
    assert list(raw.scan_iter(match=f"{ns}:*")) == []
    for k, v in neighbours.items():
        assert raw.get(k) == v
    raw.delete(*neighbours)


async def test_glob_characters_in_namespace_are_literal(frontend, clock, server, raw) -> None:
    ns = f"g*[{uuid.uuid4().hex[:6]}]?"
    victim = ns.replace("*", "a").replace("?", "b").replace("[", "").replace("]", "")
    raw.set(f"{victim}:k", b"keep")
    cache = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache) as c:
        await c.insert(b"k", b"v")
        await c.clear()
    assert raw.get(f"{ns}:k") is None
    assert raw.get(f"{victim}:k") == b"keep"
    raw.delete(f"{victim}:k")


async def test_len_counts_this_namespace(anyio_backend, server, raw, ns) -> None:
    raw.set(f"{ns}-not-mine:k", b"x")
    sync_tier = RedisTier.from_url(server.url, namespace=ns)
    async_tier = RedisTier.from_url(server.url, namespace=ns, asynchronous=True)
    try:
        for i in range(1234):
            sync_tier.insert(str(i).encode(), CacheEntry(b"v", 1.0))
        assert sync_tier.len() == 1234
        assert await async_tier.len() == 1234
        await async_tier.clear()
        assert await async_tier.len() == 0 and sync_tier.len() == 0
    finally:
        sync_tier.close()
        await async_tier.aclose()
    raw.delete(f"{ns}-not-mine:k")


# -- outages and timeouts ------------------------------------------------------------


async def test_outage_then_recovery(frontend, clock, own_server, ns) -> None:
    cache = two_tier(frontend, clock, own_server.url, ns)
    async with frontend.open(cache) as c:
        await c.insert("hot", b"1")
        assert (await c.get("hot")).value == b"1"

        own_server.kill()
        assert (await c.get("hot")).value == b"1"  # L1 keeps serving its hits
        with pytest.raises(TierError) as info:
            await c.get("cold")  # the miss reaches Redis: an error in the last tier is raised
        assert info.value.tier == "redis"
        assert isinstance(info.value.__cause__, (redis.exceptions.ConnectionError, TierError))
        root = info.value.__cause__
        while isinstance(root, TierError):
            root = root.__cause__
        assert isinstance(root, redis.exceptions.ConnectionError)

        calls: list[str] = []
        with pytest.raises(TierError):  # the lookup fails: the factory is not called
            await c.get_or_insert("cold", frontend.factory(lambda: calls.append("x") or "y"))
        assert calls == []

        own_server.restart()  # same port, empty (no persistence)
        assert await c.get("cold") is None  # the same cache reconnects
        await c.insert("cold", b"2")
        assert (await c.get("cold")).value == b"2"
        assert (await c.get("hot")).value == b"1"


class SilentServer:
    """Accepts connections and never answers: every command times out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


async def test_timeout_is_a_tier_error_within_the_timeout(frontend, clock, silent, ns) -> None:
    url = f"redis://127.0.0.1:{silent.port}/0"
    cache = two_tier(frontend, clock, url, ns, socket_timeout=0.2)
    async with frontend.open(cache) as c:
        t0 = time.monotonic()
        with pytest.raises(TierError) as info:
            await c.get(b"k")
        elapsed = time.monotonic() - t0
    assert info.value.tier == "redis" and info.value.__cause__ is not None
    # One timeout, no retry on timeouts: well under redis-py's default retry schedule.
    assert elapsed < 2.0


def test_tier_errors_name_the_tier_and_chain_the_cause(own_server, ns) -> None:
    tier = RedisTier.from_url(own_server.url, namespace=ns, name="l2")
    try:
        own_server.kill()
        for op, args in (("get", (b"k",)), ("insert", (b"k", CacheEntry(b"v", 1.0))),
                         ("invalidate", (b"k",)), ("clear", ()), ("len", ()),
                         ("update", (b"k", lambda stored: (None, None)))):
            with pytest.raises(TierError) as info:
                getattr(tier, op)(*args)
            assert info.value.tier == "l2" and info.value.operation == op
            assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    finally:
        tier.close()


# -- clients and flavours ------------------------------------------------------------


def test_flavour_follows_the_client(server) -> None:
    from cachet.tiers._redis import AsyncRedisTier, SyncRedisTier

    sync_client = redis.Redis.from_url(server.url)
    async_client = redis.asyncio.Redis.from_url(server.url)
    try:
        assert isinstance(RedisTier(sync_client), SyncRedisTier)
        tier = RedisTier(async_client, namespace="x")
        assert isinstance(tier, AsyncRedisTier) and isinstance(tier, RedisTier)
        assert RedisTier.network is True
        with pytest.raises(ValueError, match="namespace"):
            RedisTier(sync_client, namespace="")
    finally:
        sync_client.close()


async def test_callers_clients_stay_open(anyio_backend, server, ns) -> None:
    sync_client = redis.Redis.from_url(server.url)
    tier = RedisTier(sync_client, namespace=ns)
    tier.insert(b"k", CacheEntry(b"v", 1.0))
    tier.close()
    assert sync_client.ping()  # still usable: the tier did not create it
    if anyio_backend == "asyncio":
        aclient = redis.asyncio.Redis.from_url(server.url)
        atier = RedisTier(aclient, namespace=ns)
        assert (await atier.get(b"k")).value == b"v"
        await atier.aclose()
        assert await aclient.ping()
        await aclient.aclose()
    else:
        # redis.asyncio does not run on trio: a tier over it needs a blocking twin.
        aclient = redis.asyncio.Redis.from_url(server.url)
        atier = RedisTier(aclient, namespace=ns)
        with pytest.raises(TierError, match="sync_client"):
            await atier.get(b"k")
        atier = RedisTier(aclient, namespace=ns, sync_client=sync_client)
        assert (await atier.get(b"k")).value == b"v"
        await atier.aclose()
        assert sync_client.ping()
    sync_client.delete(f"{ns}:k")
    sync_client.close()


# -- cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    require_redis_server()
    with RedisCluster() as c:
        yield c


async def test_cluster_round_trip_and_clear(frontend, clock, cluster, ns) -> None:
    cache = two_tier(frontend, clock, cluster.url, ns, cluster=True)
    async with frontend.open(cache) as c:
        keys = [f"k{i}".encode() for i in range(300)]  # spread over every node's slots
        for k in keys:
            await c.insert(k, k * 2)
        assert (await c.get(keys[5])).value == keys[5] * 2
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    try:
        assert len(list(client.scan_iter(match=f"{ns}:*"))) == 300
        client.set(f"{ns}x:other", b"keep")
        cache = two_tier(frontend, clock, cluster.url, ns, cluster=True)
        async with frontend.open(cache) as c:
            assert (await c.get(keys[7])).value == keys[7] * 2  # from Redis, fresh L1
            await c.clear()
            assert await c.get(keys[7]) is None
        assert list(client.scan_iter(match=f"{ns}:*")) == []
        assert client.get(f"{ns}x:other") == b"keep"
        client.delete(f"{ns}x:other")
    finally:
        client.close()


def test_insert_policy_never_on_l1_always_reads_redis(server, raw, ns, clock) -> None:
    import cachet.sync

    below = cachet.sync.Cache.builder(clock).redis(server.url, namespace=ns)
    cache = (cachet.sync.Cache.builder(clock).memory(10).insert_policy(InsertPolicy.never())
             .serialize(secret=SECRET).fallback(below).build())
    with cache:
        cache.insert("k", "v")
        assert cache.get("k").value == "v"
        assert raw.delete(f"{ns}:k") == 1
        assert cache.get("k") is None  # nothing was promoted


# -- the security default ------------------------------------------------------------


class Touch:
    """Unpickling this creates a file: proof that a payload was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def planted_payloads(path: str, ns: str) -> dict[str, bytes]:
    """What an attacker who can write to Redis might put under the cache's key ``k``
    (knowing the format: the frames' checks cover the namespace, key and stamps)."""
    import pickle

    from cachet.serialize import PickleCodec, Serializer, record_context
    from cachet.tiers._redis import encode_record

    bare = pickle.dumps(Touch(path))
    context = record_context(ns.encode(), b"k", 1.0, None)
    unsigned_frame = Serializer(PickleCodec()).dumps(Touch(path), context)
    other_secret = Serializer(PickleCodec(), secret=b"another secret").dumps(Touch(path), context)
    return {
        "bare pickle": bare,
        "record around a bare pickle": encode_record(CacheEntry(bare, 1.0)),
        "record around an unsigned frame": encode_record(CacheEntry(unsigned_frame, 1.0)),
        "record signed with another secret": encode_record(CacheEntry(other_secret, 1.0)),
    }


async def test_planted_pickle_is_not_unpickled(frontend, clock, server, raw, ns, tmp_path) -> None:
    marker = tmp_path / "pwned"
    cache = two_tier(frontend, clock, server.url, ns)
    async with frontend.open(cache) as c:
        for what, payload in planted_payloads(str(marker), ns).items():
            raw.set(f"{ns}:k", payload)
            assert await c.get("k") is None, what  # a soft failure: a miss
            assert not marker.exists(), f"{what} was unpickled"
        await c.insert("k", "fine")  # and the key still works
        assert (await c.get("k")).value == "fine"


async def test_planted_pickle_would_run_if_unsigned_were_allowed(
    frontend, clock, server, raw, ns, tmp_path
) -> None:
    # The control for the test above: the same payload does run under the opt-in.
    marker = tmp_path / "pwned"
    below = frontend.builder(clock).redis(server.url, namespace=ns)
    cache = (frontend.builder(clock).memory(10).serialize(allow_unsigned_pickle=True)
             .fallback(below).build())
    async with frontend.open(cache) as c:
        raw.set(f"{ns}:k", planted_payloads(str(marker), ns)["record around an unsigned frame"])
        await c.get("k")
    assert marker.exists()


def test_builder_refuses_unsigned_pickle_over_redis(frontend, server, ns) -> None:
    from cachet.serialize import JsonCodec

    def stack(**serialize: Any) -> Any:
        below = frontend.builder().redis(server.url, namespace=ns)
        return frontend.builder().memory(10).serialize(**serialize).fallback(below)

    with pytest.raises(ValueError, match="secret"):
        stack().build()
    with pytest.raises(ValueError, match="allow_unsigned_pickle"):
        frontend.builder().redis(server.url, namespace=ns).build()  # implicit codec: pickle
    for ok in (stack(secret="s"), stack(allow_unsigned_pickle=True), stack(codec=JsonCodec())):
        cache = ok.build()
        if frontend.is_sync:
            cache.close()


async def test_builder_ttl_and_name_reach_the_tier(frontend, clock, server, raw, ns) -> None:
    below = frontend.builder(clock).redis(server.url, namespace=ns).name("l2").ttl(120)
    cache = (frontend.builder(clock).memory(10).ttl(60).serialize(secret=SECRET)
             .fallback(below).build())
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        assert 120_000 < raw.pttl(f"{ns}:k") <= 121_001
        clock.advance(100)
        assert (await c.get("k")).value == "v"  # L1 expired, Redis still fresh at 100 s
        clock.advance(20.001)
        assert await c.get("k") is None  # the core judges expiry, Redis only frees memory
        assert raw.exists(f"{ns}:k")


async def test_many_concurrent_callers(frontend, clock, server, ns) -> None:
    """Tasks (aio: the asyncio pool, or trio worker threads) or threads (sync) at once."""
    import anyio

    # A generous timeout: this is about correctness under concurrency, and a loaded CI
    # machine may take more than the default second to open 100 connections.
    cache = two_tier(frontend, clock, server.url, ns, socket_timeout=10.0)
    async with frontend.open(cache) as c:
        async def one(i: int) -> None:
            await c.insert(f"k{i}", i)
            await c.invalidate(f"k{i}")
            await c.insert(f"k{i}", i * 2)

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
    cache2 = two_tier(frontend, clock, server.url, ns, socket_timeout=10.0)
    async with frontend.open(cache2) as c:
        results: dict[int, Any] = {}

        async def read(i: int) -> None:
            results[i] = (await c.get(f"k{i}")).value

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(read, i)
        assert results == {i: i * 2 for i in range(100)}


async def test_blocking_client_under_any_frontend(frontend, clock, server, ns) -> None:
    """A SyncRedisTier from the caller's client: aio runs it in worker threads."""
    client = redis.Redis.from_url(server.url)
    tier = RedisTier(client, namespace=ns)
    below = frontend.builder(clock).storage(tier)
    cache = frontend.builder(clock).memory(10).serialize(secret=SECRET).fallback(below).build()
    try:
        async with frontend.open(cache) as c:
            await c.insert("k", ("a", 1))
            await c.invalidate("nothing")
            assert client.exists(f"{ns}:k")
            await c.clear()
            assert not client.exists(f"{ns}:k")
            await c.insert("k", ("a", 2))
        assert client.ping()  # the cache did not close the caller's client
        assert RedisTier(client, namespace=ns).get(b"k") is not None
    finally:
        client.delete(f"{ns}:k")
        client.close()


def test_a_redis_tier_signed_by_its_own_builder_builds(server: RedisServer, raw: Any) -> None:
    # .serialize() on the builder that holds the byte tier itself applies to that tier.
    from cachet import Cache

    cache = Cache.builder().redis(server.url, namespace="own-builder").serialize(secret=b"s").build()
    try:
        cache.insert("k", {"v": 1})
        assert cache.get("k").value == {"v": 1}
        assert raw.get("own-builder:k")  # stored, signed, under its namespace
    finally:
        cache.close()


def test_a_record_reads_back_as_written_and_anything_else_as_a_decode_error() -> None:
    """``decode_row`` (what ``get`` and the boundary read) gives back every record
    ``encode_record`` writes, and raises ``DecodeError`` for the ones this tier did not
    write or that are corrupt (the boundary counts each and reads a miss)."""
    import struct

    from cachet.serialize import DecodeError
    from cachet.tiers._redis import decode_row, encode_record

    entries = [CacheEntry(b"v", at, ttl) for at in (None, 1_000.5) for ttl in (None, 30.0)]
    for entry in entries:
        assert decode_row(encode_record(entry)) == (entry.value, entry.cached_at, entry.ttl)
    good = encode_record(entries[-1])
    bad = [b"", b"x", good[:5], b"\x09" + good[1:],  # short, foreign, truncated, other format
           good[:1] + b"\x7f" + good[2:]]  # unknown flags
    header = struct.Struct("<BBdd")
    stamps = [(1.0, 0.0), (1.0, -1.0), (1.0, float("nan")), (1.0, float("inf")),  # ttl
              (float("nan"), 30.0), (float("inf"), 30.0), (float("-inf"), 30.0)]  # cached_at
    for at, ttl in stamps:
        body = bytearray(good)
        body[:header.size] = header.pack(body[0], body[1], at, ttl)
        bad.append(bytes(body))
    for raw in bad:
        with pytest.raises(DecodeError):
            decode_row(raw)


# -- direct reads (tiers/_redis_direct.py) ---------------------------------------------


def test_plain_clients_read_on_their_connections_others_through_the_client(server) -> None:
    from cachet.tiers._redis_direct import direct_get

    plain = redis.Redis.from_url(server.url)
    others = [redis.Redis.from_url(server.url, single_connection_client=True),
              redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(server.url)),
              type("MyRedis", (redis.Redis,), {})(port=server.port)]
    try:
        assert direct_get(plain) is not None
        assert [direct_get(c) for c in others] == [None, None, None]
        tier = RedisTier(plain)
        assert tier._direct is not None
    finally:
        for c in [plain, *others]:
            c.close()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_client_that_decodes_replies_is_refused(server, asynchronous) -> None:
    cls = redis.asyncio.Redis if asynchronous else redis.Redis
    client = cls.from_url(server.url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisTier(client)


def test_an_interrupted_read_leaves_no_stray_reply(server, raw, ns) -> None:
    tier = RedisTier(redis.Redis.from_url(server.url), namespace=ns)
    try:
        tier.insert(b"a", CacheEntry(b"A", 1.0))
        tier.insert(b"b", CacheEntry(b"B", 1.0))
        assert tier.get(b"a").value == b"A"
        (conn,) = tier._direct.idle
        real = conn.read_response
        conn.read_response = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):  # sent GET a, never read its reply
            tier.get(b"a")
        conn.read_response = real
        # The reply to "GET a" went with the socket: b reads b, and a reads a.
        assert tier.get(b"b").value == b"B" and tier.get(b"a").value == b"A"
    finally:
        tier._client.close()


def test_a_forked_child_reads_on_its_own_connections(server, ns) -> None:
    import os

    tier = RedisTier(redis.Redis.from_url(server.url), namespace=ns)
    try:
        for k in (b"parent", b"child"):
            tier.insert(k, CacheEntry(k, 1.0))
        assert tier.get(b"parent") is not None  # a connection now idles in the parent
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ok = not tier._direct.idle and tier._direct.held == 0  # nothing of the parent's
            ok = ok and all(tier.get(b"child").value == b"child" for _ in range(300))
            os._exit(0 if ok else 1)
        ok = all(tier.get(b"parent").value == b"parent" for _ in range(300))
        _, status = os.waitpid(pid, 0)
        assert ok and os.waitstatus_to_exitcode(status) == 0
    finally:
        tier._client.close()


def test_close_hands_the_connections_back_and_reads_go_on(server, raw, ns) -> None:
    client = redis.Redis.from_url(server.url)
    tier = RedisTier(client, namespace=ns)
    try:
        tier.insert(b"k", CacheEntry(b"v", 1.0))
        assert tier.get(b"k").value == b"v"
        assert len(client.connection_pool._in_use_connections) == 1  # held for direct reads
        tier.close()
        assert len(client.connection_pool._in_use_connections) == 0
        assert tier.get(b"k").value == b"v"  # the caller's client still works, through get
    finally:
        client.close()


def test_a_timeout_on_a_direct_read_is_not_retried(own_server, ns) -> None:
    import os
    import signal

    tier = RedisTier.from_url(own_server.url, namespace=ns, socket_timeout=0.5)
    try:
        assert tier.get(b"k") is None  # connected: the next GET times out reading its reply
        os.kill(own_server.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(TierError) as info:
                tier.get(b"k")
            elapsed = time.monotonic() - t0
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
        assert isinstance(info.value.__cause__, redis.exceptions.TimeoutError)
        assert elapsed < 0.9  # one timeout; a retry through the client would take another 0.5 s
        assert tier.get(b"k") is None  # and the tier reads again once the server answers
    finally:
        tier.close()


def test_asyncio_plain_clients_read_on_their_connections(server) -> None:
    import asyncio

    asyncio.run(_asyncio_plain_clients(server))


async def _asyncio_plain_clients(server: RedisServer) -> None:
    from cachet.tiers._redis_direct import direct_get_async

    plain = redis.asyncio.Redis.from_url(server.url)
    single = redis.asyncio.Redis.from_url(server.url, single_connection_client=True)
    try:
        assert direct_get_async(plain) is not None and direct_get_async(single) is None
        assert RedisTier(plain)._adirect is not None
    finally:
        await plain.aclose()
        await single.aclose()


def test_asyncio_a_read_cancelled_mid_flight_leaves_no_stray_reply(own_server, ns) -> None:
    import asyncio

    asyncio.run(_asyncio_cancelled_read(own_server, ns))


async def _asyncio_cancelled_read(own_server: RedisServer, ns: str) -> None:
    import asyncio
    import os
    import signal

    client = redis.asyncio.Redis.from_url(own_server.url)
    tier = RedisTier(client, namespace=ns)
    try:
        await tier.insert(b"a", CacheEntry(b"A", 1.0))
        await tier.insert(b"b", CacheEntry(b"B", 1.0))
        assert (await tier.get(b"a")).value == b"A"
        (conn,) = tier._adirect.idle
        sent = asyncio.Event()
        real_send = conn.send_command

        async def send_then_tell(*args: Any, **kw: Any) -> None:
            await real_send(*args, **kw)
            sent.set()

        conn.send_command = send_then_tell
        os.kill(own_server.pid, signal.SIGSTOP)  # the reply to "GET a" waits in the server
        try:
            task = asyncio.ensure_future(tier.get(b"a"))
            await sent.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
        conn.send_command = real_send
        # That reply went with the socket: b reads b, and a reads a.
        assert (await tier.get(b"b")).value == b"B" and (await tier.get(b"a")).value == b"A"
        await tier.aclose()
        assert len(client.connection_pool._in_use_connections) == 0  # handed back
        assert (await tier.get(b"b")).value == b"B"  # the caller's client still works
    finally:
        await client.aclose()


def test_direct_reads_leave_most_of_a_bounded_pool_free(server, ns) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = redis.Redis.from_url(server.url, max_connections=8)  # reads may hold 2
    tier = RedisTier(client, namespace=ns)
    try:
        tier.insert(b"k", CacheEntry(b"v", 1.0))
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: tier.get(b"k").value, range(400)))
        assert results == [b"v"] * 400
        assert tier._direct.held <= 2 and len(client.connection_pool._in_use_connections) <= 2
        for i in range(6):  # the rest of the pool is free for everything else
            client.set(f"{ns}:other{i}", b"x")
    finally:
        tier.close()
        client.close()


# -- the breaker's probe ----------------------------------------------------------------


async def test_probe_answers_fast_for_a_live_frozen_or_dead_server(anyio_backend, own_server, ns) -> None:
    """``probe`` PINGs on a connection of its own: a live server passes; a frozen one
    (SIGSTOP: it still accepts connections) or a dead one fails within the probe's own
    timeout, never the client's socket timeout (2 s here)."""
    import os
    import signal

    sync_tier = RedisTier.from_url(own_server.url, namespace=ns, socket_timeout=2)
    async_tier = RedisTier.from_url(own_server.url, namespace=ns, socket_timeout=2, asynchronous=True)

    async def probe(tier: Any) -> None:
        if tier is sync_tier:
            tier.probe(0.05)
        else:
            await tier.probe(0.05)

    try:
        await async_tier.get(b"k")  # the async tier makes its client on first use
        for tier in (sync_tier, async_tier):
            await probe(tier)
        os.kill(own_server.pid, signal.SIGSTOP)
        try:
            for tier in (sync_tier, async_tier):
                t0 = time.monotonic()
                with pytest.raises(TierError, match="probe"):
                    await probe(tier)
                assert time.monotonic() - t0 < 1.0  # 0.05 s, not the 2 s socket timeout
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
        await probe(async_tier)
        own_server.kill()
        for tier in (sync_tier, async_tier):
            with pytest.raises(TierError, match="probe"):
                await probe(tier)
    finally:
        sync_tier.close()
        await async_tier.aclose()


def test_probe_address_of_each_kind_of_client() -> None:
    from cachet.tiers._redis_probe import address

    assert address(redis.Redis(host="10.0.0.1", port=6380)) == ("10.0.0.1", 6380)
    assert address(redis.Redis(unix_socket_path="/run/redis.sock")) == "/run/redis.sock"
    assert address(redis.asyncio.Redis(host="h", port=1)) == ("h", 1)
    assert address(redis.Redis(host="h", ssl=True)) is None  # TLS: asked through the client
    assert address(object()) is None


# -- update: the atomic read-modify-write step ------------------------------------------


@contextlib.asynccontextmanager
async def update_tier(frontend: Any, url: str, ns: str, bind: dict[str, Any] | None = None,
                      **kw: Any) -> AsyncIterator[Any]:
    """The tier under test with awaitable methods: a SyncRedisTier for the sync frontend,
    else an AsyncRedisTier (its asyncio client, or worker threads on trio)."""
    tier = RedisTier.from_url(url, namespace=ns, asynchronous=not frontend.is_sync, **kw)
    tier.bind_cache(**(bind or {}))
    try:
        yield SyncFacade(tier) if frontend.is_sync else tier
    finally:
        if frontend.is_sync:
            tier.close()
        else:
            await tier.aclose()  # type: ignore[attr-defined]


class Recorder:
    """A change that returns ``(new, result)`` and records each entry it was handed."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, new: Any, result: Any) -> Any:
        def change(stored: Any) -> Any:
            self.seen.append(stored)
            return new, result
        return change


def increment(stored: CacheEntry[bytes] | None) -> tuple[CacheEntry[bytes], int]:
    """A change that adds one to the int in the stored value (0 if absent); the new count."""
    n = int(stored.value) + 1 if stored is not None else 1
    return CacheEntry(str(n).encode()), n


async def test_update_stores_keeps_and_deletes(frontend, server, raw, ns) -> None:
    change = Recorder()
    key = f"{ns}:k".encode()
    async with update_tier(frontend, server.url, ns) as t:
        first = CacheEntry(b"v1", 1_000.5, 30.0)
        assert await t.update(b"k", change(first, "stored")) == "stored"
        assert change.seen == [None]  # missing: the change sees None
        assert await t.get(b"k") == first  # value, cached_at and ttl as given

        raw.pexpire(key, 123_456)  # a rewrite would reset this to the entry's ttl
        stored = raw.get(key)
        assert await t.update(b"k", change(KEEP, 1)) == 1
        assert change.seen[-1] == first  # the stored entry, exactly
        assert raw.get(key) == stored and 120_000 < raw.pttl(key) <= 123_456

        second = CacheEntry(b"v2")
        assert await t.update(b"k", change(second, None)) is None
        assert change.seen[-1] == first and await t.get(b"k") == second
        assert raw.pttl(key) == -1  # no ttl anywhere: no expiry (the old one is gone)

        assert await t.update(b"k", change(None, "gone")) == "gone"
        assert change.seen[-1] == second and not raw.exists(key)
        for new in (None, KEEP):  # removing or keeping what is absent writes nothing
            assert await t.update(b"k", change(new, 0)) == 0
            assert change.seen[-1] is None and not raw.exists(key)


async def test_update_sets_the_server_side_expiry_as_insert_does(frontend, server, raw, ns,
                                                                 clock) -> None:
    async with update_tier(frontend, server.url, ns, bind={"clock": clock, "ttl": 60},
                           expiry_slack=0) as t:
        for entry, low, high in ((CacheEntry(b"v", clock.now()), 59_000, 60_001),  # tier ttl
                                 (CacheEntry(b"v", clock.now() - 10, 30.0), 19_000, 20_001),
                                 (CacheEntry(b"v", None, 5.0), 4_000, 5_001)):
            await t.insert(b"i", entry)
            await t.update(b"u", lambda stored, entry=entry: (entry, None))
            inserted, updated = raw.pttl(f"{ns}:i".encode()), raw.pttl(f"{ns}:u".encode())
            assert low < updated <= high and abs(inserted - updated) < 500
            assert await t.get(b"u") == entry


async def test_an_error_in_change_propagates_and_nothing_is_written(frontend, server, raw,
                                                                    ns) -> None:
    key = f"{ns}:k".encode()
    async with update_tier(frontend, server.url, ns) as t:
        for error in (KeyError("from change"), OSError("not the tier's")):
            def failing(stored: Any, error: Exception = error) -> Any:
                raise error

            with pytest.raises(type(error)) as info:
                await t.update(b"k", failing)
            assert info.value is error and not isinstance(info.value, TierError)
            assert not raw.exists(key)

        await t.insert(b"k", CacheEntry(b"7", 1.0))
        stored = raw.get(key)
        with pytest.raises(ZeroDivisionError):
            await t.update(b"k", lambda stored: (CacheEntry(b"x"), 1 / 0))
        with pytest.raises(TypeError, match="serialize"):  # not bytes: refused before MULTI
            await t.update(b"k", lambda stored: (CacheEntry("text"), None))
        assert raw.get(key) == stored
        assert await t.update(b"k", increment) == 8  # the tier goes on (nothing left watched)


async def test_a_record_this_tier_did_not_write_reaches_change_as_none(frontend, server, raw,
                                                                       ns) -> None:
    import struct

    change = Recorder()
    key = f"{ns}:k".encode()
    async with update_tier(frontend, server.url, ns) as t:
        for junk in (b"", b"hello", b"\xca" + b"\x00" * 5,
                     struct.pack("<BBdd", 0xCA, 3, 1.0, float("nan")) + b"v"):
            raw.set(key, junk)
            assert await t.update(b"k", change(KEEP, "kept")) == "kept"
            assert change.seen[-1] is None and raw.get(key) == junk
        assert await t.update(b"k", increment) == 1  # and a write replaces it
        assert await t.get(b"k") == CacheEntry(b"1")


def test_update_is_atomic_across_threads_and_clients(server, ns) -> None:
    """8 threads x 50 increments, first through one tier, then through two tiers (two
    clients) at once: none is lost, each count is handed out once."""
    tiers = [RedisTier.from_url(server.url, namespace=ns, socket_timeout=10) for _ in range(2)]
    try:
        for key, spread in ((b"one", 1), (b"two", 2)):
            counts: list[int] = []
            barrier = threading.Barrier(8)

            def work(i: int, key: bytes = key, spread: int = spread,
                     counts: list[int] = counts, barrier: threading.Barrier = barrier) -> None:
                tier = tiers[i % spread]
                barrier.wait()
                counts.extend(tier.update(key, increment) for _ in range(50))

            threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert sorted(counts) == list(range(1, 401))
            assert tiers[0].get(key) == CacheEntry(b"400")
    finally:
        for tier in tiers:
            tier.close()


async def test_update_is_atomic_across_tasks_and_clients(anyio_backend, server, ns) -> None:
    """200 tasks at once, one increment each, through one tier (on trio, through its
    worker threads), then 200 more split over two tiers: none is lost. (Each update holds a
    connection from WATCH to EXEC: the pool must allow 200 at once, not redis-py's 100.)"""
    import anyio

    tiers = [RedisTier.from_url(server.url, namespace=ns, socket_timeout=10, asynchronous=True,
                                max_connections=256) for _ in range(2)]
    counts: list[int] = []

    async def one(tier: Any) -> None:
        counts.append(await tier.update(b"n", increment))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(one, tiers[0])
        assert sorted(counts) == list(range(1, 201))
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, tiers[i % 2])
        assert sorted(counts) == list(range(1, 401))
        assert await tiers[1].get(b"n") == CacheEntry(b"400")
    finally:
        for tier in tiers:
            await tier.aclose()  # type: ignore[attr-defined]


async def test_cluster_update_is_atomic(frontend, cluster, ns) -> None:
    import anyio

    change = Recorder()
    async with update_tier(frontend, cluster.url, ns, cluster=True, socket_timeout=10) as t:
        keys = [f"k{i}".encode() for i in range(20)]  # over every node's slots
        for k in keys:
            assert await t.update(k, change(CacheEntry(k), k)) == k
            assert await t.update(k, change(KEEP, None)) is None
            assert change.seen[-1] == CacheEntry(k)
        assert await t.update(keys[3], change(None, "gone")) == "gone"
        assert await t.get(keys[3]) is None and await t.get(keys[4]) == CacheEntry(keys[4])

        counts: list[int] = []
        if frontend.is_sync:
            def work() -> None:
                counts.extend(t.sync.update(b"n", increment) for _ in range(25))

            threads = [threading.Thread(target=work) for _ in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        else:
            async def one() -> None:
                counts.append(await t.update(b"n", increment))

            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(one)
        assert sorted(counts) == list(range(1, 101))
        await t.clear()


async def test_cluster_update_without_cluster_watch_is_unsupported(frontend, cluster, ns,
                                                                   monkeypatch) -> None:
    """An older redis-py (before 6.2) has no WATCH in cluster pipelines: ``update``
    refuses rather than write without it."""
    monkeypatch.delattr(redis.cluster, "TransactionStrategy")
    monkeypatch.delattr(redis.asyncio.cluster, "TransactionStrategy")
    async with update_tier(frontend, cluster.url, ns, cluster=True) as t:
        with pytest.raises(UnsupportedError, match=r"redis-py 6\.2"):
            await t.update(b"k", lambda stored: (CacheEntry(b"v"), None))
        assert await t.get(b"k") is None
