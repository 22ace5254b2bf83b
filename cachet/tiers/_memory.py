"""The in-process tier: a bounded map of ``CacheEntry`` guarded by one lock.

LRU and FIFO run on an ``OrderedDict``; LFU and random replacement use cachetools'
``LFUCache`` / ``RRCache``. An LRU read does not reorder the map itself: it appends the
key to a bounded read buffer (one C call, safe from any thread without the lock), and
the tier replays the buffer in order, under its lock, before anything that depends on
the order (an insert that may evict, a sweep). This is Caffeine's read buffer: reads
never contend for the lock, and a read that races a removal cannot fail. The buffer
holds the last ``READ_BUFFER`` reads between two writes; older ones are dropped, so
under a long run of reads with no write the order is approximate. Age-based removal reads the
injected clock and removes only what SPEC §2 counts expired (strict ``>``, per-entry
ttl over tier ttl), in a sweep at most once per tier ttl, so hits never pay for it.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

import cachetools

from .._core.clock import Clock, SystemClock
from .._core.entry import CacheEntry, new_entry
from .._core.errors import SerializationError
from .._core.policy import InsertOutcome
from .._core.tier import Change

POLICIES = ("lru", "lfu", "fifo", "rr")
READ_BUFFER = 1024
"""How many LRU reads are remembered between two writes (older ones are dropped)."""
_ACCEPTED = InsertOutcome.ACCEPTED
_NONE: Any = object()
_SWEEP: Any = object()

Listener = Callable[[str, Hashable], None]  # (event: "eviction" | "expired", key)


class MemoryTier:
    """Thread-safe in-memory storage. Never blocks, so ``cachet.aio`` calls it inline.

    ``max_entries`` bounds the count; ``max_size`` with ``getsizeof(entry)`` bounds the
    total weight instead. ``clock`` and ``ttl`` (set by the builder's ``.memory()``) let it
    drop expired entries on its own; ``grace`` keeps them that much longer (fail-safe).
    """

    nonblocking = True

    def __init__(
        self,
        max_entries: int | None = None,
        *,
        policy: str = "lru",
        max_size: float | None = None,
        getsizeof: Callable[[CacheEntry[Any]], float] | None = None,
        clock: Clock | None = None,
        ttl: float | None = None,
        grace: float = 0.0,
        cull: float | None = None,
    ) -> None:
        check_memory_args(max_entries, policy, max_size, getsizeof, cull)
        self.policy = policy
        self.max_entries = max_entries
        self.max_size = max_size
        self._getsizeof = getsizeof
        self._clock = clock
        self._now = None if clock is None else (time.time if type(clock) is SystemClock else clock.now)
        self._ttl = ttl
        self._grace = grace  # expired entries are kept this much longer (fail-safe)
        self._next_sweep = float("-inf")
        self._weight = 0.0
        # How many of the oldest entries an insert past max_entries evicts (``cull``: that
        # fraction of max_entries, as Django's CULL_FREQUENCY; else one).
        self._cull = 1 if cull is None or max_entries is None else max(1, math.floor(max_entries * cull + 1e-9))
        self.listener: Listener | None = None
        # (row, index): where evictions are counted, by an increment instead of a listener
        # call (a full L1 evicts on every insert). Set by the builder when no telemetry listens.
        self.evictions_into: tuple[list[int], int] | None = None
        self._lock = threading.Lock()
        bound = max_entries if max_size is None else max_size
        self._data: Any
        lru = policy == "lru" and bound is not None
        if policy in ("lfu", "rr") and bound is not None:
            cls = cachetools.LFUCache if policy == "lfu" else cachetools.RRCache
            self._data = _Reporting(cls, self, bound, getsizeof)
            lru = False
        else:
            self._data = OrderedDict() if bound is not None else {}
        # LRU reads, replayed in order by _replay_reads before the order matters.
        self._reads: deque[Hashable] | None = deque(maxlen=READ_BUFFER) if lru else None
        touch = self._reads.append if self._reads is not None else None
        # A subclass that overrides get or insert is called as written: no inline reads
        # around it, no specialised insert over it.
        mine = type(self).get is MemoryTier.get and type(self).insert is MemoryTier.insert
        if mine and max_size is None and cull is None and not isinstance(self._data, _Reporting):
            self.insert = self._insert_counted  # type: ignore[method-assign]
        # What the core's hit path reads directly: (lock, mapping, LRU touch or None).
        self.inline: tuple[Any, Any, Any] | None = (self._lock, self._data, touch) if mine else None

    # -- reads -------------------------------------------------------------------------

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        """The entry for ``key``, or ``None`` (an LRU tier marks it used)."""
        entry = self._data.get(key)
        if entry is not None and self._reads is not None:
            self._reads.append(key)
        return entry  # type: ignore[no-any-return]

    def _replay_reads(self) -> None:
        """Apply the buffered LRU reads, oldest first (the caller holds the lock). Reads
        appended meanwhile by other threads wait for the next replay."""
        reads = self._reads
        if not reads:
            return
        data, popleft = self._data, reads.popleft
        for _ in range(len(reads)):
            key = popleft()
            if key in data:
                data.move_to_end(key)

    # -- writes ------------------------------------------------------------------------

    def _insert_counted(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        """``insert`` for a mapping bounded by entry count (or not at all): the common
        case, without :meth:`insert`'s event list; a sweep that is due goes that way."""
        evicted: Any = _NONE
        lock = self._lock
        lock.acquire()  # not ``with``: half its cost on CPython 3.11, on every promotion
        try:
            if self._now is not None and self._now() >= self._next_sweep:
                evicted = _SWEEP
            else:
                data = self._data
                bound = self.max_entries
                if self._reads:
                    self._replay_reads()
                if bound is not None and key in data:
                    data.move_to_end(key)
                data[key] = entry
                if bound is not None and len(data) > bound:
                    evicted = data.popitem(last=False)[0]
        finally:
            lock.release()
        if evicted is _SWEEP:
            return MemoryTier.insert(self, key, entry)
        if evicted is not _NONE:
            into = self.evictions_into
            if into is not None:
                into[0][into[1]] += 1
            elif self.listener is not None:
                self.listener("eviction", evicted)
        return _ACCEPTED

    def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        events: list[tuple[str, Hashable]] = []
        with self._lock:
            outcome = self._put(key, entry, events)
        if events:
            self._emit(events)
        return outcome

    def _put(self, key: Hashable, entry: CacheEntry[Any], events: list[tuple[str, Hashable]]) -> InsertOutcome:
        """Store ``entry`` (the caller holds the lock), evicting as the bound requires."""
        self._replay_reads()
        if self._now is not None and self._now() >= self._next_sweep:
            self._maybe_sweep(events)
        data = self._data
        if isinstance(data, _Reporting):
            try:
                data[key] = entry
            except ValueError:  # heavier than the whole tier
                return InsertOutcome.REJECTED
            events.extend(("eviction", k) for k in data.drain())
        elif self.max_size is not None:
            weight = float(self._getsizeof(entry)) if self._getsizeof else 1.0
            if weight > self.max_size:
                return InsertOutcome.REJECTED
            self._pop(key)
            while data and self._weight + weight > self.max_size:
                k, v = data.popitem(last=False)
                self._weight -= self._weigh(v)
                events.append(("eviction", k))
            data[key] = entry
            self._weight += weight
        else:
            if key in data and isinstance(data, OrderedDict):
                data.move_to_end(key)
            data[key] = entry
            if self.max_entries is not None and len(data) > self.max_entries:
                for _ in range(min(self._cull, len(data) - 1)):  # the new entry stays
                    k, _ = data.popitem(last=False)
                    events.append(("eviction", k))
        return InsertOutcome.ACCEPTED

    def update(self, key: Hashable, change: Change) -> Any:
        """Apply ``change`` to the entry of ``key`` under the tier's lock (the atomic step
        of ``_core/tier.py``); its result."""
        events: list[tuple[str, Hashable]] = []
        with self._lock:
            new, result = change(self._data.get(key))
            if new is None:
                self._pop(key)
            elif isinstance(new, CacheEntry):  # else KEEP
                self._put(key, new, events)
        if events:
            self._emit(events)
        return result

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self._pop(key)

    def _pop(self, key: Hashable) -> None:
        """Remove ``key`` if present (the caller holds the lock), keeping the weight right."""
        old = self._data.pop(key, None)
        if old is not None and self.max_size is not None and not isinstance(self._data, _Reporting):
            self._weight -= self._weigh(old)

    def clear(self) -> None:
        with self._lock:
            if self._reads is not None:
                self._reads.clear()
            self._data.clear()
            self._weight = 0.0

    def len(self) -> int:
        return len(self._data)

    def close(self) -> None:
        """Drop everything: a closed cache serves nothing, not even a memoized hit."""
        self.clear()

    def __len__(self) -> int:
        return len(self._data)

    # -- age ---------------------------------------------------------------------------

    def expire(self) -> int:
        """Remove every entry that SPEC §2 counts expired now; returns how many."""
        events: list[tuple[str, Hashable]] = []
        with self._lock:
            self._next_sweep = float("-inf")
            self._maybe_sweep(events)
        self._emit(events)
        return len(events)

    def _maybe_sweep(self, events: list[tuple[str, Hashable]]) -> None:
        if self._now is None:
            return
        now = self._now()
        if now < self._next_sweep:
            return
        self._next_sweep = now + (self._ttl or 60.0)
        tier_ttl = self._ttl
        dead = []
        for key, e in self._data.items():
            ttl = e.ttl if e.ttl is not None else tier_ttl
            if ttl is None:
                continue
            at = e.cached_at
            if at is None or at > now or now - at > ttl + self._grace:
                dead.append(key)
        for key in dead:
            old = self._data.pop(key)
            if self.max_size is not None and not isinstance(self._data, _Reporting):
                self._weight -= self._weigh(old)
            events.append(("expired", key))

    def _weigh(self, entry: CacheEntry[Any]) -> float:
        return float(self._getsizeof(entry)) if self._getsizeof else 1.0

    def _emit(self, events: list[tuple[str, Hashable]]) -> None:
        into, listener = self.evictions_into, self.listener
        for event, key in events:
            if into is not None and event == "eviction":
                into[0][into[1]] += 1
            elif listener is not None:
                listener(event, key)

    def __repr__(self) -> str:
        return f"MemoryTier(max_entries={self.max_entries}, policy={self.policy!r})"


class CopyingMemoryTier(MemoryTier):
    """A memory tier that keeps a pickled copy of each value, so that changing a value
    after ``insert`` (or after ``get``) does not change what the cache holds, as Django's
    ``LocMemCache`` promises. Each read unpickles; ``getsizeof`` weighs the stored copy.
    A value that cannot be pickled raises ``SerializationError`` (its cause the pickling
    error) and is not stored. What ``.memory(..., copy=True)`` builds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The core's hit reads in place through a view that hands out thawed copies.
        touch = self._reads.append if self._reads is not None else None
        self.inline = (self._lock, _Thawing(self._data), touch)

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        entry = super().get(key)
        return None if entry is None else _thawed(entry)

    def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        return super().insert(key, _frozen(entry))

    def update(self, key: Hashable, change: Change) -> Any:
        def on_copies(stored: CacheEntry[Any] | None) -> tuple[Any, Any]:
            new, result = change(None if stored is None else _thawed(stored))
            return (_frozen(new) if isinstance(new, CacheEntry) else new), result

        return super().update(key, on_copies)

    def __repr__(self) -> str:
        return f"CopyingMemoryTier(max_entries={self.max_entries}, policy={self.policy!r})"


class _Thawing:
    """A copying tier's mapping as the hit path reads it: ``get`` gives a thawed copy."""

    __slots__ = ("_get",)

    def __init__(self, data: Any) -> None:
        self._get = data.get

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        entry = self._get(key)
        return None if entry is None else _thawed(entry)


def _frozen(entry: CacheEntry[Any]) -> CacheEntry[bytes]:
    try:
        data = pickle.dumps(entry.value, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # PicklingError, or whatever the value's __reduce__ raised
        raise SerializationError(f"cannot copy a {type(entry.value).__name__} into the cache: {exc}") from exc
    return new_entry(data, entry.cached_at, entry.ttl)


def _thawed(entry: CacheEntry[bytes]) -> CacheEntry[Any]:
    return new_entry(pickle.loads(entry.value), entry.cached_at, entry.ttl)


class _Reporting:
    """A cachetools cache whose evictions are recorded, so the tier can report them."""

    def __init__(self, cls: Any, tier: MemoryTier, bound: float, getsizeof: Any) -> None:
        evicted: list[Hashable] = []

        class _Cache(cls):  # type: ignore[misc]
            def popitem(self) -> tuple[Any, Any]:
                key, value = super().popitem()
                evicted.append(key)
                return key, value

        self._cache = _Cache(bound, getsizeof=getsizeof)
        self._evicted = evicted
        self.get = self._cache.get
        self.pop = self._cache.pop
        self.clear = self._cache.clear
        self.items = self._cache.items

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self._cache[key] = value

    def __len__(self) -> int:
        return len(self._cache)

    def drain(self) -> list[Hashable]:
        out = list(self._evicted)
        self._evicted.clear()
        return out


def check_memory_args(
    max_entries: int | None, policy: str, max_size: float | None, getsizeof: Any,
    cull: float | None = None,
) -> None:
    """Raise ``ValueError`` / ``TypeError`` for a memory tier that cannot work as asked."""
    if cull is not None:
        if isinstance(cull, bool) or not isinstance(cull, int | float) or not 0 < cull <= 1:
            raise ValueError(f"cull must be a fraction of max_entries in (0, 1]; got {cull!r}")
        if max_entries is None or policy not in ("lru", "fifo"):
            raise ValueError("cull= needs max_entries= and the lru or fifo policy")
    if policy not in POLICIES:
        raise ValueError(f"memory policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    if max_entries is not None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise TypeError(f"max_entries must be an int or None, not {type(max_entries).__name__}")
        if max_entries <= 0:
            raise ValueError(f"max_entries must be >= 1 (or None for unbounded); got {max_entries}")
    if max_size is not None:
        if max_entries is not None:
            raise ValueError("give max_entries or max_size (with getsizeof), not both")
        if not max_size > 0:
            raise ValueError(f"max_size must be > 0; got {max_size!r}")
        if getsizeof is None:
            raise ValueError("max_size needs getsizeof=, a function giving each entry's weight")
    elif getsizeof is not None:
        raise ValueError("getsizeof= only makes sense with max_size=")
