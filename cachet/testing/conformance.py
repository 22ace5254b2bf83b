"""The tier conformance suite: run cachet's tier contract against your own tier.

A tier is four methods, ``get``, ``insert``, ``invalidate`` and ``clear``, plus an
optional ``len`` (SPEC §7); plain methods for a sync tier, coroutines for an async one.
This module checks that a tier keeps that contract the way the cache relies on it:

- ``get`` of a key never inserted is ``None``; ``get`` after ``insert`` returns a
  :class:`~cachet.CacheEntry` with the same value, ``cached_at`` and ``ttl`` (a tier
  never stamps, re-stamps or rounds an entry: the core does the stamping);
- ``insert`` returns an :class:`~cachet.InsertOutcome` and replaces an older entry;
- ``invalidate`` removes one key (a missing key is no error); ``clear`` removes all;
- ``len()``, where present, counts entries;
- keys equal in Python are one key (typed tiers); byte tiers (``bytes_only = True``)
  take any ``bytes`` key and value, empty and binary ones included;
- an expired entry reads as a miss or as itself, never as something else;
- concurrent callers (threads for a sync tier, tasks for an async one) do not lose
  writes;
- a random sequence of operations (hypothesis) reads like a ``dict`` would;
- ``update(key, change)``, where present (the atomic step of the framework operations,
  ``cachet._core.tier``), applies its change and loses no write to concurrent callers.

Two ways to run it. In pytest, subclass :class:`TierContract`::

    from cachet.testing.conformance import TierContract

    class TestMyTier(TierContract):
        def make_tier(self):
            return MyTier()

Anywhere else, :func:`check_tier` runs every check and raises
:class:`ConformanceError` listing the failures::

    check_tier(MyTier)

Each check gets a fresh tier from the factory (which may be a coroutine function, for
tiers that must be created inside the event loop) and closes it afterwards
(``aclose()`` or ``close()`` when the tier has one). Checks run in ``anyio.run`` on the
backend you choose (``"asyncio"`` by default, or ``"trio"``), so async tiers need no
pytest plugin. A tier whose storage outlives the object (a server, a file) should use a
fresh namespace per call of the factory, or start empty.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from .._core.entry import CacheEntry
from .._core.policy import InsertOutcome
from .._core.requests import ClearRequest, GetRequest, InsertRequest, InvalidateRequest
from .._core.tier import KEEP

__all__ = ["CHECKS", "Check", "ConformanceError", "NotApplicable", "TierContract", "check_tier", "run_check"]

TierFactory = Callable[[], Any]


class ConformanceError(AssertionError):
    """A tier broke the contract: the message lists every failed check."""


class NotApplicable(Exception):
    """Raised by a check that does not apply to this tier (``len`` absent, byte vs typed)."""


@dataclass(frozen=True)
class Check:
    """One contract check: ``name``, what it verifies (``doc``), and the coroutine function
    that runs it against a :class:`Subject`."""

    name: str
    doc: str
    run: Callable[[Subject], Awaitable[None]]


CHECKS: dict[str, Check] = {}
"""Every check by name, in the order they run."""


def _check(fn: Callable[[Subject], Awaitable[None]]) -> Callable[[Subject], Awaitable[None]]:
    name = fn.__name__.removeprefix("_")
    CHECKS[name] = Check(name, inspect.cleandoc(fn.__doc__ or ""), fn)
    return fn


async def _maybe(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def _fail(message: str) -> AssertionError:
    return AssertionError(message)


class Subject:
    """The tier under test, with awaitable methods whether it is sync or async."""

    def __init__(self, tier: Any, now: Callable[[], float]) -> None:
        self.tier = tier
        self.now = now
        self.bytes_only = bool(getattr(tier, "bytes_only", False))
        self.has_len = callable(getattr(tier, "len", None))
        self.is_async = inspect.iscoroutinefunction(getattr(tier, "get", None))

    async def get(self, key: Any) -> Any:
        return await _maybe(self.tier.get(key))

    async def insert(self, key: Any, entry: CacheEntry[Any]) -> Any:
        return await _maybe(self.tier.insert(key, entry))

    async def invalidate(self, key: Any) -> Any:
        return await _maybe(self.tier.invalidate(key))

    async def clear(self) -> Any:
        return await _maybe(self.tier.clear())

    async def update(self, key: Any, change: Any) -> Any:
        update = getattr(self.tier, "update", None)
        if not callable(update):
            raise NotApplicable("the tier has no update()")
        return await _maybe(update(key, change))

    async def get_many(self, keys: list[Any]) -> Any:
        get_many = getattr(self.tier, "get_many", None)
        if not callable(get_many):
            raise NotApplicable("the tier has no get_many()")
        return await _maybe(get_many(keys))

    async def len(self) -> int:
        if not self.has_len:
            raise NotApplicable("the tier has no len()")
        return await _maybe(self.tier.len())  # type: ignore[no-any-return]

    def key(self, i: int) -> Any:
        """The i-th key of this tier's kind (bytes for a byte tier)."""
        return f"key-{i}".encode() if self.bytes_only else ("key", i)

    def value(self, i: int) -> Any:
        return f"value-{i}".encode() if self.bytes_only else {"value": i, "items": [i, str(i)]}

    async def must_insert(self, key: Any, entry: CacheEntry[Any]) -> None:
        outcome = await self.insert(key, entry)
        if not isinstance(outcome, InsertOutcome):
            raise _fail(f"insert({key!r}, ...) returned {outcome!r}, not an InsertOutcome")
        if outcome is not InsertOutcome.ACCEPTED:
            raise _fail(f"insert({key!r}, {entry!r}) was {outcome!r}; the checks need a tier that accepts "
                        f"small entries (skip this check if yours rejects by design)")

    async def expect_entry(self, key: Any, want: CacheEntry[Any], when: str) -> None:
        got = await self.get(key)
        if got is None:
            raise _fail(f"get({key!r}) {when} returned None; expected {want!r}")
        if not isinstance(got, CacheEntry):
            raise _fail(f"get({key!r}) {when} returned {type(got).__name__}, not a CacheEntry")
        for field in ("value", "cached_at", "ttl"):
            if getattr(got, field) != getattr(want, field):
                raise _fail(f"get({key!r}) {when}: {field} is {getattr(got, field)!r}, "
                            f"expected {getattr(want, field)!r} (a tier stores the entry as given)")

    async def expect_miss(self, key: Any, when: str) -> None:
        got = await self.get(key)
        if got is not None:
            raise _fail(f"get({key!r}) {when} returned {got!r}; expected None")


async def _in_threads(workers: int, work: Callable[[int], None]) -> None:
    """Run ``work(w)`` in ``workers`` threads started together; fail with the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def run(w: int) -> None:
        try:
            start.wait(10)
            work(w)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for th in threads:
        th.start()

    def join_all() -> None:
        for th in threads:
            th.join(60)

    await anyio.to_thread.run_sync(join_all)
    if errors:
        raise _fail(f"a thread failed: {errors[0]!r}") from errors[0]


# -- the checks ------------------------------------------------------------------------


@_check
async def _get_missing_is_none(t: Subject) -> None:
    """``get`` of a key that was never inserted returns ``None`` (not an error)."""
    await t.expect_miss(t.key(1), "on an empty tier")


@_check
async def _insert_returns_outcome(t: Subject) -> None:
    """``insert`` returns an ``InsertOutcome`` (``ACCEPTED`` for a small entry)."""
    await t.must_insert(t.key(1), CacheEntry(t.value(1), cached_at=t.now()))


@_check
async def _round_trip_keeps_the_entry(t: Subject) -> None:
    """``get`` after ``insert`` returns the entry as inserted: value, ``cached_at``, ``ttl``."""
    now = t.now()
    entries = [
        CacheEntry(t.value(0)),  # unstamped, no ttl
        CacheEntry(t.value(1), cached_at=now),
        CacheEntry(t.value(2), cached_at=now - 86_400.0),  # old, but no ttl: never expires
        CacheEntry.expires_at(t.value(3), 3600.0, now),
        CacheEntry.expires_at(t.value(4), 7 * 86_400.25, now - 0.125),  # fractions survive
        CacheEntry(t.value(5), cached_at=1_700_000_000.123456),
    ]
    for i, entry in enumerate(entries):
        await t.must_insert(t.key(i), entry)
    for i, entry in enumerate(entries):
        await t.expect_entry(t.key(i), entry, "after insert")


@_check
async def _insert_replaces(t: Subject) -> None:
    """A second ``insert`` of a key replaces the first entry, fields included."""
    now = t.now()
    first = CacheEntry.expires_at(t.value(1), 3600.0, now)
    second = CacheEntry(t.value(2), cached_at=now)
    await t.must_insert(t.key(1), first)
    await t.must_insert(t.key(1), second)
    await t.expect_entry(t.key(1), second, "after a second insert")


@_check
async def _keys_are_independent(t: Subject) -> None:
    """Entries of different keys do not see each other."""
    now = t.now()
    for i in range(5):
        await t.must_insert(t.key(i), CacheEntry(t.value(i), cached_at=now))
    for i in range(5):
        await t.expect_entry(t.key(i), CacheEntry(t.value(i), cached_at=now), "among five keys")
    await t.expect_miss(t.key(5), "of a sixth key")


@_check
async def _invalidate_removes_one_key(t: Subject) -> None:
    """``invalidate`` removes that key only; invalidating a missing key is no error."""
    now = t.now()
    await t.must_insert(t.key(1), CacheEntry(t.value(1), cached_at=now))
    await t.must_insert(t.key(2), CacheEntry(t.value(2), cached_at=now))
    result = await t.invalidate(t.key(1))
    if result is not None:
        raise _fail(f"invalidate returned {result!r}; expected None")
    await t.expect_miss(t.key(1), "after invalidate")
    await t.expect_entry(t.key(2), CacheEntry(t.value(2), cached_at=now), "after invalidating another key")
    await t.invalidate(t.key(1))  # again: still fine
    await t.invalidate(t.key(99))  # never inserted: fine
    await t.must_insert(t.key(1), CacheEntry(t.value(3), cached_at=now))
    await t.expect_entry(t.key(1), CacheEntry(t.value(3), cached_at=now), "when inserted after invalidate")


@_check
async def _clear_removes_everything(t: Subject) -> None:
    """``clear`` removes every entry; the tier stays usable; clearing an empty tier is fine."""
    now = t.now()
    await t.clear()
    for i in range(5):
        await t.must_insert(t.key(i), CacheEntry(t.value(i), cached_at=now))
    result = await t.clear()
    if result is not None:
        raise _fail(f"clear returned {result!r}; expected None")
    for i in range(5):
        await t.expect_miss(t.key(i), "after clear")
    await t.clear()
    await t.must_insert(t.key(1), CacheEntry(t.value(1), cached_at=now))
    await t.expect_entry(t.key(1), CacheEntry(t.value(1), cached_at=now), "when inserted after clear")


@_check
async def _len_counts_entries(t: Subject) -> None:
    """``len()`` (where the tier has one) is an ``int`` that follows inserts, replacements,
    invalidations and clears."""
    now = t.now()
    if not t.has_len:
        raise NotApplicable("the tier has no len()")

    async def expect(n: int, when: str) -> None:
        got = await t.len()
        if type(got) is not int or got != n:
            raise _fail(f"len() {when} is {got!r}; expected {n}")

    await expect(0, "of an empty tier")
    for i in range(3):
        await t.must_insert(t.key(i), CacheEntry(t.value(i), cached_at=now))
    await expect(3, "after 3 inserts")
    await t.must_insert(t.key(0), CacheEntry(t.value(9), cached_at=now))
    await expect(3, "after replacing one of 3")
    await t.invalidate(t.key(1))
    await expect(2, "after invalidating one of 3")
    await t.clear()
    await expect(0, "after clear")


TYPED_KEYS: list[Hashable] = ["k", b"k", 7, -3, 7.5, None, True, (), ("k", 7), ("nested", ("k", b"k", 2.5))]
TYPED_VALUES: list[Any] = [None, 0, "", b"\x00\xff", 1.5, [1, [2, "x"]], {"a": (1, 2)}, ("t",), {"k": None}]


@_check
async def _any_reasonable_key_type(t: Subject) -> None:
    """A typed tier takes ``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None`` and tuple
    keys, each its own key."""
    if t.bytes_only:
        raise NotApplicable("a byte tier takes bytes keys only")
    now = t.now()
    for i, key in enumerate(TYPED_KEYS):
        await t.must_insert(key, CacheEntry(("for", i), cached_at=now))
    for i, key in enumerate(TYPED_KEYS):
        await t.expect_entry(key, CacheEntry(("for", i), cached_at=now), f"of the {type(key).__name__} key")


@_check
async def _equal_keys_are_one_key(t: Subject) -> None:
    """Keys equal in Python are one key: ``1``, ``1.0`` and ``True``; ``("a", 1)`` and ``("a", 1.0)``."""
    if t.bytes_only:
        raise NotApplicable("a byte tier sees encoded keys; .serialize() makes equal keys one")
    now = t.now()
    entry = CacheEntry("one", cached_at=now)
    await t.must_insert(1, entry)
    await t.expect_entry(1.0, entry, "of 1.0 after inserting 1")
    await t.expect_entry(True, entry, "of True after inserting 1")
    await t.must_insert(("a", 1.0), entry)
    await t.expect_entry(("a", True), entry, "of ('a', True) after inserting ('a', 1.0)")
    await t.invalidate(True)
    await t.expect_miss(1, "after invalidate(True)")


@_check
async def _any_value(t: Subject) -> None:
    """A typed tier stores any value, ``None`` and empty ones included (a stored ``None``
    value is a hit, not a miss)."""
    if t.bytes_only:
        raise NotApplicable("a byte tier stores bytes values only")
    now = t.now()
    for i, value in enumerate(TYPED_VALUES):
        await t.must_insert(t.key(i), CacheEntry(value, cached_at=now))
    for i, value in enumerate(TYPED_VALUES):
        await t.expect_entry(t.key(i), CacheEntry(value, cached_at=now), f"of a {type(value).__name__} value")


BYTE_KEYS: list[bytes] = [b"\x00", b"\x00\xff\x01", b"a", b"ab", b"a*", b"a?", b"[a]", b"a\\", b"a:b",
                          b"\xf0\x9f\x92\xa5", b"k" * 512]
BYTE_VALUES: list[bytes] = [b"", b"\x00", b"\xff" * 3, bytes(range(256)), b"v" * 65_536]


@_check
async def _any_bytes(t: Subject) -> None:
    """A byte tier takes any ``bytes`` key (binary, glob characters, prefixes of each other,
    512 bytes) and any ``bytes`` value (empty, binary, 64 KiB)."""
    if not t.bytes_only:
        raise NotApplicable("a typed tier: see any_reasonable_key_type")
    now = t.now()
    for i, key in enumerate(BYTE_KEYS):
        await t.must_insert(key, CacheEntry(BYTE_VALUES[i % len(BYTE_VALUES)], cached_at=now))
    for i, key in enumerate(BYTE_KEYS):
        await t.expect_entry(key, CacheEntry(BYTE_VALUES[i % len(BYTE_VALUES)], cached_at=now),
                             f"of byte key {key[:16]!r}")
    await t.invalidate(b"a")
    await t.expect_miss(b"a", "after invalidate(b'a')")
    await t.expect_entry(b"ab", CacheEntry(BYTE_VALUES[3 % len(BYTE_VALUES)], cached_at=now),
                         "of b'ab' after invalidate(b'a')")
    await t.clear()
    for key in BYTE_KEYS:
        await t.expect_miss(key, "after clear")


@_check
async def _expired_reads_as_miss_or_itself(t: Subject) -> None:
    """An expired entry (or one with a ttl and no ``cached_at``) may be dropped by the tier,
    but if ``get`` returns it, it is the entry as inserted."""
    now = t.now()
    cases = [CacheEntry.expires_at(t.value(1), 1.0, now - 100.0), CacheEntry(t.value(2), ttl=5.0)]
    for i, entry in enumerate(cases):
        await t.must_insert(t.key(i), entry)
    for i, entry in enumerate(cases):
        got = await t.get(t.key(i))
        if got is not None:
            await t.expect_entry(t.key(i), entry, "of an expired entry")


@_check
async def _concurrent_callers(t: Subject) -> None:
    """Concurrent writers on distinct keys lose nothing: threads for a sync tier (the sync
    cache and WSGI servers call from many), tasks for an async tier."""
    now = t.now()
    workers, per_worker = 4, 25

    def key(w: int, i: int) -> Any:
        return t.key(w * 1000 + i)

    def value(w: int, i: int) -> Any:
        return t.value(w * 1000 + i)

    if t.is_async:
        async def work(w: int) -> None:
            for i in range(per_worker):
                await t.must_insert(key(w, i), CacheEntry(value(w, i), cached_at=now))
                await t.get(key(w, (i * 7) % per_worker))

        async with anyio.create_task_group() as tg:
            for w in range(workers):
                tg.start_soon(work, w)
    else:
        def thread_work(w: int) -> None:
            for i in range(per_worker):
                outcome = t.tier.insert(key(w, i), CacheEntry(value(w, i), cached_at=now))
                if outcome is not InsertOutcome.ACCEPTED:
                    raise _fail(f"insert from thread {w} returned {outcome!r}")
                t.tier.get(key(w, (i * 7) % per_worker))

        await _in_threads(workers, thread_work)
    for w in range(workers):
        for i in range(per_worker):
            await t.expect_entry(key(w, i), CacheEntry(value(w, i), cached_at=now), "after concurrent writes")


@_check
async def _random_operations_match_a_dict(t: Subject) -> None:
    """Random sequences of get / insert / invalidate / clear (hypothesis) read exactly as a
    ``dict`` would. Needs ``hypothesis``."""
    try:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        from . import strategies as cst
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise NotApplicable("hypothesis is not installed") from exc

    now = t.now()
    if t.bytes_only:
        keys: Any = cst.byte_keys(max_size=16)
        entries = cst.fresh_entries(now, cst.byte_values(max_size=64))
    else:
        keys = cst.keys(max_leaves=2)
        entries = cst.fresh_entries(now, st.one_of(st.integers(), st.text(max_size=8), st.none()))

    async def replay(ops: list[Any]) -> None:
        await t.clear()
        model: dict[Any, CacheEntry[Any]] = {}
        for step, op in enumerate(ops):
            where = f"at step {step} ({op!r}) of {ops!r}"
            if isinstance(op, GetRequest):
                want = model.get(op.key)
                if want is None:
                    await t.expect_miss(op.key, where)
                else:
                    await t.expect_entry(op.key, want, where)
            elif isinstance(op, InsertRequest):
                await t.must_insert(op.key, op.entry)
                model[op.key] = op.entry
                await t.expect_entry(op.key, op.entry, where)  # read back at once
            elif isinstance(op, InvalidateRequest):
                await t.invalidate(op.key)
                model.pop(op.key, None)
            elif isinstance(op, ClearRequest):
                await t.clear()
                model.clear()

    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cst.operation_sequences(keys, entries, max_size=30))
    def run(ops: list[Any]) -> None:
        anyio.from_thread.run(replay, ops)

    # hypothesis drives a plain function: run it in a worker thread that calls back into
    # this event loop for every example (works on asyncio and trio alike).
    await anyio.to_thread.run_sync(run)


def _counter(t: Subject, n: int) -> Any:
    return str(n).encode() if t.bytes_only else n


def _count_of(t: Subject, entry: CacheEntry[Any] | None) -> int:
    if entry is None:
        return 0
    return int(entry.value) if t.bytes_only else entry.value  # type: ignore[no-any-return]


@_check
async def _get_many_matches_get(t: Subject) -> None:
    """``get_many(keys)``, where the tier has one: a list with, for each key in order (a
    key given twice included), what ``get`` returns for it: the entry as stored, or
    ``None``."""
    stored = {i: CacheEntry.expires_at(t.value(i), 3600.0, t.now()) for i in (1, 2, 4)}
    for i, entry in stored.items():
        await t.must_insert(t.key(i), entry)
    order = [4, 3, 1, 2, 1, 5]
    got = await t.get_many([t.key(i) for i in order])
    if not isinstance(got, list) or len(got) != len(order):
        raise _fail(f"get_many of {len(order)} keys returned {got!r}, not a list of {len(order)}")
    for i, entry in zip(order, got, strict=True):
        want = stored.get(i)
        if want is None:
            if entry is not None:
                raise _fail(f"get_many gave {entry!r} for the missing key {t.key(i)!r}, not None")
        elif not isinstance(entry, CacheEntry) or (entry.value, entry.cached_at, entry.ttl) != (
                want.value, want.cached_at, want.ttl):
            raise _fail(f"get_many gave {entry!r} for {t.key(i)!r}; expected the stored {want!r}")


@_check
async def _update_applies_the_change(t: Subject) -> None:
    """``update(key, change)``, where the tier has one: ``change`` sees the stored entry
    (or ``None``); its new entry is stored as given, ``None`` removes the key, ``KEEP``
    leaves it; ``update`` returns the change's result; an error in ``change`` writes
    nothing and propagates."""
    seen: list[Any] = []
    entry = CacheEntry.expires_at(t.value(1), 3600.0, t.now())

    def store(new: Any, result: Any) -> Any:
        def change(stored: Any) -> Any:
            seen.append(stored)
            return new, result
        return change

    if await t.update(t.key(1), store(KEEP, "kept")) != "kept":
        raise _fail("update did not return the change's result")
    if seen[-1] is not None:
        raise _fail(f"change of a missing key saw {seen[-1]!r}, not None")
    await t.expect_miss(t.key(1), "after an update that kept nothing")
    await t.update(t.key(1), store(entry, None))
    await t.expect_entry(t.key(1), entry, "after an update that stored an entry")
    await t.update(t.key(1), store(KEEP, None))
    got = seen[-1]
    if not isinstance(got, CacheEntry) or (got.value, got.cached_at, got.ttl) != (entry.value, entry.cached_at, entry.ttl):
        raise _fail(f"change saw {got!r}; expected the stored {entry!r}")
    await t.expect_entry(t.key(1), entry, "after an update that kept it")

    class Refused(Exception):
        pass

    def refuse(stored: Any) -> Any:
        raise Refused

    try:
        await t.update(t.key(1), refuse)
    except Refused:
        pass
    else:
        raise _fail("an exception raised by change did not propagate")
    await t.expect_entry(t.key(1), entry, "after a change that raised")
    await t.update(t.key(1), store(None, None))
    await t.expect_miss(t.key(1), "after an update that removed it")


@_check
async def _concurrent_updates_lose_nothing(t: Subject) -> None:
    """Concurrent ``update`` calls on one key are atomic: 8 threads (sync tier) or 200
    tasks (async tier) adding 1 each to a counter lose no increment."""
    key = t.key(7)
    if not callable(getattr(t.tier, "update", None)):
        raise NotApplicable("the tier has no update()")

    def plus_one(stored: Any) -> Any:
        n = _count_of(t, stored) + 1
        return CacheEntry(_counter(t, n)), n

    if t.is_async:
        total = 200

        async with anyio.create_task_group() as tg:
            for _ in range(total):
                tg.start_soon(t.update, key, plus_one)
    else:
        workers, per_worker = 8, 50
        total = workers * per_worker

        def thread_work(w: int) -> None:
            for _ in range(per_worker):
                t.tier.update(key, plus_one)

        await _in_threads(workers, thread_work)
    got = _count_of(t, await t.get(key))
    if got != total:
        raise _fail(f"{total} concurrent increments through update left {got}: {total - got} lost")


# -- running -----------------------------------------------------------------------------


async def _close(tier: Any) -> None:
    aclose = getattr(tier, "aclose", None)
    if aclose is not None and inspect.iscoroutinefunction(aclose):
        await aclose()
        return
    close = getattr(tier, "close", None)
    if callable(close):
        await _maybe(close())


def run_check(
    name: str,
    factory: TierFactory,
    *,
    backend: str = "asyncio",
    now: Callable[[], float] = time.time,
    close: Callable[[Any], Any] | None = None,
) -> None:
    """Run the check ``name`` against a fresh tier from ``factory``.

    Raises ``AssertionError`` if the tier fails it, :class:`NotApplicable` if the check
    does not apply. ``now`` is the wall clock entries are stamped with (pass the clock
    your tier judges expiry by, e.g. a ``ManualClock``'s ``now``); ``close(tier)``
    replaces the default closing (``aclose()`` or ``close()``).
    """
    check = CHECKS[name]

    async def main() -> None:
        tier = await _maybe(factory())
        try:
            await check.run(Subject(tier, now))
        finally:
            if close is not None:
                await _maybe(close(tier))
            else:
                await _close(tier)

    anyio.run(main, backend=backend)


def check_tier(
    factory: TierFactory,
    *,
    backend: str = "asyncio",
    now: Callable[[], float] = time.time,
    skip: Iterable[str] = (),
    close: Callable[[Any], Any] | None = None,
) -> list[str]:
    """Run every check in :data:`CHECKS` (except ``skip``) against fresh tiers from
    ``factory``; return the names of the checks that ran.

    Raises :class:`ConformanceError` listing every failed check, so one run shows all
    that is wrong. Checks that do not apply (``len`` on a tier without one, byte checks
    on a typed tier) are left out of the returned list.

    >>> from cachet.tiers import MemoryTier
    >>> "round_trip_keeps_the_entry" in check_tier(MemoryTier)
    True
    """
    skipped = set(skip)
    unknown = skipped - CHECKS.keys()
    if unknown:
        raise ValueError(f"no such checks: {sorted(unknown)}; the checks are {list(CHECKS)}")
    ran: list[str] = []
    failures: list[str] = []
    for name in CHECKS:
        if name in skipped:
            continue
        try:
            run_check(name, factory, backend=backend, now=now, close=close)
        except NotApplicable:
            continue
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
        except Exception as exc:
            failures.append(f"{name}: raised {exc!r}")
        ran.append(name)
    if failures:
        raise ConformanceError(f"{len(failures)} of {len(ran)} checks failed:\n- " + "\n- ".join(failures))
    return ran


class TierContract:
    """A pytest base class: subclass it as ``Test...`` and define :meth:`make_tier`.

    One test per check in :data:`CHECKS`, named ``test_<check>``; checks that do not
    apply to the tier are skipped. Override :meth:`close_tier` if the tier needs more
    than ``aclose()`` / ``close()``, :meth:`now` if it judges expiry by another clock,
    ``backend = "trio"`` to run on trio, and ``skip_checks`` to leave checks out (say
    why in a comment)::

        class TestMyAsyncTier(TierContract):
            backend = "trio"

            async def make_tier(self):
                return await MyAsyncTier.connect()
    """

    backend: str = "asyncio"
    skip_checks: tuple[str, ...] = ()

    def make_tier(self) -> Any:
        """A fresh, empty tier (may be a coroutine function)."""
        raise NotImplementedError("subclasses of TierContract define make_tier()")

    def close_tier(self, tier: Any) -> Any:
        """Release ``tier`` after a check (may return an awaitable)."""
        aclose = getattr(tier, "aclose", None)
        if aclose is not None and inspect.iscoroutinefunction(aclose):
            return aclose()
        close = getattr(tier, "close", None)
        return close() if callable(close) else None

    def now(self) -> float:
        """The wall-clock time entries are stamped with."""
        return time.time()

    def run_contract_check(self, name: str) -> None:
        """Run one check, turning "not applicable" into a pytest skip."""
        import pytest

        if name in self.skip_checks:
            pytest.skip(f"{name} is in skip_checks")
        try:
            run_check(name, self.make_tier, backend=self.backend, now=self.now, close=self.close_tier)
        except NotApplicable as exc:
            pytest.skip(f"{name}: {exc}")


def _make_test(name: str) -> Callable[[TierContract], None]:
    def test(self: TierContract) -> None:
        self.run_contract_check(name)

    test.__name__ = test.__qualname__ = f"test_{name}"
    test.__doc__ = CHECKS[name].doc
    return test


for _name in CHECKS:
    setattr(TierContract, f"test_{_name}", _make_test(_name))
del _name
