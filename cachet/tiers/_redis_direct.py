"""The Redis tier's read, straight on redis-py connections.

``client.get(key)`` spends most of its Python on per-command plumbing: checking a
connection out of the pool (a ``select()`` call to see it holds no stray reply), the
retry wrapper, event dispatch and metrics hooks, checking it back in. Measured here
that is ~1,100 bytecodes and ~13 µs of a ~75 µs loopback ``GET``: several times what
the whole cache adds on top (``benchmarks/bench_redis.py``). An L2 read is the hot path
of a two-tier cache, so :class:`DirectGet` keeps connections of the client's own pool
checked out, one per thread at a time, and sends ``GET`` on them directly.

What it keeps of redis-py's guarantees, and how:

- the client's retry policy applies as it does to ``client.get``: the read runs under
  the connection's own ``Retry`` (the client's), which disconnects on each retried
  error, so a connection dropped under us (a restarted server) reconnects, and what the
  policy does not retry (a timeout, with the clients ``RedisTier.from_url`` makes)
  surfaces at once;
- a connection never carries a stray reply into the next read: any exception between
  sending and reading disconnects it (it reconnects on its next use);
- a forked child never reads from its parent's sockets (the stack is emptied after
  ``fork``);
- ``close()`` hands the connections back to the pool;
- most of a bounded pool stays free for everything else: at most a quarter of its
  ``max_connections`` are held for reads, and a read that finds none idle beyond that
  goes through ``client.get``.

Only a plain ``redis.Redis`` over a plain ``ConnectionPool`` qualifies (:func:`direct_get`):
cluster, sentinel and single-connection clients, subclasses and client-side caching
go through ``client.get``. :class:`AsyncDirectGet` does the same for ``redis.asyncio``
(~15 µs of a ~95 µs ``GET`` here); there redis-py's connection itself disconnects when
a send or read is interrupted, cancellation included.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from typing import Any

import redis
import redis.asyncio

_live: weakref.WeakSet[DirectGet] = weakref.WeakSet()


def _after_fork() -> None:  # pragma: no cover - runs in forked children
    for reader in list(_live):
        reader.idle.clear()  # the parent's sockets: never read from them here
        reader.held = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class DirectGet:
    """``GET`` on connections checked out of ``client``'s pool (see the module notes)."""

    __slots__ = ("__weakref__", "cap", "client", "held", "idle", "lock", "pool")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pool: Any = client.connection_pool
        self.idle: deque[Any] = deque()  # checked out, not in use: pop/append are atomic
        self.cap = _cap(self.pool)
        self.held = 0  # connections checked out for reads (idle or in use)
        self.lock = threading.Lock()  # guards held (taken only to check one out)
        _live.add(self)

    def __call__(self, key: bytes) -> Any:
        """The raw value under ``key`` (``None`` if absent); redis-py's errors propagate."""
        idle = self.idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._checkout()
            if conn is None:  # as many held as this pool can spare
                return self.client.get(key)
        try:
            raw = conn.retry.call_with_retry(lambda: _get_on(conn, key), lambda _: conn.disconnect())
        except BaseException:
            conn.disconnect()  # whatever was half sent or half read goes with the socket
            raise
        finally:
            idle.append(conn)
        return raw

    def _checkout(self) -> Any:
        with self.lock:
            if self.held >= self.cap:
                return None
            self.held += 1
        try:
            return self.pool.get_connection()
        except BaseException:
            with self.lock:
                self.held -= 1
            raise

    def close(self) -> None:
        """Hand the idle connections back to the pool."""
        idle = self.idle
        while idle:
            try:
                conn = idle.pop()
            except IndexError:
                break
            with self.lock:
                self.held -= 1
            self.pool.release(conn)


class AsyncDirectGet:
    """:class:`DirectGet` for a ``redis.asyncio`` client (one event loop's connections)."""

    __slots__ = ("cap", "client", "held", "idle", "pool")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pool: Any = client.connection_pool
        self.idle: list[Any] = []  # one loop's thread touches it: a list will do
        self.cap = _cap(self.pool)
        self.held = 0

    async def __call__(self, key: bytes) -> Any:
        """The raw value under ``key`` (``None`` if absent); redis-py's errors propagate."""
        idle = self.idle
        if idle:
            conn = idle.pop()
        elif self.held >= self.cap:  # as many held as this pool can spare
            return await self.client.get(key)
        else:
            self.held += 1
            try:
                conn = await self.pool.get_connection()
            except BaseException:
                self.held -= 1
                raise
        try:  # an interrupted send or read disconnects the connection itself
            raw = await conn.retry.call_with_retry(lambda: _aget_on(conn, key),
                                                   lambda _: conn.disconnect())
        finally:
            idle.append(conn)
        return raw

    async def aclose(self) -> None:
        """Hand the idle connections back to the pool."""
        idle, self.idle = self.idle, []
        self.held -= len(idle)
        for conn in idle:
            await self.pool.release(conn)


def _get_on(conn: Any, key: bytes) -> Any:
    conn.send_command("GET", key)
    return conn.read_response()


async def _aget_on(conn: Any, key: bytes) -> Any:
    await conn.send_command("GET", key)
    return await conn.read_response()


def _cap(pool: Any) -> int:
    """How many of ``pool``'s connections reads may hold: a quarter (at least one)."""
    return max(1, int(pool.max_connections) // 4)


def _plain(client: Any, client_type: Any, pool_type: Any) -> bool:
    pool: Any = getattr(client, "connection_pool", None)
    return not (
        type(client) is not client_type or type(pool) is not pool_type
        or getattr(client, "single_connection_client", False)
        or getattr(client, "connection", None) is not None
        or getattr(pool, "cache", None) is not None
        or pool.connection_kwargs.get("cache") is not None)


def direct_get_async(client: Any) -> AsyncDirectGet | None:
    """An :class:`AsyncDirectGet` for ``client``, or ``None`` (see :func:`direct_get`)."""
    if not _plain(client, redis.asyncio.Redis, redis.asyncio.ConnectionPool):
        return None
    return AsyncDirectGet(client)


def direct_get(client: Any) -> DirectGet | None:
    """A :class:`DirectGet` for ``client``, or ``None`` when it must go through ``client.get``."""
    if not _plain(client, redis.Redis, redis.ConnectionPool):
        return None
    return DirectGet(client)

