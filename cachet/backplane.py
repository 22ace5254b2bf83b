"""Many processes, one truth: cross-process L1 invalidation and a distributed load lock.

Two independent tools for a cache whose processes share a lower tier (Redis):

* :class:`RedisBackplane` keeps every process's in-process tier (L1) coherent. Each local
  ``insert``, ``invalidate`` and ``clear`` that reaches storage is published on a Redis
  pub/sub channel; every other process subscribed to it drops that key (or everything)
  from its L1, so its next ``get`` reads the shared tier. Wire it with the builder's
  ``.backplane(bp)``.
* :class:`RedisLock` keeps a cold key asked by many processes at once from being loaded
  by all of them: ``lock.get_or_insert(cache, key, factory)`` is ``cache.get_or_insert``
  under which one process (the holder of a Redis lock) runs ``factory`` and the others
  wait for the lock's release, then read the shared tier.

Design (the why behind the shape; docs/backplane.md says more):

1. **One subscriber thread per backplane, for both frontends.** redis-py's asyncio client
   does not run on trio, and a thread serves ``cachet.sync`` too. It owns a dedicated
   pub/sub connection, polls it with a short timeout (so ``close()`` ends it promptly)
   and calls the core's thread-safe ``evict_local`` / ``clear_local``. It stops and is
   joined on ``close()``.
2. **Messages are small JSON arrays** ``[version, origin, op, key]``. The key travels in a
   reversible, type-tagged form for str, bytes, int, float, bool, None and tuples of
   these (what :func:`cachet.serialize.encode_key` supports); nothing received is ever
   unpickled or evaluated. A key that has no such form is published as ``"x"``, which
   makes the receivers clear their whole L1 (coarse but safe). A message that cannot
   be read (another version, garbage) also clears L1.
3. **A process ignores its own messages** by origin: a random id per backplane (one
   backplane serves one cache).
4. **Outages bound staleness instead of hiding it.** A broken subscription is noticed at
   once when the socket fails, and within ``2 * heartbeat`` when it goes silent (a PING
   is sent every ``heartbeat`` seconds and its PONG awaited as long). On noticing, the
   backplane clears L1; while disconnected it clears L1 again every ``outage_ttl``
   seconds and retries the connection with capped exponential backoff; once subscribed
   again it clears L1 once more (messages sent meanwhile are lost). So a value
   invalidated elsewhere is served here for at most :attr:`RedisBackplane.staleness_bound`
   seconds (``2 * heartbeat + outage_ttl``) after the invalidation, connected or not,
   plus thread scheduling. Each transition is a log record on the ``cachet`` logger and
   a counter in :meth:`RedisBackplane.stats`.
5. **Publishing happens in the writer's call.** ``cachet.sync`` publishes from the
   caller's thread; ``cachet.aio`` from an anyio worker thread (asyncio and trio alike).
   When the write returns, the message is in Redis. A failed publish is counted here and
   reported by the cache as ``cache.publish_error``; the write itself stands.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import anyio
import anyio.to_thread

from .serialize import encode_key
from .telemetry.attributes import TARGET

try:  # redis is an optional dependency: `pip install 'cachet[redis]'`
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]

__all__ = ["RedisBackplane", "RedisLock", "encode_message_key", "decode_message_key"]

logger = logging.getLogger(TARGET)

MESSAGE_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Larger messages (huge keys) are published as "clear L1" instead."""

_MAX_DEPTH = 32  # tuple nesting accepted in a received key
_POLL = 0.05  # seconds a thread waits on its socket before checking for close()

_OP_CODES = {"insert": "i", "invalidate": "d", "clear": "c"}


class _Unencodable(Exception):
    """A key with no reversible message form."""


# -- keys in messages ----------------------------------------------------------------


def encode_message_key(key: Any, _depth: int = 0) -> Any:
    """The JSON-ready, type-tagged form of ``key``; raises ``TypeError`` for other types.

    >>> encode_message_key(("user", 42, b"\\x00"))
    ['t', [['s', 'user'], ['i', '42'], ['b', 'AA==']]]
    """
    t = type(key)
    if _depth > _MAX_DEPTH:
        raise TypeError("key nested too deeply")
    if t is str:
        return ["s", key]
    if t is bool:
        return ["?", key]
    if t is int:
        return ["i", str(key)]
    if t is float:
        return ["f", key.hex()]
    if key is None:
        return ["n"]
    if t is bytes:
        return ["b", base64.b64encode(key).decode("ascii")]
    if t is tuple:
        return ["t", [encode_message_key(k, _depth + 1) for k in key]]
    raise TypeError(f"no message form for a key of type {t.__name__}")


def decode_message_key(data: Any, _depth: int = 0) -> Hashable:
    """The key :func:`encode_message_key` encoded; ``ValueError`` for anything else.

    >>> decode_message_key(encode_message_key(("user", 42)))
    ('user', 42)
    """
    if _depth > _MAX_DEPTH or not isinstance(data, list) or not data:
        raise ValueError("malformed key")
    tag = data[0]
    if tag == "n" and len(data) == 1:
        return None
    if len(data) != 2:
        raise ValueError("malformed key")
    v = data[1]
    if tag == "s" and isinstance(v, str):
        return v
    if tag == "?" and isinstance(v, bool):
        return v
    if tag == "i" and isinstance(v, str) and len(v) <= 4300:  # int() digit limit
        return int(v)
    if tag == "f" and isinstance(v, str):
        return float.fromhex(v)
    if tag == "b" and isinstance(v, str):
        return base64.b64decode(v.encode("ascii"), validate=True)
    if tag == "t" and isinstance(v, list):
        return tuple(decode_message_key(k, _depth + 1) for k in v)
    raise ValueError(f"unknown key tag {tag!r}")


# -- shared client handling ----------------------------------------------------------


def _require_redis() -> None:
    if redis is None:
        raise ImportError("cachet.backplane needs redis-py: pip install 'cachet[redis]'")


def _sync_client(url_or_client: Any, socket_timeout: float | None) -> tuple[Any, bool]:
    """A blocking redis-py client and whether we own it (made it from a URL)."""
    _require_redis()
    if isinstance(url_or_client, str):
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        if url_or_client.startswith("redis+cluster://"):
            url = "redis://" + url_or_client[len("redis+cluster://"):]
            return redis.cluster.RedisCluster.from_url(url, **options), True
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        return redis.Redis.from_url(url_or_client, retry=retry, **options), True
    if isinstance(url_or_client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
        raise TypeError(
            "cachet.backplane needs a blocking client (redis.Redis or "
            "redis.cluster.RedisCluster) or a URL: it runs in threads, on asyncio and trio alike"
        )
    if not isinstance(url_or_client, (redis.Redis, redis.cluster.RedisCluster)):
        raise TypeError(f"expected a Redis URL or client, got {type(url_or_client).__name__}")
    return url_or_client, False


def _errors() -> tuple[type[BaseException], ...]:
    return (redis.exceptions.RedisError, OSError)


def _backoff(spec: float | tuple[float, float], name: str) -> tuple[float, float]:
    low, high = (spec, spec) if isinstance(spec, (int, float)) else spec
    if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(f"{name} must be a positive delay or a (min, max) pair; got {spec!r}")
    return float(low), float(high)


def _positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0 seconds; got {value!r}")
    return float(value)


# -- the backplane -------------------------------------------------------------------


class _Dead(Exception):
    """The subscription is gone or silent."""


class RedisBackplane:
    """Cross-process L1 coherence over Redis pub/sub, for ``cachet.sync`` and ``cachet.aio``.

    ``RedisBackplane(url_or_client, *, namespace="cachet")`` publishes this process's
    writes on the channel ``cachet:<namespace>`` (or ``channel``) and evicts from this
    process's L1 what the other processes publish there. Give every process of one cache
    the same namespace (usually the Redis tier's) and its own backplane object::

        bp = RedisBackplane("redis://cache:6379/0", namespace="profiles")
        cache = (Cache.builder().memory(10_000).backplane(bp)
                 .serialize(secret=SECRET)
                 .fallback(Cache.builder().redis("redis://cache:6379/0", namespace="profiles"))
                 .build())

    ``url_or_client`` is a URL (``redis+cluster://host:port`` for a cluster) or a
    blocking ``redis.Redis`` / ``redis.cluster.RedisCluster`` (which stays yours; a URL's
    client is closed with the backplane). ``heartbeat`` is how often the subscription is
    pinged; ``outage_ttl`` how long an L1 entry may live while the subscription is down;
    ``reconnect_backoff`` the ``(min, max)`` delay between reconnection attempts.
    See :attr:`staleness_bound` for the promise this makes, and :meth:`stats`.

    The cache closes its backplane (``close()``, ``async with`` exit); one backplane
    serves one cache.
    """

    def __init__(
        self,
        url_or_client: Any = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "cachet",
        channel: str | None = None,
        heartbeat: float = 1.0,
        outage_ttl: float = 1.0,
        reconnect_backoff: float | tuple[float, float] = (0.05, 2.0),
        socket_timeout: float | None = 1.0,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty str; got {namespace!r}")
        self.namespace = namespace
        self.channel = channel if channel is not None else f"cachet:{namespace}"
        self.heartbeat = _positive(heartbeat, "heartbeat")
        self.outage_ttl = _positive(outage_ttl, "outage_ttl")
        self.reconnect_backoff = _backoff(reconnect_backoff, "reconnect_backoff")
        self.origin = uuid.uuid4().hex
        self._client, self._owns = _sync_client(url_or_client, socket_timeout)
        self._evict: Callable[[Hashable], None] | None = None
        self._clear: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._counts: dict[str, int] = dict.fromkeys(
            ("published", "publish_errors", "received", "ignored_own", "evictions",
             "remote_clears", "fallback_clears", "decode_errors", "connects",
             "disconnects", "reconnect_failures", "outage_clears"), 0)

    # -- wiring (called by the builder) ------------------------------------------------

    def attach(
        self,
        *,
        evict: Callable[[Hashable], None],
        clear: Callable[[], None],
        asynchronous: bool = False,
    ) -> Callable[[str, Hashable], Any]:
        """Start the subscriber for one cache; return its ``publish(op, key)``.

        ``evict(key)`` and ``clear()`` drop this process's L1 copies (thread-safe). The
        returned callable is a plain function (``asynchronous=False``) or a coroutine
        function running the publish in a worker thread (``asynchronous=True``).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this backplane is closed")
            if self._thread is not None:
                raise RuntimeError("a backplane serves one cache: make one per cache")
            self._evict, self._clear = evict, clear
            self._thread = threading.Thread(
                target=self._run, name=f"cachet-backplane-{self.channel}", daemon=True
            )
            self._thread.start()
        return self._apublish if asynchronous else self.publish

    def publish(self, op: str, key: Hashable) -> None:
        """Tell the other processes that ``key`` changed here (``op``: insert, invalidate,
        clear; ``key`` is ``None`` for clear). Raises the Redis error if it fails."""
        payload = self._message(op, key)
        try:
            self._client.publish(self.channel, payload)
        except Exception:
            self._count("publish_errors")
            raise
        self._count("published")

    async def _apublish(self, op: str, key: Hashable) -> None:
        await anyio.to_thread.run_sync(self.publish, op, key)

    def _message(self, op: str, key: Hashable) -> bytes:
        code = _OP_CODES[op]
        body: Any = None
        if code != "c":
            try:
                body = encode_message_key(key)
            except TypeError:
                code = "x"
        payload = json.dumps([MESSAGE_VERSION, self.origin, code, body],
                             separators=(",", ":")).encode()
        if len(payload) > MAX_MESSAGE_BYTES:
            payload = json.dumps([MESSAGE_VERSION, self.origin, "x", None]).encode()
        return payload

    # -- what other processes see ------------------------------------------------------

    @property
    def staleness_bound(self) -> float:
        """Seconds after another process's write beyond which this process no longer
        serves the L1 copy it replaced, even across an outage: ``2 * heartbeat +
        outage_ttl`` (plus thread scheduling). Connected, it is the propagation delay."""
        return 2 * self.heartbeat + self.outage_ttl

    @property
    def connected(self) -> bool:
        """Whether the subscription is live now."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed (``True``) or ``timeout`` seconds passed (``False``)."""
        return self._connected.wait(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters since creation, plus ``connected``, ``origin`` and ``channel``.

        ``published`` / ``publish_errors``: this process's messages; ``received``: others'
        messages read; ``ignored_own``: our own echoes; ``evictions``, ``remote_clears``;
        ``fallback_clears``: L1 cleared for a key without a message form;
        ``decode_errors``: unreadable messages (each clears L1); ``connects``,
        ``disconnects``, ``reconnect_failures``; ``outage_clears``: L1 cleared because
        the subscription was down (on noticing it, every ``outage_ttl``, and on
        reconnecting).
        """
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out.update(connected=self.connected, origin=self.origin, channel=self.channel)
        return out

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # -- the subscriber thread ---------------------------------------------------------

    def _run(self) -> None:
        delay = self.reconnect_backoff[0]
        ever = False
        # Until the first subscription, L1 may miss messages: treat start as an outage.
        last_clear = time.monotonic()
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client.pubsub()
                pubsub.subscribe(self.channel)
                self._serve(pubsub, reconnect=ever)
            except Exception as exc:
                if self._connected.is_set():
                    self._connected.clear()
                    self._count("disconnects")
                    self._drop_all("outage_clears")
                    last_clear = time.monotonic()
                    delay = self.reconnect_backoff[0]
                    logger.warning(
                        "cachet backplane %s lost its subscription (%r): L1 cleared; "
                        "it is cleared every %.3gs until reconnected",
                        self.channel, exc, self.outage_ttl,
                        extra={"cache.event": "backplane.disconnected",
                               "backplane.channel": self.channel},
                    )
                else:
                    self._count("reconnect_failures")
                    logger.debug("cachet backplane %s: connection failed (%r)", self.channel, exc)
            finally:
                if pubsub is not None:
                    _quietly(pubsub.close)
            if self._connected.is_set():  # left _serve because of close()
                self._connected.clear()
            ever = ever or self.stats()["connects"] > 0
            # Disconnected: back off before retrying, clearing L1 every outage_ttl.
            retry_at = time.monotonic() + delay * (0.5 + random.random() / 2)
            delay = min(delay * 2, self.reconnect_backoff[1])
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_clear >= self.outage_ttl:
                    self._drop_all("outage_clears")
                    last_clear = now
                if now >= retry_at:
                    break
                self._stop.wait(min(retry_at, last_clear + self.outage_ttl) - now)

    def _serve(self, pubsub: Any, *, reconnect: bool) -> None:
        """Read messages until close() (returns) or the subscription dies (raises)."""
        subscribed = False
        started = time.monotonic()
        next_ping = started + self.heartbeat
        pong_due: float | None = None
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=_POLL)
            now = time.monotonic()
            if msg is not None:
                kind = msg["type"]
                if kind == "message":
                    self._handle(msg["data"])
                elif kind == "pong":
                    pong_due = None
                elif kind == "subscribe":
                    if subscribed:
                        # redis-py reconnected under us: messages may have been lost.
                        self._connected.clear()
                        self._count("disconnects")
                        reconnect = True
                    subscribed = True
                    self._on_subscribed(reconnect)
            if not subscribed:
                if now - started > 2 * self.heartbeat:
                    raise _Dead("no subscription confirmation")
                continue
            if pong_due is not None and now > pong_due:
                raise _Dead(f"no PONG within {self.heartbeat}s")
            if pong_due is None and now >= next_ping:
                pubsub.ping()
                pong_due = now + self.heartbeat
                next_ping = now + self.heartbeat

    def _on_subscribed(self, reconnect: bool) -> None:
        # Whatever was published before this point is lost to us: start from an empty L1.
        self._drop_all("outage_clears")
        self._count("connects")
        self._connected.set()
        if reconnect:
            logger.info(
                "cachet backplane %s reconnected: L1 cleared", self.channel,
                extra={"cache.event": "backplane.reconnected", "backplane.channel": self.channel},
            )

    def _handle(self, data: bytes) -> None:
        try:
            version, origin, code, body = json.loads(data)
            if version != MESSAGE_VERSION or not isinstance(origin, str):
                raise ValueError(f"message version {version!r}")
        except (ValueError, TypeError) as exc:
            self._count("decode_errors")
            logger.warning("cachet backplane %s: unreadable message (%r): L1 cleared",
                           self.channel, exc,
                           extra={"cache.event": "backplane.decode_error",
                                  "backplane.channel": self.channel})
            self._drop_all(None)
            return
        if origin == self.origin:
            self._count("ignored_own")
            return
        self._count("received")
        if code in ("i", "d"):
            try:
                key = decode_message_key(body)
            except (ValueError, TypeError):
                self._count("decode_errors")
                self._drop_all(None)
                return
            self._count("evictions")
            self._call(self._evict, key)
        elif code == "c":
            self._drop_all("remote_clears")
        else:  # "x", or an op from a newer version: we cannot tell which key
            self._drop_all("fallback_clears")

    def _drop_all(self, counter: str | None) -> None:
        if counter is not None:
            self._count(counter)
        self._call(self._clear)

    def _call(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # never let a hook kill the subscriber
            logger.exception("cachet backplane %s: L1 eviction failed", self.channel)

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop and join the subscriber thread; close the client if we made it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if self._owns:
            _quietly(self._client.close)

    async def aclose(self) -> None:
        """:meth:`close` from async code (in a worker thread)."""
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> RedisBackplane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisBackplane(channel={self.channel!r}, connected={self.connected})"


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        pass


# -- distributed stampede protection -------------------------------------------------

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('del', KEYS[1])
    redis.call('publish', ARGV[2], '1')
    return 1
end
return 0
"""


class RedisLock:
    """One loader across processes for a cold key: a Redis lock per key.

    ``lock.get_or_insert(cache, key, factory)`` calls ``cache.get_or_insert(key, ...)``
    with a factory of its own. When that runs (every tier missed), it takes the lock
    ``<namespace>:lock:<encoded key>`` with ``SET NX PX lease`` and a random token:

    * the holder reads the cache once more (someone may have finished just before), else
      runs ``factory``; once the cache has stored the result, the lock is released by a
      Lua compare-and-delete (only the token's owner releases) that also publishes on the
      key's channel;
    * the others subscribe to that channel and wait for the release (falling back to
      ``EXISTS`` checks at a capped exponential ``backoff``, which also notices a holder
      that crashed and whose lease ran out), then read the cache: their L2 hit. If it
      still misses (the holder failed), they compete for the lock again.
    * After ``wait_timeout`` seconds (default: ``lease``) a waiter stops waiting and runs
      ``factory`` itself (``on_timeout="load"``, the default) or raises
      :class:`TimeoutError` (``on_timeout="raise"``).

    ``await lock.aget_or_insert(cache, key, factory)`` is the same for ``cachet.aio``
    (asyncio and trio): Redis is reached from worker threads; ``factory`` may be a
    coroutine function. Within one process, combine with ``.stampede_protection()`` so
    local callers coalesce before they reach Redis.

    Limits: a holder whose factory outlives ``lease`` loses the lock and a second process
    may load too (pick a lease above your slowest load); a waiter hands the entry it read
    to the cache as its load result, so the cache writes it back (same value and stamp)
    and publishes it as an insert.
    """

    def __init__(
        self,
        url_or_client: Any = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "cachet",
        lease: float = 30.0,
        wait_timeout: float | None = None,
        backoff: float | tuple[float, float] = (0.05, 1.0),
        on_timeout: str = "load",
        socket_timeout: float | None = 1.0,
    ) -> None:
        if on_timeout not in ("load", "raise"):
            raise ValueError(f"on_timeout must be 'load' or 'raise'; got {on_timeout!r}")
        self.namespace = namespace
        self.lease = _positive(lease, "lease")
        self.wait_timeout = _positive(wait_timeout, "wait_timeout") if wait_timeout else self.lease
        self.backoff = _backoff(backoff, "backoff")
        self.on_timeout = on_timeout
        self._client, self._owns = _sync_client(url_or_client, socket_timeout)
        self._release = self._client.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            ("acquired", "contended", "checks", "woken_by_release", "woken_by_check", "timeouts",
             "reread_hits", "loads"), 0)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def stats(self) -> dict[str, int]:
        """``acquired``: locks taken; ``contended``: attempts that found it held;
        ``checks``: ``EXISTS`` checks made while waiting; ``woken_by_release`` /
        ``woken_by_check``: waits ended by the release message or by a check; ``timeouts``; ``reread_hits``: waits that ended in a hit;
        ``loads``: factory runs through this lock."""
        with self._lock:
            return dict(self._counts)

    def names(self, key: Hashable) -> tuple[bytes, bytes]:
        """The Redis key of ``key``'s lock and the channel its release is published on."""
        base = self.namespace.encode() + b":lock:" + encode_key(key)
        return base, base + b":released"

    # -- primitives (blocking) ---------------------------------------------------------

    def acquire(self, key: Hashable) -> str | None:
        """Take ``key``'s lock for ``lease`` seconds: its token, or ``None`` if held."""
        token = secrets.token_hex(16)
        name, _ = self.names(key)
        if self._client.set(name, token, nx=True, px=max(1, int(self.lease * 1000))):
            self._count("acquired")
            return token
        self._count("contended")
        return None

    def release(self, key: Hashable, token: str) -> bool:
        """Release ``key``'s lock if ``token`` still owns it (wakes the waiters)."""
        name, channel = self.names(key)
        return bool(self._release(keys=[name], args=[token, channel]))

    def wait(self, key: Hashable, timeout: float, abort: threading.Event | None = None) -> bool:
        """Block until ``key``'s lock is free (``True``) or ``timeout`` passes (``False``).

        Subscribes to the release channel first, then checks the lock, so a release in
        between is not missed; checks again at a capped exponential backoff only.
        """
        name, channel = self.names(key)
        deadline = time.monotonic() + timeout
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(channel)
            delay = self.backoff[0]
            check_at = time.monotonic()  # check at once, after subscribing
            subscribed = False
            while True:
                now = time.monotonic()
                if abort is not None and abort.is_set():
                    return False
                if subscribed and now >= check_at:
                    held = self._client.exists(name)
                    self._count("checks")
                    if not held:
                        self._count("woken_by_check")
                        return True
                    check_at = now + delay
                    delay = min(delay * 2, self.backoff[1])
                if now >= deadline:
                    return False
                msg = pubsub.get_message(timeout=max(0.0, min(_POLL, deadline - now, check_at - now)))
                if msg is None:
                    continue
                if msg["type"] == "subscribe":
                    subscribed = True
                elif msg["type"] == "message":
                    self._count("woken_by_release")
                    return True
        finally:
            _quietly(pubsub.close)

    # -- get_or_insert across processes -----------------------------------------------

    def get_or_insert(self, cache: Any, key: Hashable, factory: Callable[[], Any]) -> Any:
        """``cache.get_or_insert(key, factory)`` (``cachet.sync``) with one loader across
        processes; see the class docs. Returns the ``CacheEntry``."""
        held: list[str] = []
        try:
            return cache.get_or_insert(key, self._loader(key, factory, cache.get, held))
        finally:
            for token in held:  # after the cache stored the value: waiters will find it
                self.release(key, token)

    def _loader(self, key: Hashable, factory: Callable[[], Any],
                reread: Callable[[Hashable], Any], held: list[str]) -> Callable[[], Any]:
        def load() -> Any:
            deadline = time.monotonic() + self.wait_timeout
            while True:
                token = self.acquire(key)
                if token is not None:
                    held.append(token)
                    entry = reread(key)  # a holder may have finished just before
                    if entry is not None:
                        return entry
                    self._count("loads")
                    return factory()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.wait(key, remaining):
                    return self._timed_out(key, factory)
                entry = reread(key)
                if entry is not None:
                    self._count("reread_hits")
                    return entry

        return load

    async def aget_or_insert(self, cache: Any, key: Hashable, factory: Callable[[], Any]) -> Any:
        """:meth:`get_or_insert` for ``cachet.aio`` (asyncio and trio): Redis is reached
        from worker threads; ``factory`` may be a coroutine function."""
        held: list[str] = []
        try:
            return await cache.get_or_insert(key, self._aloader(key, factory, cache.get, held))
        finally:
            with anyio.CancelScope(shield=True):
                for token in held:
                    await anyio.to_thread.run_sync(self.release, key, token)

    def _aloader(self, key: Hashable, factory: Callable[[], Any],
                 reread: Callable[[Hashable], Any], held: list[str]) -> Callable[[], Awaitable[Any]]:
        async def call(fn: Callable[..., Any], *args: Any) -> Any:
            result = fn(*args)
            if hasattr(result, "__await__"):
                result = await result
            return result

        async def load() -> Any:
            deadline = time.monotonic() + self.wait_timeout
            while True:
                token = await anyio.to_thread.run_sync(self.acquire, key)
                if token is not None:
                    held.append(token)
                    entry = await call(reread, key)
                    if entry is not None:
                        return entry
                    self._count("loads")
                    return await call(factory)
                remaining = deadline - time.monotonic()
                abort = threading.Event()
                try:
                    woke = remaining > 0 and await anyio.to_thread.run_sync(
                        self.wait, key, remaining, abort, abandon_on_cancel=True)
                finally:
                    abort.set()  # a cancelled wait's thread ends within a poll
                if not woke:
                    self._count("timeouts")
                    if self.on_timeout == "raise":
                        raise TimeoutError(f"waited {self.wait_timeout}s for the lock of {key!r}")
                    self._count("loads")
                    return await call(factory)
                entry = await call(reread, key)
                if entry is not None:
                    self._count("reread_hits")
                    return entry

        return load

    def _timed_out(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        self._count("timeouts")
        if self.on_timeout == "raise":
            raise TimeoutError(f"waited {self.wait_timeout}s for the lock of {key!r}")
        self._count("loads")
        return factory()

    def close(self) -> None:
        """Close the client if this lock made it (from a URL)."""
        if self._owns:
            _quietly(self._client.close)

    def __enter__(self) -> RedisLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
