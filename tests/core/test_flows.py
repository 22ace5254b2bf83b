"""The core's flows stepped one effect at a time, without any frontend."""

from __future__ import annotations

import contextvars

import pytest

from cachet import CacheEntry, LoaderError, ManualClock, ReentrantLoadError
from cachet._core.effects import Call, Load, Spawn
from cachet._core.stack import OPTIONAL, PLAIN, TRY

from .stepper import Driver, make_core


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


def test_a_miss_walks_down_and_promotes_a_copy_stamped_now(clock) -> None:
    core, (l1, l2) = make_core(clock, [10.0, 100.0])
    l2.data["k"] = CacheEntry("v", 995.0)  # 5 s old: 95 s left in l2
    d = Driver()
    entry = d.run(core.get_op("k"))
    assert entry == CacheEntry("v", 995.0)  # as the serving tier holds it
    assert [(e.fn.__self__, e.fn.__name__) for e in d.effects] == [(l1, "get"), (l2, "get"), (l1, "insert")]
    assert l1.data["k"] == CacheEntry("v", 1000.0, 10.0)  # the shorter of l1's ttl and what is left
    assert core.hit("k") == CacheEntry("v", 1000.0, 10.0)


def test_a_copy_never_outlives_its_source(clock) -> None:
    core, (l1, l2) = make_core(clock, [10.0, 100.0])
    l2.data["k"] = CacheEntry("v", 903.0)  # 3 s left in l2
    Driver().run(core.get_op("k"))
    assert l1.data["k"].ttl == pytest.approx(3.0)


def test_the_hit_is_the_freshness_rule(clock) -> None:
    core, (l1,) = make_core(clock, [10.0])
    l1.data["k"] = CacheEntry("v", 1000.0)
    clock.advance(10.0)
    assert core.hit("k") is not None  # equal is still fresh
    clock.advance(0.5)
    assert core.hit("k") is None  # expired: the slow path decides
    assert core.hit(["unhashable"]) is None  # and says what is wrong
    with pytest.raises(TypeError, match="hashable"):
        Driver().run(core.get_op(["unhashable"]))


def test_a_stale_hit_is_served_and_spawns_one_refresh(clock) -> None:
    core, (l1, l2) = make_core(clock, [10.0, 100.0], ttr=5.0)
    l1.data["k"] = CacheEntry("old", 1000.0, 10.0)
    l2.data["k"] = CacheEntry("new", 1000.0)
    clock.advance(5.0)
    assert core.hit("k") is None  # stale: the walk serves it and refreshes
    d = Driver()
    assert d.run(core.get_op("k")).value == "old"
    assert d.run(core.get_op("k")).value == "old"
    assert len(d.spawned) == 1  # deduplicated
    d.run_spawned()
    assert l1.data["k"] == CacheEntry("new", 1005.0, 10.0) and not core.refreshing


def test_waiters_share_the_leaders_outcome(clock) -> None:
    core, (l1, l2) = make_core(clock, [10.0, 100.0])
    l2.data["k"] = CacheEntry("v", 1000.0)
    d = Driver()
    leader = core.get_op("k")
    read = d.run(leader, until=lambda e: isinstance(e, Call) and e.fn == l2.get)
    waiter = core.get_op("k")
    wait = d.run(waiter, until=lambda e: True)
    assert isinstance(wait, Call) and wait.fn.__name__ == "wait"  # waits on the leader's signal
    assert core.coalesced_waits == 1
    signal = wait.fn.__self__
    assert not signal.is_set()
    assert d.resume(leader, read.fn(*read.args)).value == "v"
    assert signal.is_set()
    assert d.resume(waiter, None).value == "v"
    assert len(core.flights) == 0 and len(core.guard) == 0


def test_a_leaders_error_reaches_its_waiters_and_dies_with_the_call(clock) -> None:
    core, (l1,) = make_core(clock, [10.0])
    d = Driver()
    leader = core.load_op("k", lambda: 1, PLAIN)
    d.run(leader, until=lambda e: isinstance(e, Load))
    waiter = contextvars.Context().run(core.load_op, "k", lambda: 2, PLAIN)  # another caller
    d.run(waiter, until=lambda e: True)
    with pytest.raises(KeyError):
        d.resume(leader, None, KeyError("backend down"))
    with pytest.raises(KeyError):
        d.resume(waiter, None)
    assert len(core.flights) == 0 and not l1.data


def test_a_cancelled_leader_hands_the_call_over_on_a_handoff_core(clock) -> None:
    core, (l1,) = make_core(clock, [10.0], handoff=True)
    d = Driver()
    leader = core.load_op("k", lambda: 1, PLAIN)
    d.run(leader, until=lambda e: isinstance(e, Load))
    waiter = contextvars.Context().run(core.load_op, "k", lambda: 2, PLAIN)  # another caller
    d.run(waiter, until=lambda e: True)

    class Cancelled(BaseException):
        pass

    with pytest.raises(Cancelled):
        d.resume(leader, None, Cancelled())
    assert d.resume(waiter, None).value == 2  # it woke, led a new run and loaded itself
    assert l1.data["k"].value == 2


def test_invalidate_during_a_load_wins(clock) -> None:
    core, (l1, l2) = make_core(clock, [10.0, 100.0])
    d = Driver()
    load = core.load_op("k", lambda: "old", PLAIN)
    pending = d.run(load, until=lambda e: isinstance(e, Load))
    d.run(core.invalidate_op("k"))  # does not wait for the load
    entry = d.resume(load, pending.factory())
    assert entry.value == "old" and entry.cached_at is None  # returned, not stored
    assert not l1.data and not l2.data
    assert d.run(core.load_op("k", lambda: "new", PLAIN)).value == "new"  # a fresh load after it


def test_insert_during_a_load_wins(clock) -> None:
    core, (l1,) = make_core(clock, [10.0])
    d = Driver()
    load = core.load_op("k", lambda: "loaded", PLAIN)
    pending = d.run(load, until=lambda e: isinstance(e, Load))
    d.run(core.insert_op("k", "written"))
    d.resume(load, pending.factory())
    assert l1.data["k"].value == "written"


def test_loader_modes(clock) -> None:
    core, (l1,) = make_core(clock, [10.0])
    d = Driver()
    assert d.run(core.load_op("a", lambda: None, OPTIONAL)) is None and "a" not in l1.data

    def boom() -> int:
        raise ValueError("no")

    with pytest.raises(LoaderError) as info:
        d.run(core.load_op("b", boom, TRY))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ValueError):
        d.run(core.load_op("b", boom, PLAIN))
    assert d.run(core.load_op("c", lambda: CacheEntry.expires_after(1, 3.0), PLAIN)).ttl == 3.0
    with pytest.raises(TypeError, match="callable"):
        core.load_op("d", 42, PLAIN)  # type: ignore[arg-type]


def test_a_load_that_asks_for_its_own_key_fails_fast(clock) -> None:
    core, _ = make_core(clock, [10.0])
    d = Driver()

    def reenter() -> int:
        return d.run(core.load_op("k", lambda: 1, PLAIN)).value  # type: ignore[no-any-return]

    with pytest.raises(ReentrantLoadError):
        d.run(core.load_op("k", reenter, PLAIN))
    assert len(core.flights) == 0


def test_refresh_is_a_spawned_flow_that_an_invalidate_cancels(clock) -> None:
    core, (l1, l2) = make_core(clock, [10.0, 100.0], ttr=5.0)
    l1.data["k"] = CacheEntry("old", 1000.0, 10.0)
    l2.data["k"] = CacheEntry("new", 1000.0)
    clock.advance(6.0)
    d = Driver()
    d.run(core.get_op("k"))
    assert [type(e) for e in d.effects].count(Spawn) == 1
    d.run(core.invalidate_op("k"))
    l2.data["k"] = CacheEntry("newer", 1006.0)
    d.run_spawned()  # the refresh began before the invalidate: it writes nothing
    assert "k" not in l1.data
