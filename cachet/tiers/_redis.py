"""The Redis tier: a byte tier over redis-py, for ``cachet.sync`` and ``cachet.aio``.

Design (the why behind the shape):

1. **One value per entry, one round trip per operation.** An entry is stored as a
   single Redis string: an 18-byte header (record format byte, flags, ``cached_at`` and
   ``ttl`` as little-endian doubles) followed by the payload bytes. ``get`` is one
   ``GET``, ``insert`` one ``SET ... PX``, ``invalidate`` one ``UNLINK``. A value that
   does not carry our header (foreign data under our key) reads as a miss.
2. **Redis expiry frees memory; the core judges freshness.** ``insert`` sets a
   relative expiry (``PX``) of the entry's remaining life (its ttl, or the tier ttl),
   plus ``expiry_slack``. Since a stored entry is stamped at or before "now", its ttl
   is an upper bound on what remains of its life, so Redis never drops an entry the
   core still counts fresh, whatever clock the cache uses. Given the cache's clock
   (``bind_cache``, called by the builder), the remaining life is computed exactly. The slack covers clock skew
   between hosts sharing the namespace.
3. **Keys are ``<namespace>:<key>``**; ``clear()`` and ``len()`` walk only this
   namespace with ``SCAN MATCH`` (glob characters in the namespace are escaped), and
   ``clear()`` removes keys with ``UNLINK`` in batches, pipelined with the next ``SCAN``
   step. Never ``FLUSHDB``.
4. **Errors**: any redis-py error or socket error becomes :class:`cachet.TierError`
   (``.tier`` is this tier's ``name``, the original is ``__cause__``). Clients made by
   :meth:`RedisTier.from_url` time out after ``socket_timeout`` and retry a broken
   connection once without backoff, so an outage surfaces within about
   ``2 * socket_timeout`` instead of redis-py's default ten backed-off retries.
5. **Two flavours behind one name.** ``RedisTier(client)`` returns a
   :class:`SyncRedisTier` for a ``redis.Redis`` / ``redis.cluster.RedisCluster`` and an
   :class:`AsyncRedisTier` for a ``redis.asyncio`` client; ``RedisTier.from_url(url,
   asynchronous=True)`` gives an :class:`AsyncRedisTier` too. An async tier serves both
   anyio backends: on asyncio it awaits a ``redis.asyncio`` client; on any other loop
   (trio, where redis-py's async client does not work) it runs a blocking client in
   anyio worker threads. The check is one ``asyncio.get_running_loop()`` call per
   operation (about 50 ns); both clients are created lazily from the URL, so a tier
   used only on trio never opens an asyncio connection and vice versa.
6. **``update`` is optimistic**: ``WATCH`` the key, ``GET`` it, run the change, then
   ``MULTI`` / ``SET PX`` or ``DEL`` / ``EXEC``; a write by anyone else in between
   fails the ``EXEC`` and the step is tried again (the change is pure). No lock is held
   on the server and a ``KEEP`` costs one ``GET``. On a cluster this needs redis-py's
   transactional cluster pipelines (6.2+); without them ``update`` is unsupported.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from .._core.clock import Clock
from .._core.entry import CacheEntry, check_stamps
from .._core.errors import DecodeError, TierError, UnsupportedError
from .._core.policy import InsertOutcome
from .._core.tier import Change
from ._redis_probe import PROBE_TIMEOUT, address, ping, ping_async
from ._rows import entries

try:  # redis is an optional dependency: `pip install 'cachet[redis]'`
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from ._redis_direct import direct_get, direct_get_async
except ImportError:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]

__all__ = ["RedisTier", "SyncRedisTier", "AsyncRedisTier"]

RECORD_FORMAT = 0xCA
"""First byte of every value this tier writes; anything else under our keys is a miss."""

_HEADER = struct.Struct("<BBdd")  # format, flags (1: cached_at, 2: ttl), cached_at, ttl
_HEADER_SIZE = _HEADER.size
_HAS_AT, _HAS_TTL = 1, 2
_SCAN_COUNT = 1000  # keys per SCAN step, and so at most this many per UNLINK

DEFAULT_NAMESPACE = "cachet"
DEFAULT_TIMEOUT = 1.0


def _errors() -> tuple[type[BaseException], ...]:
    return (redis.exceptions.RedisError, OSError)


def encode_record(entry: CacheEntry[bytes]) -> bytes:
    """The stored form of ``entry``: header (format, flags, cached_at, ttl) + payload."""
    value = entry.value
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"RedisTier stores bytes, not {type(value).__name__}: put .serialize() above it "
            f"in the builder chain"
        )
    at, ttl = entry.cached_at, entry.ttl
    flags = (_HAS_AT if at is not None else 0) | (_HAS_TTL if ttl is not None else 0)
    return _HEADER.pack(RECORD_FORMAT, flags, at or 0.0, ttl or 0.0) + bytes(value)


def decode_row(raw: bytes) -> tuple[bytes, float | None, float | None]:
    """The stored ``(value, cached_at, ttl)`` in ``raw``; ``DecodeError`` for anything this
    tier did not write (too short, another format, unknown flags, stamps that are not
    finite or a ttl that is not positive), which the boundary above counts as a miss."""
    if len(raw) < _HEADER_SIZE or raw[0] != RECORD_FORMAT:
        raise DecodeError("not a record this tier wrote (too short, or another format)")
    _, flags, at, ttl = _HEADER.unpack_from(raw)
    if flags > (_HAS_AT | _HAS_TTL):
        raise DecodeError(f"not a record this tier wrote (unknown flags {flags:#x})")
    row = raw[_HEADER_SIZE:], at if flags & _HAS_AT else None, ttl if flags & _HAS_TTL else None
    check_stamps(row[1], row[2])
    return row


def _stored(raw: bytes | None) -> CacheEntry[bytes] | None:
    """The entry ``update`` hands to its change: ``None`` when absent or not ours (as ``get``)."""
    if raw is None:
        return None
    try:
        return CacheEntry(*decode_row(raw))
    except DecodeError:
        return None


def _row_or_error(raw: bytes | None) -> tuple[bytes, float | None, float | None] | DecodeError | None:
    """One slot of ``get_rows``: the row, ``None`` when absent, or the ``DecodeError`` of a
    record this tier did not write (returned in its place, not raised: the other keys'
    answers stand)."""
    if raw is None:
        return None
    try:
        return decode_row(raw)
    except DecodeError as exc:
        return exc


def _escape_glob(text: bytes) -> bytes:
    out = bytearray()
    for b in text:
        if b in b"*?[]\\":
            out.append(0x5C)
        out.append(b)
    return bytes(out)


def _is_async_client(client: Any) -> bool:
    return redis is not None and isinstance(
        client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    )


def _is_cluster(client: Any) -> bool:
    return redis is not None and isinstance(
        client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
    )


def _check_decoding(client: Any) -> None:
    """Refuse a client that decodes replies to str: the tier stores and reads bytes."""
    encoder = getattr(client, "get_encoder", None)
    if encoder is not None and getattr(encoder(), "decode_responses", False):
        raise ValueError(
            "RedisTier needs a client that returns bytes: create it without "
            "decode_responses=True (cachet decodes values itself)"
        )


def _require_redis() -> None:
    if redis is None:
        raise ImportError("RedisTier needs redis-py: pip install 'cachet[redis]'")


def _client_options(socket_timeout: float | None, kw: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
    }
    options.update(kw)
    return options


def _sync_retry(retries: int) -> Any:
    return Retry(NoBackoff(), retries, supported_errors=(redis.exceptions.ConnectionError,))


def _async_retry(retries: int) -> Any:
    from redis.asyncio.retry import Retry as AsyncRetry

    return AsyncRetry(NoBackoff(), retries, supported_errors=(redis.exceptions.ConnectionError,))


class RedisTier:
    """A byte tier in Redis, for the part of a stack below ``.serialize()``.

    ``RedisTier(client, *, namespace="cachet", name="redis", ttl=None)`` takes a
    ``redis.Redis`` or ``redis.cluster.RedisCluster`` (giving a :class:`SyncRedisTier`)
    or a ``redis.asyncio.Redis`` / ``redis.asyncio.cluster.RedisCluster`` (giving an
    :class:`AsyncRedisTier`). Keys and values are bytes; keys are stored as
    ``<namespace>:<key>``. ``ttl`` is the server-side expiry for entries without their
    own ttl (the builder sets it from ``.ttl()`` through :meth:`bind_cache`). The client you
    pass stays yours: ``close()`` closes only clients the tier created.

    Usually built through the builder::

        cache = (Cache.builder().memory(10_000)
                 .serialize(secret=SECRET)
                 .fallback(Cache.builder().redis("redis://cache:6379/0", namespace="shop"))
                 .build())

    ``network = True`` makes the builder refuse an unsigned pickle codec above this tier
    unless ``allow_unsigned_pickle=True`` is given.
    """

    network = True
    """A tier shared over the network: unsigned pickles are refused above it."""

    bytes_only = True
    """Stores bytes only: with no ``.serialize()`` above, the builder adds the default codec."""

    def close(self) -> None:
        """Close the clients this tier created (each kind of Redis tier knows which)."""
        raise NotImplementedError

    def __new__(cls, client: Any = None, *args: Any, **kwargs: Any) -> RedisTier:
        if cls is RedisTier:
            _require_redis()
            cls = AsyncRedisTier if _is_async_client(client) else SyncRedisTier
        return object.__new__(cls)

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        name: str = "redis",
        ttl: float | None = None,
        expiry_slack: float = 1.0,
    ) -> None:
        _require_redis()
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty str; got {namespace!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds; got {ttl!r}")
        if not expiry_slack >= 0:
            raise ValueError(f"expiry_slack must be >= 0 seconds; got {expiry_slack!r}")
        self.namespace = namespace
        self.name = name
        self.ttl = ttl
        self.expiry_slack = expiry_slack
        self.clock: Clock | None = None
        self._prefix = namespace.encode() + b":"
        self._pattern = _escape_glob(self._prefix) + b"*"
        self._client = client

    @classmethod
    def from_url(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        asynchronous: bool = False,
        cluster: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        name: str = "redis",
        ttl: float | None = None,
        socket_timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = 1,
        expiry_slack: float = 1.0,
        **kw: Any,
    ) -> RedisTier:
        """A tier on clients made from ``url`` (``redis://``, ``rediss://``, ``unix://``).

        ``asynchronous=True`` gives an :class:`AsyncRedisTier` (``redis.asyncio`` on
        asyncio, the blocking client in worker threads on trio); ``cluster=True`` uses
        ``RedisCluster`` clients seeded from ``url``. ``socket_timeout`` bounds connect
        and each command (seconds); a broken connection is retried ``retries`` times
        without backoff. Other keywords go to redis-py's ``from_url``. The tier owns these
        clients: ``close()`` / ``aclose()`` (or closing the cache) closes them.

        >>> tier = RedisTier.from_url("redis://127.0.0.1:6379/0", namespace="docs")
        >>> tier.close()
        """
        _require_redis()
        options = _client_options(socket_timeout, kw)
        sync_cls: Any = redis.cluster.RedisCluster if cluster else redis.Redis
        async_cls: Any = redis.asyncio.cluster.RedisCluster if cluster else redis.asyncio.Redis

        def make_sync() -> Any:
            extra = {} if cluster or "retry" in options else {"retry": _sync_retry(retries)}
            return sync_cls.from_url(url, **options, **extra)

        def make_async() -> Any:
            extra = {} if cluster or "retry" in options else {"retry": _async_retry(retries)}
            return async_cls.from_url(url, **options, **extra)

        common = {"namespace": namespace, "name": name, "ttl": ttl, "expiry_slack": expiry_slack}
        if asynchronous:
            tier: RedisTier = AsyncRedisTier(None, make_async=make_async, make_sync=make_sync, **common)
        else:
            tier = SyncRedisTier(make_sync(), **common)
            tier._owns = True
        return tier

    # -- shared helpers ----------------------------------------------------------------

    _owns = False
    _cluster = False

    def bind_cache(self, *, clock: Clock | None = None, ttl: float | None = None,
                   name: str | None = None) -> None:
        """Learn the cache's clock, this tier's ttl and its name (the builder calls this).

        The clock makes server-side expiry exact; the ttl is the expiry of entries without
        their own; the name is what :class:`cachet.TierError` reports.
        """
        if clock is not None:
            self.clock = clock
        if ttl is not None:
            self.ttl = ttl
        if name is not None:
            self.name = name

    def key(self, key: bytes) -> bytes:
        """The Redis key under which ``key`` is stored: ``<namespace>:<key>``."""
        return self._prefix + key

    def _expiry_ms(self, entry: CacheEntry[Any]) -> int | None:
        ttl = entry.ttl if entry.ttl is not None else self.ttl
        if ttl is None:
            return None
        life = ttl
        clock, at = self.clock, entry.cached_at
        if clock is not None and at is not None:
            life = min(ttl, at + ttl - clock.now())
        # +1 ms: Redis expires at the millisecond, the core counts "equal" as fresh.
        return max(1, math.ceil((life + self.expiry_slack) * 1000) + 1)

    def _queue(self, pipe: Any, k: bytes, new: Any) -> bool:
        """Queue ``update``'s write of ``new`` (an entry, or ``None``: remove) as a
        ``MULTI`` block on ``pipe``; ``False`` for ``KEEP``, which writes nothing."""
        if new is None:
            pipe.multi()
            pipe.delete(k)  # not unlink: a redis.asyncio cluster pipeline's is a coroutine
        elif isinstance(new, CacheEntry):
            record = encode_record(new)  # a TypeError here leaves nothing queued
            pipe.multi()
            pipe.set(k, record, px=self._expiry_ms(new))
        else:
            return False
        return True

    def _check_watch(self, module: Any) -> None:
        """Refuse ``update`` on a cluster client whose redis-py (``module``) has no
        transactional cluster pipeline: without ``WATCH`` it could not be atomic."""
        if self._cluster and not hasattr(module, "TransactionStrategy"):
            raise UnsupportedError(
                f"redis tier {self.name!r}: update on a Redis Cluster needs WATCH in cluster "
                f"pipelines (redis-py 6.2 or later); this redis-py has none"
            )

    def _mget(self) -> Any:
        """The client's many-key ``GET``: ``MGET``, or its per-slot form on a cluster."""
        client = self._client
        return client.mget_nonatomic if self._cluster else client.mget

    def _error(self, op: str, exc: BaseException) -> TierError:
        err = TierError(self.name, op, f"redis tier {self.name!r} failed during {op}: {exc!r}")
        err.__cause__ = exc
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, name={self.name!r})"


class SyncRedisTier(RedisTier):
    """A blocking Redis tier (``redis.Redis`` or ``redis.cluster.RedisCluster``).

    ``cachet.sync`` calls it directly; ``cachet.aio`` runs it in worker threads, which
    works on asyncio and trio alike (use :class:`AsyncRedisTier` to avoid the threads on
    asyncio).
    """

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        if _is_async_client(client):
            raise TypeError("SyncRedisTier needs a blocking client; use RedisTier(client) for redis.asyncio")
        _check_decoding(client)
        self._cluster = _is_cluster(client)
        self._direct = direct_get(client)
        self._get = client.get if self._direct is None else self._direct
        self._set = client.set

    @property
    def client(self) -> Any:
        """The redis-py client."""
        return self._client

    def get(self, key: bytes) -> CacheEntry[bytes] | None:
        """The entry stored under ``key``, or ``None`` (absent, or not written by this tier)."""
        try:
            row = self.get_row(key)
        except DecodeError:  # a boundary above counts these; a bare tier reads a miss
            return None
        return None if row is None else CacheEntry(*row)

    def get_row(self, key: bytes) -> tuple[bytes, float | None, float | None] | None:
        """``get`` as a ``(value, cached_at, ttl)`` tuple: the boundary builds one entry, not two."""
        try:
            raw = self._get(self._prefix + key)
        except _errors() as exc:
            raise self._error("get", exc) from exc
        return None if raw is None else decode_row(raw)

    def get_many(self, keys: list[bytes]) -> list[CacheEntry[bytes] | None]:
        """The entry of each key, in order, in one ``MGET`` (``None`` where ``get`` has none)."""
        return entries(self.get_rows(keys))

    def get_rows(self, keys: list[bytes]) -> list[Any]:
        """``get_row`` of each key in one round trip; a record this tier did not write is
        its ``DecodeError``, in its place."""
        try:
            raws = self._mget()([self._prefix + k for k in keys])
        except _errors() as exc:
            raise self._error("get", exc) from exc
        return [_row_or_error(raw) for raw in raws]

    def insert(self, key: bytes, entry: CacheEntry[bytes]) -> InsertOutcome:
        """Store ``entry`` with a server-side expiry from its effective ttl (one ``SET``)."""
        record = encode_record(entry)
        try:
            self._set(self._prefix + key, record, px=self._expiry_ms(entry))
        except _errors() as exc:
            raise self._error("insert", exc) from exc
        return InsertOutcome.ACCEPTED

    def update(self, key: bytes, change: Change) -> Any:
        """Apply ``change`` to the entry of ``key`` atomically (``_core/tier.py``): ``WATCH``,
        ``GET``, then a ``MULTI``/``EXEC`` write that fails, and is retried, if anyone else
        wrote the key in between. Returns ``change``'s result; its errors pass unchanged."""
        self._check_watch(redis.cluster)
        k = self._prefix + key
        in_change = False
        try:
            with self._client.pipeline(transaction=True) as pipe:  # its exit UNWATCHes
                while True:
                    pipe.watch(k)
                    raw = pipe.get(k)  # in watch mode: runs at once
                    in_change = True
                    new, result = change(_stored(raw))
                    in_change = False
                    try:
                        if self._queue(pipe, k, new):
                            pipe.execute()
                        return result
                    except redis.WatchError:
                        continue  # written under us: read again
        except _errors() as exc:
            if in_change:  # the change's own error, not the tier's
                raise
            raise self._error("update", exc) from exc

    def invalidate(self, key: bytes) -> None:
        """Remove ``key`` (``UNLINK``)."""
        try:
            self._client.unlink(self._prefix + key)
        except _errors() as exc:
            raise self._error("invalidate", exc) from exc

    def clear(self) -> None:
        """Remove this namespace's keys (``SCAN`` + batched ``UNLINK``); other keys stay."""
        try:
            if self._cluster:
                self._clear_cluster()
            else:
                self._clear_standalone()
        except _errors() as exc:
            raise self._error("clear", exc) from exc

    def _clear_standalone(self) -> None:
        client = self._client
        cursor, keys = client.scan(0, match=self._pattern, count=_SCAN_COUNT)
        while True:
            if cursor == 0:
                if keys:
                    client.unlink(*keys)
                return
            if not keys:
                cursor, keys = client.scan(cursor, match=self._pattern, count=_SCAN_COUNT)
                continue
            # Remove this batch and fetch the next one in a single round trip.
            pipe = client.pipeline(transaction=False)
            pipe.unlink(*keys)
            pipe.scan(cursor, match=self._pattern, count=_SCAN_COUNT)
            _, (cursor, keys) = pipe.execute()

    def _clear_cluster(self) -> None:
        client = self._client
        batch: list[bytes] = []
        for k in client.scan_iter(match=self._pattern, count=_SCAN_COUNT):
            batch.append(k)
            if len(batch) >= _SCAN_COUNT:
                client.unlink(*batch)  # split by slot by redis-py
                batch.clear()
        if batch:
            client.unlink(*batch)

    def probe(self, timeout: float = PROBE_TIMEOUT) -> None:
        """Raise ``TierError`` unless the server answers ``PING`` within ``timeout``
        seconds, on a connection of the probe's own: the check a circuit breaker makes
        after its cooldown (``.circuit_breaker()``), so a frozen server costs the probing
        caller ``timeout``, not the socket timeout. Cluster and TLS clients are asked
        through the client (bounded by its own timeouts)."""
        where = address(self._client)
        try:
            if where is None:
                self._client.ping()
            else:
                ping(where, timeout)
        except _errors() as exc:
            raise self._error("probe", exc) from exc

    def len(self) -> int:
        """How many keys this namespace has (``SCAN``): approximate.

        It counts entries the core would read as expired until Redis drops them, and a
        key may be counted twice if the keyspace is resized during the scan.
        """
        try:
            return sum(1 for _ in self._client.scan_iter(match=self._pattern, count=_SCAN_COUNT))
        except _errors() as exc:
            raise self._error("len", exc) from exc

    def close(self) -> None:
        """Close the client if this tier created it (``from_url``)."""
        direct, self._direct = self._direct, None
        if direct is not None:  # later reads (a user's client outlives us) take client.get
            self._get = self._client.get
            direct.close()
        if self._owns:
            self._owns = False
            self._client.close()


class AsyncRedisTier(RedisTier):
    """An async Redis tier that works on both anyio backends.

    On asyncio it awaits a ``redis.asyncio`` client. Elsewhere (trio) it runs a blocking
    client in anyio worker threads, through a :class:`SyncRedisTier` on the same
    namespace. From :meth:`RedisTier.from_url` both clients are made lazily from the
    URL. Built from a ``redis.asyncio`` client, pass ``sync_client=`` as well to use the
    tier on trio. An asyncio client belongs to one event loop: use one tier per loop.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        sync_client: Any = None,
        make_async: Callable[[], Any] | None = None,
        make_sync: Callable[[], Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(client, **kw)
        if client is not None and not _is_async_client(client):
            raise TypeError("AsyncRedisTier needs a redis.asyncio client (or use from_url)")
        self._make_async = make_async
        self._make_sync = make_sync
        self._sync_client = sync_client
        self._sync: SyncRedisTier | None = None
        self._owns_async = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aget: Any = None
        self._aset: Any = None
        self._adirect: Any = None
        self._updating: asyncio.Semaphore | None = None  # see _update_slots
        if client is not None:
            self._bind_async(client, owned=False)

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client, if one has been made."""
        return self._client

    # -- choosing the path -------------------------------------------------------------

    def _bind_async(self, client: Any, owned: bool) -> None:
        _check_decoding(client)
        self._client = client
        self._owns_async = owned
        self._cluster = _is_cluster(client)
        self._adirect = direct_get_async(client)
        self._aget = client.get if self._adirect is None else self._adirect
        self._aset = client.set

    def _async_client(self, loop: asyncio.AbstractEventLoop) -> Any:
        if self._loop is None:
            if self._client is None:
                if self._make_async is None:
                    raise RuntimeError("this AsyncRedisTier has no asyncio client")
                self._bind_async(self._make_async(), owned=True)
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "this AsyncRedisTier's asyncio client belongs to another event loop; "
                "build one tier (one cache) per event loop"
            )
        return self._client

    def _threaded(self) -> SyncRedisTier:
        tier = self._sync
        if tier is None:
            client = self._sync_client
            owned = False
            if client is None:
                if self._make_sync is None:
                    raise RuntimeError(
                        "this AsyncRedisTier has only an asyncio client, which does not work on "
                        "trio: pass sync_client=redis.Redis(...) too, or use RedisTier.from_url(url, "
                        "asynchronous=True)"
                    )
                client = self._make_sync()
                owned = True
            tier = SyncRedisTier(client, namespace=self.namespace, name=self.name)
            tier._owns = owned
            self._sync = tier
        tier.ttl, tier.clock, tier.expiry_slack, tier.name = (
            self.ttl, self.clock, self.expiry_slack, self.name)
        return tier

    def _loop_or_none(self) -> asyncio.AbstractEventLoop | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if loop is not self._loop:
            try:
                self._async_client(loop)
            except RuntimeError as exc:
                raise self._error("connect", exc) from exc
        return loop

    async def _in_thread(self, op: str, *args: Any) -> Any:
        try:
            tier = self._threaded()
        except RuntimeError as exc:
            raise self._error(op, exc) from exc
        return await anyio.to_thread.run_sync(getattr(tier, op), *args)

    # -- the tier protocol -------------------------------------------------------------

    async def get(self, key: bytes) -> CacheEntry[bytes] | None:
        """The entry stored under ``key``, or ``None`` (absent, or not written by this tier)."""
        try:
            row = await self.get_row(key)
        except DecodeError:  # a boundary above counts these; a bare tier reads a miss
            return None
        return None if row is None else CacheEntry(*row)

    async def get_row(self, key: bytes) -> tuple[bytes, float | None, float | None] | None:
        """``get`` as a ``(value, cached_at, ttl)`` tuple: the boundary builds one entry, not two."""
        if self._loop_or_none() is None:
            return await self._in_thread("get_row", key)  # type: ignore[no-any-return]
        try:
            raw = await self._aget(self._prefix + key)
        except _errors() as exc:
            raise self._error("get", exc) from exc
        return None if raw is None else decode_row(raw)

    async def get_many(self, keys: list[bytes]) -> list[CacheEntry[bytes] | None]:
        """The entry of each key, in order, in one ``MGET`` (``None`` where ``get`` has none)."""
        return entries(await self.get_rows(keys))

    async def get_rows(self, keys: list[bytes]) -> list[Any]:
        """``get_row`` of each key in one round trip (see ``SyncRedisTier.get_rows``)."""
        if self._loop_or_none() is None:
            return await self._in_thread("get_rows", keys)  # type: ignore[no-any-return]
        try:
            raws = await self._mget()([self._prefix + k for k in keys])
        except _errors() as exc:
            raise self._error("get", exc) from exc
        return [_row_or_error(raw) for raw in raws]

    async def insert(self, key: bytes, entry: CacheEntry[bytes]) -> InsertOutcome:
        """Store ``entry`` with a server-side expiry from its effective ttl (one ``SET``)."""
        if self._loop_or_none() is None:
            return await self._in_thread("insert", key, entry)  # type: ignore[no-any-return]
        record = encode_record(entry)
        try:
            await self._aset(self._prefix + key, record, px=self._expiry_ms(entry))
        except _errors() as exc:
            raise self._error("insert", exc) from exc
        return InsertOutcome.ACCEPTED

    async def update(self, key: bytes, change: Change) -> Any:
        """As :meth:`SyncRedisTier.update` (optimistic ``WATCH``, retried on a conflict), on
        the asyncio client, or in a worker thread on trio."""
        if self._loop_or_none() is None:
            return await self._in_thread("update", key, change)
        self._check_watch(redis.asyncio.cluster)
        k = self._prefix + key
        in_change = False
        try:
            async with self._update_slots(), self._client.pipeline(transaction=True) as pipe:
                while True:
                    await pipe.watch(k)
                    raw = await pipe.get(k)
                    in_change = True
                    new, result = change(_stored(raw))
                    in_change = False
                    try:
                        if self._queue(pipe, k, new):
                            await pipe.execute()
                        return result
                    except redis.WatchError:
                        continue
        except _errors() as exc:
            if in_change:
                raise
            raise self._error("update", exc) from exc

    def _update_slots(self) -> asyncio.Semaphore:
        """An update holds a connection from ``WATCH`` to ``EXEC``, and redis.asyncio's
        pool raises ``MaxConnectionsError`` rather than wait when it runs out: at most half
        the pool updates at once, and the others wait their turn here."""
        slots = self._updating
        if slots is None:
            pool = getattr(self._client, "connection_pool", None)
            most = min(int(getattr(pool, "max_connections", None) or 100), 1 << 16)
            slots = self._updating = asyncio.Semaphore(max(1, most // 2))
        return slots

    async def invalidate(self, key: bytes) -> None:
        """Remove ``key`` (``UNLINK``)."""
        if self._loop_or_none() is None:
            await self._in_thread("invalidate", key)
            return
        try:
            await self._client.unlink(self._prefix + key)
        except _errors() as exc:
            raise self._error("invalidate", exc) from exc

    async def clear(self) -> None:
        """Remove this namespace's keys (``SCAN`` + batched ``UNLINK``); other keys stay."""
        if self._loop_or_none() is None:
            await self._in_thread("clear")
            return
        try:
            if self._cluster:
                await self._clear_cluster()
            else:
                await self._clear_standalone()
        except _errors() as exc:
            raise self._error("clear", exc) from exc

    async def _clear_standalone(self) -> None:
        client = self._client
        cursor, keys = await client.scan(0, match=self._pattern, count=_SCAN_COUNT)
        while True:
            if cursor == 0:
                if keys:
                    await client.unlink(*keys)
                return
            if not keys:
                cursor, keys = await client.scan(cursor, match=self._pattern, count=_SCAN_COUNT)
                continue
            pipe = client.pipeline(transaction=False)
            pipe.unlink(*keys)
            pipe.scan(cursor, match=self._pattern, count=_SCAN_COUNT)
            _, (cursor, keys) = await pipe.execute()

    async def _clear_cluster(self) -> None:
        client = self._client
        batch: list[bytes] = []
        async for k in client.scan_iter(match=self._pattern, count=_SCAN_COUNT):
            batch.append(k)
            if len(batch) >= _SCAN_COUNT:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)

    async def len(self) -> int:
        """How many keys this namespace has (``SCAN``): approximate, as for the sync tier."""
        if self._loop_or_none() is None:
            return await self._in_thread("len")  # type: ignore[no-any-return]
        try:
            n = 0
            async for _ in self._client.scan_iter(match=self._pattern, count=_SCAN_COUNT):
                n += 1
            return n
        except _errors() as exc:
            raise self._error("len", exc) from exc

    async def probe(self, timeout: float = PROBE_TIMEOUT) -> None:
        """As :meth:`SyncRedisTier.probe`, on the running loop (asyncio or trio)."""
        if self._loop_or_none() is not None:
            client = self._client
        else:
            try:
                client = self._threaded().client
            except RuntimeError as exc:
                raise self._error("probe", exc) from exc
        where = address(client)
        try:
            if where is None:
                if client is self._client:
                    await client.ping()
                else:
                    await anyio.to_thread.run_sync(client.ping)
            else:
                await ping_async(where, timeout)
        except _errors() as exc:
            raise self._error("probe", exc) from exc

    async def aclose(self) -> None:
        """Close the clients this tier created (the caller's clients stay open)."""
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
        adirect, self._adirect = self._adirect, None
        if adirect is not None and self._client is not None:
            self._aget = self._client.get
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # not on asyncio: the pool's own close takes the connections
            else:
                await adirect.aclose()
        if self._owns_async and self._client is not None:
            client, self._client = self._client, None
            self._owns_async = False
            self._loop = None
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # not on asyncio: nothing awaitable can close it here
                return
            await client.aclose()

    def close(self) -> None:
        """Close the blocking client if the tier made it; use ``aclose()`` for both."""
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
