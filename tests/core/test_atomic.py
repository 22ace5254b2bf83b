"""The framework operations' rules (``_core/atomic.py``) as properties, and their flow
stepped on a core of two tiers without any frontend."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachet import CacheEntry, ManualClock
from cachet._core import atomic
from cachet._core.freshness import EXPIRED, judge
from cachet._core.tier import KEEP
from cachet.testing import strategies as cst

from .stepper import Driver, make_core

NOW = 1_000_000.0
tier_ttls = st.none() | cst.ttls(max_value=1000.0)
stored = st.none() | st.builds(
    CacheEntry, st.integers(-1000, 1000) | st.text(max_size=3) | st.booleans(),
    st.none() | st.floats(NOW - 2000.0, NOW + 10.0), st.none() | cst.ttls(max_value=1000.0))


def level(ttl: float | None) -> Any:
    core, _ = make_core(ManualClock(NOW), [ttl])
    return core.levels[0]


def live(entry: CacheEntry[Any] | None, ttl: float | None) -> bool:
    return entry is not None and judge(entry, ttl, None, NOW) != EXPIRED


@given(tier_ttls, stored, st.none() | cst.ttls(max_value=100.0))
def test_add_stores_exactly_where_nothing_lives(ttl, entry, new_ttl) -> None:
    new, added = atomic.adding(level(ttl), NOW, "v", new_ttl)(entry)
    assert added is (not live(entry, ttl))
    if added:
        assert new == CacheEntry("v", NOW, new_ttl)  # stamped now
    else:
        assert new is KEEP


@given(tier_ttls, stored)
def test_add_with_expire_now_stores_nothing_and_still_reports(ttl, entry) -> None:
    new, added = atomic.adding(level(ttl), NOW, "v", atomic.EXPIRE_NOW)(entry)
    assert added is (not live(entry, ttl))
    assert new is (None if added else KEEP)


@given(tier_ttls, stored, st.none() | cst.ttls(max_value=100.0))
def test_touch_restamps_only_a_live_entry(ttl, entry, new_ttl) -> None:
    new, touched = atomic.touching(level(ttl), NOW, new_ttl)(entry)
    assert touched is live(entry, ttl)
    if touched:
        assert entry is not None
        assert new == CacheEntry(entry.value, NOW, new_ttl)
    else:
        assert new is KEEP


@given(tier_ttls, stored, st.integers(-5, 5) | st.floats(-2, 2))
def test_incr_keeps_the_stamp_and_ttl(ttl, entry, delta) -> None:
    new, result = atomic.incrementing(level(ttl), NOW, delta)(entry)
    if not live(entry, ttl):
        assert (new, result) == (KEEP, atomic.MISSING)
    elif type(entry.value) is not int:
        assert new is KEEP and type(result) is atomic.NotANumber
    else:
        assert result == entry.value + delta
        assert new == CacheEntry(entry.value + delta, entry.cached_at, entry.ttl)


@given(tier_ttls, stored)
def test_delete_removes_anything_and_reports_only_what_lived(ttl, entry) -> None:
    new, was_live = atomic.deleting(level(ttl), NOW)(entry)
    assert was_live is live(entry, ttl)
    assert new is (KEEP if entry is None else None)


@pytest.mark.parametrize("ttl", [0, -1, 0.0, -0.001])
def test_a_ttl_of_zero_or_less_is_expire_now(ttl) -> None:
    assert atomic.per_call_ttl(ttl) is atomic.EXPIRE_NOW


def test_the_step_runs_on_the_bottom_tier_and_empties_the_ones_above() -> None:
    clock = ManualClock(NOW)
    core, (l1, l2) = make_core(clock, [10.0, 100.0])
    l1.data["n"] = CacheEntry(1, NOW)
    l2.data["n"] = CacheEntry(1, NOW)
    d = Driver()
    assert d.run(core.incr_op("n", 2)) == 3
    assert "n" not in l1.data  # the next read promotes the new value
    assert l2.data["n"] == CacheEntry(3, NOW)
    assert next(e.fn.__name__ for e in d.effects if hasattr(e, "fn")) == "update"
    assert d.run(core.get_op("n")).value == 3


def test_a_step_that_writes_nothing_leaves_the_upper_copy() -> None:
    clock = ManualClock(NOW)
    core, (l1, l2) = make_core(clock, [10.0, 100.0])
    l1.data["k"] = CacheEntry("v", NOW)
    l2.data["k"] = CacheEntry("v", NOW)
    assert Driver().run(core.add_op("k", "other", None)) is False
    assert l1.data["k"].value == "v"
