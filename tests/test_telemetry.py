"""SPEC §6 telemetry on sync, asyncio and trio: the exact events of each scenario, the
log records, request ids across threads and tasks, "coalesced", stats, OpenTelemetry."""

from __future__ import annotations

import collections
import importlib
import logging
import sys
import threading

import anyio
import pytest

from cachet import CacheEntry, InsertPolicy, TierError
from cachet.service import GetRequest, InsertRequest, InvalidateRequest
from cachet.telemetry import (
    CacheOperationEvent,
    CacheStats,
    CacheTierEvent,
    TierStats,
)
from cachet.telemetry import (
    attributes as a,
)
from cachet.telemetry._reporter import LEVELS, Reporter
from cachet.testing import MockTier

from .helpers import wait_until

pytestmark = pytest.mark.anyio

TIER_EVENTS = sorted(a.ERROR_EVENTS | a.INFO_EVENTS | a.DEBUG_EVENTS)
# Events that need more than tiers to happen (a backplane to publish to; fail-safe, which
# tests/test_resilience.py covers; a load that fails after its callers left, which
# tests/test_detached_loads.py covers; a tier's circuit breaker, which
# tests/test_resilience.py covers), left out of the script that makes a cache emit
# every event.
NOT_FROM_TIERS = {a.PUBLISH_ERROR, a.FAIL_SAFE, a.LOAD_ERROR, a.BREAKER_OPENED, a.BREAKER_CLOSED}


class Recorder:
    """An event handler that keeps every event, with the thread it arrived on."""

    def __init__(self) -> None:
        self.events: list[CacheTierEvent | CacheOperationEvent] = []
        self.threads: list[int] = []
        self._lock = threading.Lock()

    def on_tier_event(self, event: CacheTierEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.append(threading.get_ident())

    def on_operation_complete(self, event: CacheOperationEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.append(threading.get_ident())

    def take(self) -> list[tuple[object, ...]]:
        """The events so far as tuples, request ids renumbered 1, 2, ... (0 stays 0)."""
        out = normalize([as_tuple(e) for e in self.events])
        self.events.clear()
        self.threads.clear()
        return out


def as_tuple(e: CacheTierEvent | CacheOperationEvent) -> tuple[object, ...]:
    if isinstance(e, CacheTierEvent):
        return (e.request_id, e.tier_name, e.event)
    return (e.request_id, "op", e.operation, e.coalesced)


def normalize(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    ids: dict[object, int] = {0: 0}
    out = []
    for row in rows:
        rid = ids.setdefault(row[0], len(ids))
        out.append((rid, *row[1:]))
    return out


def two_tiers(frontend, clock, *, l1=None, l2=None, handler=None, logs=False, ttr=None,
              l1_policy=None, stampede=False, name="c"):
    l1 = l1 if l1 is not None else MockTier()
    l2 = l2 if l2 is not None else MockTier()
    top = frontend.builder(clock).name(name).storage(l1).ttl(10)
    if ttr is not None:
        top = top.time_to_refresh(frontend.ttr(ttr))
    if l1_policy is not None:
        top = top.insert_policy(l1_policy)
    top = top.fallback(frontend.builder(clock).name("l2").storage(l2).ttl(100))
    if handler is not None:
        top = top.event_handler(handler)
    if logs:
        top = top.enable_logs()
    if stampede:
        top = top.stampede_protection()
    return top.build(), l1, l2


def fresh(clock, value="v", age=0.0):
    return CacheEntry(value, clock.now() - age)


# -- names -------------------------------------------------------------------------------


def test_event_names_are_unique_and_each_has_one_level() -> None:
    names = [v for k, v in vars(a).items() if k.isupper() and isinstance(v, str)
             and v.startswith("cache.") and not k.startswith(("CACHE_", "OP_"))]
    assert len(names) == len(set(names)), "two event constants share a name"
    levels = [a.ERROR_EVENTS, a.INFO_EVENTS, a.DEBUG_EVENTS]
    assert sum(len(s) for s in levels) == len(set().union(*levels)), "an event has two levels"
    assert set(names) == set().union(*levels) | {a.OPERATION_COMPLETE}
    ops = [v for k, v in vars(a).items() if k.startswith("OP_")]
    assert len(ops) == len(set(ops)) == 12 and not set(ops) & set(names)
    fields = [v for k, v in vars(a).items() if k.startswith("CACHE_")]
    assert len(fields) == len(set(fields)) and not set(fields) & set(names)
    assert a.TARGET == "cachet"


def test_spec_levels() -> None:
    assert {"cache.get_error", "cache.insert_error", "cache.invalidate_error",
            "cache.clear_error"} <= a.ERROR_EVENTS
    assert {"cache.expired", "cache.refresh_miss", "cache.inserted", "cache.insert_rejected",
            "cache.invalidated", "cache.eviction"} <= a.INFO_EVENTS
    assert {"cache.hit", "cache.miss", "cache.refresh_hit", "cache.cleared"} <= a.DEBUG_EVENTS


# -- the exact events of each scenario (handler channel) ---------------------------------


async def test_two_tier_miss(frontend, clock) -> None:
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h)
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
        assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.miss"),
                            (1, "op", "cache.get", False)]
        await c.get_or_insert("k", frontend.factory(lambda: "v"))
        assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.miss"),
                            (1, "c", "cache.inserted"), (1, "l2", "cache.inserted"),
                            (1, "op", "cache.get_or_insert", False)]


async def test_l1_hit(frontend, clock) -> None:
    h = Recorder()
    cache, l1, _ = two_tiers(frontend, clock, handler=h)
    l1.data["k"] = fresh(clock)
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
        assert (await c.get_or_insert("k", frontend.factory(lambda: "w"))).value == "v"
    assert h.take() == [(1, "c", "cache.hit"), (1, "op", "cache.get", False),
                        (2, "c", "cache.hit"), (2, "op", "cache.get_or_insert", False)]


async def test_l1_hit_on_the_memory_fast_path_is_reported(frontend, clock) -> None:
    """With telemetry on, the inline hit path is off: every hit reaches the handler."""
    h = Recorder()
    cache = frontend.builder(clock).name("m").memory(10).ttl(10).event_handler(h).build()
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        h.take()
        for _ in range(3):
            assert (await c.get("k")).value == "v"
    assert h.take() == [(i, *ev) for i in (1, 2, 3)
                        for ev in [("m", "cache.hit"), ("op", "cache.get", False)]]


async def test_l2_hit_with_promotion(frontend, clock) -> None:
    h = Recorder()
    cache, l1, _ = two_tiers(frontend, clock, handler=h, l2=MockTier.with_data({"k": fresh(clock)}))
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
    assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.hit"),
                        (1, "c", "cache.inserted"), (1, "op", "cache.get", False)]
    assert l1.contains_key("k")


async def test_fallback_flag(frontend, clock) -> None:
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h)
    async with frontend.open(cache) as c:
        await c.get("k")
    tiers = [e for e in h.events if isinstance(e, CacheTierEvent)]
    assert [(e.tier_name, e.fallback, e.cache_name) for e in tiers] == [("c", False, "c"),
                                                                       ("l2", True, "c")]
    assert all(isinstance(e.duration_ns, int) and e.duration_ns >= 0 for e in h.events)


async def test_stale_hit_refreshes_in_the_background_with_request_id_0(frontend, clock) -> None:
    h = Recorder()
    l1 = MockTier.with_data({"k": fresh(clock, "old", age=6)})
    l2 = MockTier.with_data({"k": fresh(clock, "new")})
    cache, _, _ = two_tiers(frontend, clock, handler=h, l1=l1, l2=l2, ttr=5)
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "old"
        await frontend.settle()
        assert h.take() == [(1, "c", "cache.hit"), (1, "op", "cache.get", False),
                            (0, "l2", "cache.hit"), (0, "c", "cache.inserted"),
                            (0, "c", "cache.refresh_hit"), (0, "op", "cache.refresh", False)]
        assert (await c.get("k")).value == "new"


async def test_refresh_that_finds_nothing_below_is_a_refresh_miss(frontend, clock) -> None:
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h,
                            l1=MockTier.with_data({"k": fresh(clock, age=6)}), ttr=5)
    async with frontend.open(cache) as c:
        await c.get("k")
        await frontend.settle()
    assert h.take() == [(1, "c", "cache.hit"), (1, "op", "cache.get", False),
                        (0, "l2", "cache.miss"), (0, "c", "cache.refresh_miss"),
                        (0, "op", "cache.refresh", False)]


async def test_insert_rejected_by_policy(frontend, clock) -> None:
    h = Recorder()
    cache, l1, l2 = two_tiers(frontend, clock, handler=h, l1_policy=InsertPolicy.never())
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        assert h.take() == [(1, "c", "cache.insert_rejected"), (1, "l2", "cache.inserted"),
                            (1, "op", "cache.insert", False)]
        assert (await c.get("k")).value == "v"  # promotion is refused too
        assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.hit"),
                            (1, "c", "cache.insert_rejected"), (1, "op", "cache.get", False)]
    assert not l1.contains_key("k") and l2.contains_key("k")


async def test_tier_errors(frontend, clock) -> None:
    h = Recorder()
    cache, l1, l2 = two_tiers(frontend, clock, handler=h)
    l1.fail_when(lambda r: isinstance(r, GetRequest))
    l2.fail_when(lambda r: isinstance(r, InvalidateRequest))
    async with frontend.open(cache) as c:
        assert await c.get("k") is None  # an upper tier's error falls through
        assert h.take() == [(1, "c", "cache.get_error"), (1, "l2", "cache.miss"),
                            (1, "op", "cache.get", False)]
        with pytest.raises(TierError):
            await c.invalidate("k")
        assert h.take() == [(1, "c", "cache.invalidated"), (1, "l2", "cache.invalidate_error"),
                            (1, "op", "cache.invalidate", False)]
        l1.clear_failures()
        l2.fail_when(lambda r: isinstance(r, GetRequest | InsertRequest))
        with pytest.raises(TierError):
            await c.get("k")  # the last tier's error is raised, and reported first
        assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.get_error"),
                            (1, "op", "cache.get", False)]
        with pytest.raises(TierError):
            await c.insert("k", "v")
        assert h.take() == [(1, "c", "cache.inserted"), (1, "l2", "cache.insert_error"),
                            (1, "op", "cache.insert", False)]


async def test_eviction_and_expiry_from_the_memory_tier(frontend, clock) -> None:
    h = Recorder()
    cache = frontend.builder(clock).name("m").memory(2).ttl(10).event_handler(h).build()
    async with frontend.open(cache) as c:
        await c.insert("a", 1)
        await c.insert("b", 2)
        await c.insert("c", 3)  # capacity pushes "a" out, inside this insert
        assert h.take()[-3:] == [(3, "m", "cache.eviction"), (3, "m", "cache.inserted"),
                                 (3, "op", "cache.insert", False)]
        clock.advance(11)
        await c.insert("d", 4)  # the age sweep removes "b" and "c"
        assert h.take() == [(1, "m", "cache.expired"), (1, "m", "cache.expired"),
                            (1, "m", "cache.inserted"), (1, "op", "cache.insert", False)]
    stats = cache.stats()["tiers"]["m"]
    assert (stats["evictions"], stats["inserts"]) == (1, 4)


async def test_invalidate_clear_and_loader_operations(frontend, clock) -> None:
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h)
    async with frontend.open(cache) as c:
        await c.invalidate("k")
        await c.clear()
        await c.try_get_or_insert("a", frontend.factory(lambda: 1))
        await c.optionally_get_or_insert("b", frontend.factory(lambda: None))
    assert h.take() == [
        (1, "c", "cache.invalidated"), (1, "l2", "cache.invalidated"),
        (1, "op", "cache.invalidate", False),
        (2, "c", "cache.cleared"), (2, "l2", "cache.cleared"), (2, "op", "cache.clear", False),
        (3, "c", "cache.miss"), (3, "l2", "cache.miss"), (3, "c", "cache.inserted"),
        (3, "l2", "cache.inserted"), (3, "op", "cache.try_get_or_insert", False),
        (4, "c", "cache.miss"), (4, "l2", "cache.miss"),
        (4, "op", "cache.optionally_get_or_insert", False),
    ]


async def test_undecodable_payload_is_a_decode_error_then_a_miss(frontend, clock) -> None:
    h = Recorder()
    l2 = MockTier()
    cache = (frontend.builder(clock).name("c").memory(10).serialize()
             .fallback(frontend.builder(clock).name("l2").storage(l2)).event_handler(h).build())
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        await c.invalidate("k")
        (key,) = [op.key for op in l2.operations if isinstance(op, InsertRequest)]
        l2.data[key] = CacheEntry(b"garbage", clock.now())
        h.take()
        assert await c.get("k") is None
    assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.decode_error"),
                        (1, "l2", "cache.miss"), (1, "op", "cache.get", False)]


async def test_operation_that_raises_still_completes_its_event(frontend, clock) -> None:
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h)

    def boom():
        raise ValueError("factory failed")

    async with frontend.open(cache) as c:
        with pytest.raises(ValueError):
            await c.get_or_insert("k", frontend.factory(boom))
    assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.miss"),
                        (1, "op", "cache.get_or_insert", False)]


# -- the logging channel ----------------------------------------------------------------


def cachet_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == a.TARGET]


@pytest.mark.parametrize("event", TIER_EVENTS)
def test_log_record_of_each_tier_event(caplog, event) -> None:
    caplog.set_level(logging.DEBUG, logger=a.TARGET)
    Reporter("shop", None, True).tier(7, "redis", True, event, 1234)
    (r,) = cachet_records(caplog)
    expected_level = (logging.ERROR if event in a.ERROR_EVENTS
                      else logging.INFO if event in a.INFO_EVENTS else logging.DEBUG)
    assert r.levelno == expected_level == LEVELS[event]
    assert r.getMessage() == f"{event} tier=redis cache=shop"
    assert getattr(r, "cache.name") == "shop"
    assert getattr(r, "cache.event") == event
    assert getattr(r, "cache.duration_ns") == 1234
    assert getattr(r, "cache.tier") == "redis"
    assert getattr(r, "cache.request_id") == 7


@pytest.mark.parametrize("coalesced", [False, True])
def test_log_record_of_an_operation(caplog, coalesced) -> None:
    caplog.set_level(logging.DEBUG, logger=a.TARGET)
    Reporter("shop", None, True).operation(9, a.OP_GET_OR_INSERT, 5678, coalesced)
    (r,) = cachet_records(caplog)
    assert r.levelno == logging.DEBUG
    assert r.getMessage() == "cache.get_or_insert complete cache=shop"
    assert getattr(r, "cache.name") == "shop"
    assert getattr(r, "cache.event") == a.OPERATION_COMPLETE
    assert getattr(r, "cache.operation") == a.OP_GET_OR_INSERT
    assert getattr(r, "cache.duration_ns") == 5678
    assert getattr(r, "cache.coalesced") is coalesced
    assert getattr(r, "cache.request_id") == 9


def record_tuple(r: logging.LogRecord) -> tuple[object, ...]:
    op = getattr(r, "cache.operation", None)
    if op is None:
        return (getattr(r, "cache.request_id"), getattr(r, "cache.tier"), getattr(r, "cache.event"))
    return (getattr(r, "cache.request_id"), "op", op, getattr(r, "cache.coalesced"))


async def test_logs_of_a_promotion_exactly(frontend, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=a.TARGET)
    cache, _, _ = two_tiers(frontend, clock, logs=True, l2=MockTier.with_data({"k": fresh(clock)}))
    async with frontend.open(cache) as c:
        await c.get("k")
    records = cachet_records(caplog)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, "cache.miss tier=c cache=c"),
        (logging.DEBUG, "cache.hit tier=l2 cache=c"),
        (logging.INFO, "cache.inserted tier=c cache=c"),
        (logging.DEBUG, "cache.get complete cache=c"),
    ]
    assert normalize([record_tuple(r) for r in records]) == [
        (1, "c", "cache.miss"), (1, "l2", "cache.hit"), (1, "c", "cache.inserted"),
        (1, "op", "cache.get", False)]
    assert all(getattr(r, "cache.name") == "c" for r in records)
    assert all(type(getattr(r, "cache.duration_ns")) is int for r in records)


async def every_event(frontend, clock, c, l1, l2) -> None:
    """A script that makes a two-tier cache (l1 memory(1) with ttr 5, l2 MockTier under a
    serialization boundary) emit every tier event and operation name."""
    await c.get("a")  # miss, miss
    await c.insert("a", 1)  # inserted x2
    await c.get("a")  # hit
    await c.insert("b", 2)  # eviction of "a"
    await c.get_or_insert("a", frontend.factory(lambda: 0))  # promotion
    clock.advance(6)
    await c.get("a")  # stale hit: refresh_hit in the background
    await frontend.settle()
    await c.invalidate("a")  # invalidated x2
    l1_keys = list(l2.data)
    await c.insert("c", 3)
    (ckey,) = [k for k in l2.data if k not in l1_keys]
    clock.advance(5)
    l2.data[ckey] = CacheEntry(b"garbage", clock.now())
    await c.get("c")  # stale hit; the refresh finds an undecodable payload: refresh_miss
    await frontend.settle()
    clock.advance(31)
    await c.get("c")  # expired in l1
    await c.try_get_or_insert("d", frontend.factory(lambda: 4))
    await c.optionally_get_or_insert("e", frontend.factory(lambda: None))
    await c.clear()  # cleared x2
    assert await c.add("g", 1)  # the atomic operations: inserted in l2
    assert await c.incr("g") == 2 and await c.decr("g") == 1
    assert await c.touch("g", 10) and await c.delete("g")
    l2.fail_when(lambda r: True)
    for op in (c.get("x"), c.insert("x", 1), c.invalidate("x"), c.clear()):
        with pytest.raises(TierError):
            await op
    l2.clear_failures()
    cache = c.sync if frontend.is_sync else c
    cache._core.levels[0].policy = InsertPolicy.never()  # test-only: a rejecting l1
    await c.insert("f", 5)


def every_event_cache(frontend, clock, **kw):
    l2 = MockTier()
    cache = (frontend.builder(clock).name("c").memory(1).ttl(30)
             .time_to_refresh(frontend.ttr(5)).serialize()
             .fallback(frontend.builder(clock).name("l2").storage(l2).ttl(100)))
    for k, v in kw.items():
        cache = getattr(cache, k)(*v)
    return cache.build(), l2


async def test_every_event_name_reaches_both_channels_alike(frontend, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=a.TARGET)
    h = Recorder()
    cache, l2 = every_event_cache(frontend, clock, event_handler=(h,), enable_logs=())
    async with frontend.open(cache) as c:
        await every_event(frontend, clock, c, None, l2)
    records = cachet_records(caplog)
    assert len(records) == len(h.events)
    for r, e in zip(records, h.events, strict=True):
        assert record_tuple(r) == as_tuple(e)
        assert getattr(r, "cache.duration_ns") == e.duration_ns
        assert getattr(r, "cache.name") == e.cache_name == "c"
        if isinstance(e, CacheTierEvent):
            assert r.levelno == LEVELS[e.event]
            assert r.getMessage() == f"{e.event} tier={e.tier_name} cache=c"
        else:
            assert r.levelno == logging.DEBUG
            assert r.getMessage() == f"{e.operation} complete cache=c"
    assert {getattr(r, "cache.event") for r in records} == (
        set(TIER_EVENTS) - NOT_FROM_TIERS | {a.OPERATION_COMPLETE})
    assert {e.operation for e in h.events if isinstance(e, CacheOperationEvent)} == {
        v for k, v in vars(a).items() if k.startswith("OP_")}


async def test_nothing_is_logged_with_logs_off(frontend, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=a.TARGET)
    h = Recorder()
    cache, l2 = every_event_cache(frontend, clock, event_handler=(h,))
    async with frontend.open(cache) as c:
        await every_event(frontend, clock, c, None, l2)
    assert h.events and cachet_records(caplog) == []


@pytest.fixture
def records_built(monkeypatch):
    """Counts the ``logging`` records built for the ``cachet`` logger."""
    built: list[str] = []
    make = logging.Logger.makeRecord

    def counting(self, name, *args, **kwargs):
        if name == a.TARGET:
            built.append(args[0])
        return make(self, name, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    return built


async def test_no_record_is_built_below_the_logger_level(frontend, clock, caplog, records_built) -> None:
    caplog.set_level(logging.WARNING, logger=a.TARGET)
    cache, l1, l2 = two_tiers(frontend, clock, logs=True, l2=MockTier.with_data({"k": fresh(clock)}))
    async with frontend.open(cache) as c:
        await c.get("k")
        await c.get("k")
        await c.insert("j", 1)
        assert records_built == []
        l2.fail_when(lambda r: True)
        with pytest.raises(TierError):
            await c.get("x")
    assert records_built == [logging.ERROR]  # the get_error, and nothing else
    caplog.set_level(logging.INFO, logger=a.TARGET)
    async with frontend.open(two_tiers(frontend, clock, logs=True)[0]) as c:
        await c.insert("j", 1)
    assert records_built[1:] == [logging.INFO, logging.INFO]


async def test_no_record_is_built_with_logs_off(frontend, clock, caplog, records_built) -> None:
    caplog.set_level(logging.DEBUG, logger=a.TARGET)
    cache, _, _ = two_tiers(frontend, clock, handler=Recorder())
    async with frontend.open(cache) as c:
        await c.get_or_insert("k", frontend.factory(lambda: 1))
    assert records_built == []


# -- a handler that raises ---------------------------------------------------------------


class Raising:
    def __init__(self) -> None:
        self.calls = 0

    def on_tier_event(self, event: CacheTierEvent) -> None:
        self.calls += 1
        raise RuntimeError("handler bug")

    def on_operation_complete(self, event: CacheOperationEvent) -> None:
        self.calls += 1
        raise RuntimeError("handler bug")


@pytest.mark.parametrize("logs", [False, True])
async def test_a_raising_handler_is_reported_once_and_never_breaks_the_cache(
        frontend, clock, caplog, logs) -> None:
    caplog.set_level(logging.DEBUG if logs else logging.WARNING, logger=a.TARGET)
    h = Raising()
    cache, _, _ = two_tiers(frontend, clock, handler=h, logs=logs,
                            l2=MockTier.with_data({"k": fresh(clock)}))
    async with frontend.open(cache) as c:
        assert (await c.get("k")).value == "v"
        assert (await c.get_or_insert("n", frontend.factory(lambda: 2))).value == 2
        await c.invalidate("k")
        assert await c.get("k") is None
    assert h.calls == 4 + 5 + 3 + 3  # called for every event all along
    errors = [r for r in cachet_records(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "event handler" in errors[0].getMessage() and "raised" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)
    if logs:  # the log channel goes on regardless
        assert len(cachet_records(caplog)) == 1 + 15


async def test_a_handler_with_one_method_only(frontend, clock) -> None:
    seen: list[str] = []

    class OnlyOps:
        def on_operation_complete(self, event: CacheOperationEvent) -> None:
            seen.append(event.operation)

    cache, _, _ = two_tiers(frontend, clock, handler=OnlyOps())
    async with frontend.open(cache) as c:
        await c.get("k")
        await c.insert("k", 1)
    assert seen == ["cache.get", "cache.insert"]


# -- request ids across threads and tasks -----------------------------------------------




class Rendezvous:
    """Holds ``n`` concurrent loaders until all of them are inside: every operation is
    in flight at once, so ids that leaked between them would show."""

    def __init__(self, frontend, n: int) -> None:
        self.sync = frontend.is_sync
        self.n = n
        self.arrived = 0
        self.barrier = threading.Barrier(n) if self.sync else None
        self.all_in = anyio.Event() if not self.sync else None

    def loader(self, value):
        if self.sync:
            def load():
                self.barrier.wait(10)
                return value
            return load

        async def aload():
            self.arrived += 1
            if self.arrived == self.n:
                self.all_in.set()
            await self.all_in.wait()
            return value
        return aload


async def run_all(frontend, n: int, call) -> list[object]:
    """``call(i)`` from ``n`` threads (sync) or ``n`` tasks (aio) at once; returns results."""
    results: list[object] = [None] * n
    if frontend.is_sync:
        def one(i):
            results[i] = call(i)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
    else:
        async def aone(i):
            results[i] = await call(i)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(aone, i)
    return results


async def test_request_ids_tie_events_to_their_operation_across_threads_and_tasks(
        frontend, clock) -> None:
    n = 8
    h = Recorder()
    cache = (frontend.builder(clock).name("c").memory(n - 1).ttl(60)
             .fallback(frontend.builder(clock).name("l2").storage(MockTier()))
             .event_handler(h).build())
    meet = Rendezvous(frontend, n)
    async with frontend.open(cache):
        results = await run_all(frontend, n, lambda i: cache.get_or_insert(f"k{i}", meet.loader(i)))
    assert [r.value for r in results] == list(range(n))
    by_id: dict[int, list[tuple[object, ...]]] = collections.defaultdict(list)
    threads: dict[int, set[int]] = collections.defaultdict(set)
    for e, thread in zip(h.events, h.threads, strict=True):
        by_id[e.request_id].append(as_tuple(e)[1:])
        threads[e.request_id].add(thread)
    assert 0 not in by_id and len(by_id) == n
    load = [("c", "cache.miss"), ("l2", "cache.miss"), ("c", "cache.inserted"),
            ("l2", "cache.inserted"), ("op", "cache.get_or_insert", False)]
    # The memory tier holds n-1: one insert evicted an entry, and that insert reported it.
    evicting = [rid for rid, evs in by_id.items() if ("c", "cache.eviction") in evs]
    assert len(evicting) == 1
    for rid, events in by_id.items():
        if rid in evicting:
            events.remove(("c", "cache.eviction"))
        assert events == load, rid
    if frontend.is_sync:
        assert all(len(t) == 1 for t in threads.values())
        assert len(set().union(*threads.values())) == n


async def test_request_id_reaches_a_tier_run_in_a_worker_thread(frontend, clock) -> None:
    """A blocking tier runs in worker threads under aio; what it reports from there (here
    a decode error) still carries the id of the operation that called it."""

    class Blocking(MockTier):
        nonblocking = False

    h = Recorder()
    l2 = Blocking()
    cache = (frontend.builder(clock).name("c").memory(10).serialize()
             .fallback(frontend.builder(clock).name("l2").storage(l2)).event_handler(h).build())
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
        await c.invalidate("k")
        (key,) = {op.key for op in l2.operations if isinstance(op, InsertRequest)}
        l2.data[key] = CacheEntry(b"garbage", clock.now())
        h.take()
        await c.get("k")
    assert h.take() == [(1, "c", "cache.miss"), (1, "l2", "cache.decode_error"),
                        (1, "l2", "cache.miss"), (1, "op", "cache.get", False)]


# -- coalesced ---------------------------------------------------------------------------


def flight_waiters(cache, op: str, key) -> int:
    flight = cache._core.flights.find(op, key)
    return -1 if flight is None else flight.waiters


async def stampede(frontend, cache, key, n: int, value="v") -> list[object]:
    """``n`` concurrent ``get_or_insert(key)`` whose loader waits until all ``n`` callers
    have arrived (joined the flight, or started a load of their own)."""
    entered = 0
    lock = threading.Lock()
    if frontend.is_sync:
        release = threading.Event()

        def load():
            nonlocal entered
            with lock:
                entered += 1
            assert release.wait(10)
            return value

        results: list[object] = [None] * n

        def one(i):
            results[i] = cache.get_or_insert(key, load)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        wait_until(lambda: entered + max(flight_waiters(cache, "cache.get_or_insert", key), 0) == n,
                   "every caller to load or wait")
        release.set()
        for t in threads:
            t.join(10)
        return results

    arelease = anyio.Event()

    async def aload():
        nonlocal entered
        entered += 1
        await arelease.wait()
        return value

    out: list[object] = [None] * n

    async def aone(i):
        out[i] = await cache.get_or_insert(key, aload)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(aone, i)
        await anyio.wait_all_tasks_blocked()
        assert entered + max(flight_waiters(cache, "cache.get_or_insert", key), 0) == n
        arelease.set()
    return out


async def test_coalesced_is_true_only_for_callers_that_waited(frontend, clock) -> None:
    h = Recorder()
    cache = frontend.builder(clock).name("m").memory(10).event_handler(h).stampede_protection().build()
    async with frontend.open(cache) as c:
        results = await stampede(frontend, cache, "k", 4)
        assert [r.value for r in results] == ["v"] * 4
        ops = [e for e in h.events if isinstance(e, CacheOperationEvent)]
        tiers = [e for e in h.events if isinstance(e, CacheTierEvent)]
        assert sorted(e.coalesced for e in ops) == [False, True, True, True]
        (leader,) = [e.request_id for e in ops if not e.coalesced]
        # Only the leader touched the tiers; the waiters' ids have an operation event only.
        assert {e.request_id for e in tiers} == {leader}
        assert [as_tuple(e)[1:] for e in tiers] == [("m", "cache.miss"), ("m", "cache.inserted")]
        assert cache.stats()["coalesced_waits"] == 3
        h.take()
        await c.get_or_insert("k", frontend.factory(lambda: "w"))  # protection on, nobody to wait on
        assert h.take() == [(1, "m", "cache.hit"), (1, "op", "cache.get_or_insert", False)]


async def test_coalesced_is_false_without_protection(frontend, clock) -> None:
    h = Recorder()
    cache = frontend.builder(clock).name("m").memory(10).event_handler(h).build()
    async with frontend.open(cache):
        await stampede(frontend, cache, "k", 3)
    ops = [e for e in h.events if isinstance(e, CacheOperationEvent)]
    assert [e.coalesced for e in ops] == [False] * 3
    assert cache.stats()["coalesced_waits"] == 0


# -- stats -------------------------------------------------------------------------------


async def stats_script(frontend, clock, c, cache, l2) -> None:
    """Each step names what it counts; the clock stays below c's ttl (no age sweep)."""
    await c.get("a")  # c: miss; l2: miss
    await c.insert("a", 1)  # c: insert; l2: insert
    await c.get("a")  # c: hit (the inline hit path when telemetry is off)
    l2.data["b"] = fresh(clock, 2)
    await c.get("b")  # c: miss; l2: hit; c: insert (promotion)
    await c.insert("big", "x" * 100)  # c: rejection (its policy); l2: insert
    await c.insert("z", 26)  # c: insert, eviction of "a" (capacity 2); l2: insert
    clock.advance(6)
    await c.get("z")  # c: hit, stale -> refresh: l2: hit; c: insert, refresh
    await frontend.settle()
    l2.fail_when(lambda r: isinstance(r, GetRequest) and r.key == "boom")
    with pytest.raises(TierError):
        await c.get("boom")  # c: miss; l2: error
    l2.data["old"] = fresh(clock, 0, age=101)
    await c.get("old")  # c: miss; l2: expired
    await c.invalidate("a")  # c, l2: invalidation
    await stampede(frontend, cache, "s", 3)  # c: miss; l2: miss; c: insert, eviction of "b";
    #                                          l2: insert; 2 coalesced waits


STATS_EXPECTED = {
    "tiers": {
        "c": {"hits": 2, "misses": 5, "expired": 0, "errors": 0, "inserts": 5, "rejections": 1,
              "evictions": 2, "refreshes": 1, "refresh_misses": 0, "invalidations": 1,
              "decode_errors": 0, "fail_safe": 0, "breaker_opens": 0},
        "l2": {"hits": 2, "misses": 2, "expired": 1, "errors": 1, "inserts": 4, "rejections": 0,
               "evictions": 0, "refreshes": 0, "refresh_misses": 0, "invalidations": 1,
               "decode_errors": 0, "fail_safe": 0, "breaker_opens": 0},
    },
    "coalesced_waits": 2,
    "load_errors": 0,
}


def stats_cache(frontend, clock, handler=None):
    l2 = MockTier()
    b = (frontend.builder(clock).name("c").memory(2).ttl(10).time_to_refresh(frontend.ttr(5))
         .insert_policy(InsertPolicy.when(lambda e: e.value != "x" * 100))
         .fallback(frontend.builder(clock).name("l2").storage(l2).ttl(100)).stampede_protection())
    if handler is not None:
        b = b.event_handler(handler)
    return b.build(), l2


@pytest.mark.parametrize("telemetry", ["off", "handler"])
async def test_stats_count_a_scripted_scenario(frontend, clock, telemetry) -> None:
    h = Recorder() if telemetry == "handler" else None
    cache, l2 = stats_cache(frontend, clock, h)
    async with frontend.open(cache) as c:
        await stats_script(frontend, clock, c, cache, l2)
    assert cache.stats() == STATS_EXPECTED
    stats = CacheStats.of(cache)
    assert stats.tiers["c"] == TierStats(**STATS_EXPECTED["tiers"]["c"])
    assert stats.coalesced_waits == 2
    assert stats.tiers["c"].lookups == 7 and stats.tiers["c"].hit_ratio == pytest.approx(2 / 7)
    if h is not None:  # the counts are the handler's events, counted
        counted: collections.Counter[tuple[str, str]] = collections.Counter(
            (e.tier_name, e.event) for e in h.events if isinstance(e, CacheTierEvent))
        assert counted[("c", a.HIT)] == 2 and counted[("l2", a.HIT)] == 2
        assert counted[("c", a.EVICTION)] == 2 and counted[("c", a.REFRESH_HIT)] == 1
        assert counted[("l2", a.GET_ERROR)] == 1 and counted[("c", a.INSERT_REJECTED)] == 1
        coalesced = [e for e in h.events if isinstance(e, CacheOperationEvent) and e.coalesced]
        assert len(coalesced) == 2


async def test_one_expired_entry_counts_once_in_stats(frontend, clock) -> None:
    cache = frontend.builder(clock).name("m").memory(10).ttl(10).build()
    async with frontend.open(cache) as c:
        await c.insert("a", 1)
        clock.advance(11)
        assert await c.get("a") is None  # a lookup finds "a" expired
        await c.insert("b", 2)  # this insert's age sweep removes "a"
    stats = CacheStats.of(cache).tiers["m"]
    assert stats.expired == 1 and stats.lookups == 1


def test_cache_stats_shape() -> None:
    snap = {"tiers": {"t": dict.fromkeys(TierStats.__dataclass_fields__, 0)}, "coalesced_waits": 4,
            "load_errors": 1}
    stats = CacheStats.from_snapshot(snap)
    assert stats.tiers["t"].hit_ratio is None  # no lookups yet
    assert stats.as_dict() == snap
    assert stats.coalesced_waits == 4
    assert "t" in str(stats)


# -- OpenTelemetry -----------------------------------------------------------------------


def otel_points(reader) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


async def test_opentelemetry_counters_and_histogram(frontend, clock) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from cachet.telemetry.otel import OpenTelemetryHandler

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    handler = OpenTelemetryHandler(meter_provider=provider)
    cache, _, _ = two_tiers(frontend, clock, handler=handler,
                            l2=MockTier.with_data({"k": fresh(clock)}))
    async with frontend.open(cache) as c:
        await c.get("k")  # c miss, l2 hit, c inserted
        await c.get("k")  # c hit
        await c.get("nope")  # c miss, l2 miss
    points = otel_points(reader)
    counts = {(p.attributes["cache.name"], p.attributes["cache.tier"], p.attributes["cache.event"]):
              p.value for p in points["cachet.tier.events"]}
    assert counts == {("c", "c", "cache.miss"): 2, ("c", "l2", "cache.hit"): 1,
                      ("c", "c", "cache.inserted"): 1, ("c", "c", "cache.hit"): 1,
                      ("c", "l2", "cache.miss"): 1}
    (hist,) = points["cachet.operation.duration"]
    assert dict(hist.attributes) == {"cache.name": "c", "cache.operation": "cache.get",
                                     "cache.coalesced": False}
    assert hist.count == 3 and hist.sum >= 0
    provider.shutdown()


def test_opentelemetry_prefix_and_global_provider(monkeypatch) -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from cachet.telemetry.otel import OpenTelemetryHandler

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    h = OpenTelemetryHandler(prefix="shop")
    h.on_tier_event(CacheTierEvent(3, "c", "l1", a.HIT, 10, False))
    h.on_operation_complete(CacheOperationEvent(3, "c", a.OP_GET, 2_000_000, True))
    points = otel_points(reader)
    assert set(points) == {"shop.tier.events", "shop.operation.duration"}
    (hist,) = points["shop.operation.duration"]
    assert hist.sum == pytest.approx(0.002)  # seconds
    assert hist.attributes["cache.coalesced"] is True
    provider.shutdown()


def test_opentelemetry_missing_says_what_to_install(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "cachet.telemetry.otel", raising=False)
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'cachet\[otel\]'"):
        importlib.import_module("cachet.telemetry.otel")


# -- durations ---------------------------------------------------------------------------


class FakeNs:
    """Stands in for ``time.perf_counter_ns`` in the core: time moves only when a tier says."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class SlowTier(MockTier):
    """A MockTier whose every operation takes ``cost`` fake nanoseconds."""

    def __init__(self, ns: FakeNs, cost: int) -> None:
        super().__init__()
        self.ns, self.cost = ns, cost

    def get(self, key):
        self.ns.now += self.cost
        return super().get(key)

    def insert(self, key, entry):
        self.ns.now += self.cost
        return super().insert(key, entry)


async def test_a_read_reports_each_tiers_own_duration(frontend, clock, monkeypatch) -> None:
    import cachet._core.stack as stack

    ns = FakeNs()
    monkeypatch.setattr(stack, "_ns", ns)
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h, l1=SlowTier(ns, 1000), l2=SlowTier(ns, 7))
    async with frontend.open(cache) as c:
        await c.get("k")
    assert [(e.tier_name, e.duration_ns) for e in h.events if isinstance(e, CacheTierEvent)] == [
        ("c", 1000), ("l2", 7)]


async def test_a_write_reports_each_tiers_own_duration(frontend, clock, monkeypatch) -> None:
    import cachet._core.stack as stack

    ns = FakeNs()
    monkeypatch.setattr(stack, "_ns", ns)
    h = Recorder()
    cache, _, _ = two_tiers(frontend, clock, handler=h, l1=SlowTier(ns, 1000), l2=SlowTier(ns, 7))
    async with frontend.open(cache) as c:
        await c.insert("k", "v")
    assert [(e.tier_name, e.duration_ns) for e in h.events if isinstance(e, CacheTierEvent)] == [
        ("c", 1000), ("l2", 7)]


def test_public_names_are_exported_and_documented() -> None:
    import cachet.telemetry as t
    from cachet.telemetry import otel

    public = {n for n in dir(t) if not n.startswith("_") and n not in ("annotations", "otel")}
    assert public == set(t.__all__)
    for name in [*t.__all__, "otel"]:
        obj = getattr(t, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
    for obj in (otel.OpenTelemetryHandler, otel.OpenTelemetryHandler.on_tier_event,
                otel.OpenTelemetryHandler.on_operation_complete, CacheStats.of,
                CacheStats.from_snapshot, CacheStats.as_dict, TierStats.hit_ratio):
        assert obj.__doc__, obj
