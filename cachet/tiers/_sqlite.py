"""The embedded L2: a byte tier in a SQLite file (stdlib ``sqlite3``), shared by threads and processes.

Layout: one table, ``cachet_v1``, one row per ``(namespace, key)``; the rowid grows with
every write, so rowid order is write order (oldest first for eviction). ``expires_at``
(``cached_at`` + the entry's ttl, else the tier's) is indexed per namespace so expired
rows can be swept without a scan.

Rules:

1. Keys and values are ``bytes``: the tier sits below a serialization boundary. The
   builder's ``.sqlite()`` gives it the default codec when no ``.serialize()`` is above it.
2. Every connection runs in WAL mode with a busy timeout, so readers never wait for the
   writer, writers wait at most ``timeout`` seconds, and two processes may create the
   file at once. Any ``sqlite3`` failure (locked past the timeout, not a database,
   malformed) is raised as :class:`~cachet.TierError`: never a hang, never a raw
   ``sqlite3`` error.
3. A read honours the row's expiry with the same rule as SPEC §2 (strict ``>``, entry
   ttl over tier ttl), so an expired row reads as a miss.
4. Writes sweep expired rows of this namespace at most once per ``sweep_interval`` and
   keep the namespace within ``max_entries`` (checked every few writes, oldest first).
5. Connections are pooled (one per concurrently running thread, reused), opened lazily,
   dropped in a forked child, and all closed by :meth:`SQLiteTier.close`.
"""

from __future__ import annotations

import collections
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from .._core.clock import Clock, SystemClock
from .._core.entry import CacheEntry, check_stamps
from .._core.errors import DecodeError, TierError
from .._core.policy import InsertOutcome
from .._core.tier import Change
from ._rows import entries

T = TypeVar("T")

TABLE = "cachet_v1"

_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " namespace TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
    " cached_at REAL, ttl REAL, expires_at REAL,"
    " UNIQUE (namespace, key))",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (namespace, expires_at)"
    " WHERE expires_at IS NOT NULL",
)
_GET = f"SELECT value, cached_at, ttl FROM {TABLE} WHERE namespace = ? AND key = ?"
_PUT = (
    f"INSERT OR REPLACE INTO {TABLE} (namespace, key, value, cached_at, ttl, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_DEL = f"DELETE FROM {TABLE} WHERE namespace = ? AND key = ?"
# update's transaction: the write lock taken before the read, so no writer comes between.
_BEGIN = "BEGIN IMMEDIATE"
_CLEAR = f"DELETE FROM {TABLE} WHERE namespace = ?"
_GET_MANY = f"SELECT key, value, cached_at, ttl FROM {TABLE} WHERE namespace = ? AND key IN "
_MANY = 500  # keys a query: well under SQLite's oldest limit of 999 parameters
_COUNT = f"SELECT COUNT(*) FROM {TABLE} WHERE namespace = ?"
_SWEEP = f"DELETE FROM {TABLE} WHERE namespace = ? AND expires_at IS NOT NULL AND expires_at < ?"
# NOT INDEXED: walk the table in rowid (write) order and stop after LIMIT matches.
_EVICT = (
    f"DELETE FROM {TABLE} WHERE rowid IN (SELECT rowid FROM {TABLE} NOT INDEXED"
    " WHERE namespace = ? ORDER BY rowid LIMIT ?)"
)

_live: weakref.WeakSet[SQLiteTier] = weakref.WeakSet()


def _after_fork() -> None:  # pragma: no cover - runs in forked children
    for tier in list(_live):
        tier._forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class SQLiteTier:
    """A byte tier in a SQLite database file, safe across threads and processes.

    ``path`` is a file (created if missing) or ``":memory:"`` (private to this tier).
    ``namespace`` separates caches sharing one file: ``clear()`` and ``len()`` see only
    their own namespace. ``timeout`` bounds every wait for a lock, in seconds.
    ``max_entries`` bounds the namespace's rows (oldest written are evicted first); with
    ``cull``, a write past the bound evicts that fraction of ``max_entries`` at once
    (Django's ``CULL_FREQUENCY``), checked on every write.
    Expired rows are swept by writes at most every ``sweep_interval`` seconds.

    The builder's ``.sqlite(path, **kw)`` creates one, passes the cache's clock and the
    tier's ttl and name, and puts the default codec above it. Used directly it stores
    ``bytes`` keys and values:

    >>> tier = SQLiteTier()
    >>> tier.insert(b"k", CacheEntry(b"v", cached_at=0.0))
    <InsertOutcome.ACCEPTED: 'accepted'>
    >>> tier.get(b"k").value
    b'v'
    >>> tier.close()
    """

    bytes_only = True
    """Keys and values are bytes: the builder puts the default codec above it if nothing else is."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        namespace: str = "cachet",
        timeout: float = 5.0,
        max_entries: int | None = None,
        sweep_interval: float = 60.0,
        cull: float | None = None,
        clock: Clock | None = None,
        ttl: float | None = None,
        name: str = "sqlite",
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty str; got {namespace!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds; got {timeout!r}")
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries <= 0):
            raise ValueError(f"max_entries must be an int >= 1 (or None for unbounded); got {max_entries!r}")
        if cull is not None and (max_entries is None or isinstance(cull, bool)
                                 or not isinstance(cull, int | float) or not 0 < cull <= 1):
            raise ValueError(f"cull must be a fraction in (0, 1] of max_entries (which it needs); got {cull!r}")
        if not sweep_interval > 0:
            raise ValueError(f"sweep_interval must be > 0 seconds; got {sweep_interval!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds; got {ttl!r}")
        self.path = os.fspath(path)
        self.namespace = namespace
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self.sweep_interval = float(sweep_interval)
        self.name = name
        self._clock_given = clock is not None
        self._now: Callable[[], float] = time.time
        self._set_clock(clock)
        self.ttl = ttl
        self._memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        # Idle connections. deque.pop/append are atomic, so taking one needs no lock.
        self._idle: collections.deque[sqlite3.Connection] = collections.deque()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards _all, schema setup, and the :memory: connection
        self._ready = False
        self._closed = False
        self._next_sweep = float("-inf")
        self._writes = 0
        self._check_every = 1 if max_entries is None or cull is not None else max(1, min(100, max_entries // 20))
        # Rows a write past max_entries evicts at the least (cull's fraction; else the excess).
        self._cull = 0 if cull is None or max_entries is None else max(1, math.floor(max_entries * cull + 1e-9))
        _live.add(self)

    def _set_clock(self, clock: Clock | None) -> None:
        self.clock = clock if clock is not None else SystemClock()
        self._now = time.time if type(self.clock) is SystemClock else self.clock.now

    def bind_cache(self, *, clock: Clock, ttl: float | None, name: str) -> None:
        """Called by the builder: the cache's clock (unless one was given), tier ttl and name."""
        if not self._clock_given:
            self._set_clock(clock)
        if self.ttl is None:
            self.ttl = ttl
        self.name = name

    # -- the tier protocol -------------------------------------------------------------

    def get(self, key: bytes) -> CacheEntry[bytes] | None:
        """The entry stored for ``key``, or ``None`` if there is none or it has expired."""
        try:
            row = self.get_row(key)
        except DecodeError:  # a damaged row: a miss (a boundary above counts it)
            return None
        return None if row is None else CacheEntry(*row)

    def get_row(self, key: bytes) -> tuple[bytes, float | None, float | None] | None:
        """``get`` as a ``(value, cached_at, ttl)`` tuple: the boundary builds one entry, not
        two. A row whose stamps this tier did not write (``check_stamps``: a damaged file)
        raises ``DecodeError``, which the boundary above counts as a miss."""
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._take("get")
        try:
            row: tuple[bytes, float | None, float | None] | None = conn.execute(
                _GET, (self.namespace, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._error("get", exc) from exc
        finally:
            self._give(conn)
        return None if row is None else self._live(row)

    def get_many(self, keys: list[bytes]) -> list[CacheEntry[bytes] | None]:
        """The entry of each key, in order, in one query (``None`` where ``get`` has none)."""
        return entries(self.get_rows(keys))

    def get_rows(self, keys: list[bytes]) -> list[Any]:
        """``get_row`` of each key from one connection, ``_MANY`` keys a query; a damaged
        row is its ``DecodeError``, in its place (``_rows.py``)."""
        for key in keys:
            if type(key) is not bytes:
                raise _not_bytes("key", key)
        distinct = list(dict.fromkeys(keys))
        found: dict[bytes, tuple[bytes, float | None, float | None]] = {}
        conn = self._take("get")
        try:
            for i in range(0, len(distinct), _MANY):
                chunk = distinct[i:i + _MANY]
                query = f"{_GET_MANY}({', '.join('?' * len(chunk))})"
                for key, *row in conn.execute(query, (self.namespace, *chunk)):
                    found[key] = tuple(row)  # type: ignore[assignment]
        except sqlite3.Error as exc:
            raise self._error("get", exc) from exc
        finally:
            self._give(conn)
        rows: list[Any] = []
        for key in keys:
            row = found.get(key)
            try:
                rows.append(None if row is None else self._live(row))
            except DecodeError as exc:
                rows.append(exc)
        return rows

    def _live(self, row: tuple[bytes, float | None, float | None]) -> tuple[bytes, float | None, float | None] | None:
        """``row`` if it has not expired (``None`` if it has); ``DecodeError`` for stamps this
        tier did not write (a damaged file)."""
        cached_at, ttl = row[1], row[2]
        check_stamps(cached_at, ttl)
        eff = ttl if ttl is not None else self.ttl
        if eff is not None:
            now = self._now()
            if cached_at is None or cached_at > now or now - cached_at > eff:
                return None
        return row

    def insert(self, key: bytes, entry: CacheEntry[bytes]) -> InsertOutcome:
        """Store ``entry`` (its value must be ``bytes``) under ``key``, replacing any row."""
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        self._run("insert", _PUT, self._put_args(key, entry))
        self._wrote()
        return InsertOutcome.ACCEPTED

    def update(self, key: bytes, change: Change) -> Any:
        """Apply ``change`` to ``key``'s row (the atomic step of ``_core/tier.py``); its result.

        Read, ``change`` and write run in one ``BEGIN IMMEDIATE`` transaction, so no other
        writer of the file (thread, tier or process) slips in between; waiting for it is
        bounded by the busy timeout. If anything raises, the transaction is rolled back.
        """
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        args = (self.namespace, key)
        conn = self._take("update")
        try:
            conn.execute(_BEGIN)
            new, result = change(_stored(conn.execute(_GET, args).fetchone()))
            if new is None:
                conn.execute(_DEL, args)
            elif isinstance(new, CacheEntry):  # else KEEP
                conn.execute(_PUT, self._put_args(key, new))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise self._error("update", exc) from exc
            raise
        finally:
            self._give(conn)
        if isinstance(new, CacheEntry):
            self._wrote()
        return result

    def invalidate(self, key: bytes) -> None:
        """Remove ``key``'s row, if any."""
        if type(key) is not bytes:
            raise _not_bytes("key", key)
        self._run("invalidate", _DEL, (self.namespace, key))

    def clear(self) -> None:
        """Remove every row of this namespace (other namespaces in the file are untouched)."""
        self._run("clear", _CLEAR, (self.namespace,))

    def len(self) -> int:
        """Rows in this namespace, expired ones not yet swept included."""
        row = self._with_conn("len", lambda c: c.execute(_COUNT, (self.namespace,)).fetchone())
        return int(row[0])

    def __len__(self) -> int:
        return self.len()

    # -- maintenance -------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete this namespace's expired rows now; returns how many went."""
        now = self._now()
        self._next_sweep = now + self.sweep_interval
        return self._run("sweep", _SWEEP, (self.namespace, now))

    def _put_args(self, key: bytes, entry: CacheEntry[bytes]) -> tuple[Any, ...]:
        """``_PUT``'s parameters for ``entry``: ``expires_at`` from its ttl, else the tier's."""
        value = entry.value
        if not isinstance(value, bytes):
            raise _not_bytes("value", value)
        cached_at, ttl = entry.cached_at, entry.ttl
        eff = ttl if ttl is not None else self.ttl
        expires_at = None if eff is None else (cached_at + eff if cached_at is not None else float("-inf"))
        return (self.namespace, key, value, cached_at, ttl, expires_at)

    def _wrote(self) -> None:
        """After a write: sweep and bound the namespace when due (rule 4)."""
        self._writes += 1
        if self._writes % self._check_every == 0 or self._now() >= self._next_sweep:
            self._maintain()

    def _maintain(self) -> None:
        if self._now() >= self._next_sweep:
            self.sweep()
        if self.max_entries is not None:
            rows = self.len()
            excess = rows - self.max_entries
            if excess > 0:  # the newest row (this write's) stays
                self._run("evict", _EVICT, (self.namespace, min(max(excess, self._cull), rows - 1)))

    def close(self) -> None:
        """Close every connection; later operations raise ``TierError``. Idempotent."""
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
            self._idle.clear()
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> SQLiteTier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteTier({self.path!r}, namespace={self.namespace!r})"

    # -- connections -------------------------------------------------------------------

    def _run(self, op: str, sql: str, args: tuple[Any, ...]) -> int:
        return self._with_conn(op, lambda c: c.execute(sql, args).rowcount)

    def _with_conn(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._take(op)
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise self._error(op, exc) from exc
        finally:
            self._give(conn)

    def _take(self, op: str) -> sqlite3.Connection:
        if self._memory:
            # One private database, so one connection, used by one thread at a time.
            if not self._lock.acquire(timeout=self.timeout):
                raise TierError(self.name, op, f"tier {self.name!r}: timed out waiting for the database")
            try:
                if self._closed:
                    raise TierError(self.name, op, f"tier {self.name!r} is closed")
                if not self._all:
                    self._all.append(self._connect(op))
                return self._all[0]
            except BaseException:
                self._lock.release()
                raise
        try:
            return self._idle.pop()
        except IndexError:
            pass
        if self._closed:
            raise TierError(self.name, op, f"tier {self.name!r} is closed")
        conn = self._connect(op)
        with self._lock:
            if self._closed:
                conn.close()
                raise TierError(self.name, op, f"tier {self.name!r} is closed")
            self._all.append(conn)
        return conn

    def _give(self, conn: sqlite3.Connection) -> None:
        if self._memory:
            self._lock.release()
        elif not self._closed:
            self._idle.append(conn)
            if self._closed:  # close() ran meanwhile and missed this one
                self._idle.clear()
                conn.close()
        else:
            conn.close()

    def _connect(self, op: str) -> sqlite3.Connection:
        deadline = time.monotonic() + self.timeout
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False, uri=self.path.startswith("file:"))
        except sqlite3.Error as exc:
            raise self._error(op, exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if not self._memory:
                # Switching to WAL needs a moment alone with the file; the busy handler does
                # not always cover it on a cold start by two processes, so retry until the
                # deadline.
                self._retry(deadline, lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                conn.execute("PRAGMA synchronous = NORMAL")
            if not self._ready:
                for stmt in _SCHEMA:
                    self._retry(deadline, partial(conn.execute, stmt))
                self._ready = True
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(op, exc) from exc
        return conn

    @staticmethod
    def _retry(deadline: float, fn: Callable[[], object]) -> None:
        delay = 0.001
        while True:
            try:
                fn()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _forget_connections(self) -> None:
        """In a forked child: the parent's connections must not be used (nor closed) here."""
        self._idle = collections.deque()
        self._all = []
        self._lock = threading.Lock()

    def _error(self, op: str, exc: sqlite3.Error) -> TierError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            why = f"the database stayed locked for more than its timeout ({self.timeout}s)"
        elif "not a database" in text or "malformed" in text or "corrupt" in text:
            why = f"{self.path!r} is not a usable SQLite database (corrupt?)"
        else:
            why = text
        return TierError(self.name, op, f"tier {self.name!r} ({self.path}) failed during {op}: {why}: {exc!r}")


def _stored(row: tuple[bytes, float | None, float | None] | None) -> CacheEntry[bytes] | None:
    """The entry of a row as stored, expired or not; ``None`` for none or damaged stamps."""
    if row is None:
        return None
    try:
        check_stamps(row[1], row[2])
    except DecodeError:
        return None
    return CacheEntry(*row)


def _not_bytes(what: str, obj: object) -> TypeError:
    return TypeError(
        f"SQLiteTier stores bytes, got a {what} of type {type(obj).__name__}: put a serialization "
        f"boundary above it (builder.serialize(), which .sqlite() adds for you) or encode "
        f"{what}s yourself"
    )
