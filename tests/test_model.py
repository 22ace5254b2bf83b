"""A hypothesis state machine drives a two-tier stack (memory over MockTier, ManualClock)
against a model written from SPEC §2, and they must agree at every step."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cachet import Cache, CacheEntry
from cachet.testing import ManualClock, MockTier

L1_TTL, L2_TTL = 10.0, 14.0
KEYS = st.sampled_from(["a", 1, (1, "x")])
STEPS = st.sampled_from([0.0, 1.0, 4.0, 10.0])
ENTRY_TTLS = st.sampled_from([None, 1.0, 10.0, 12.0, 20.0])


def fresh(entry, tier_ttl, now):
    ttl = entry["ttl"] if entry["ttl"] is not None else tier_ttl
    return ttl is None or now - entry["at"] <= ttl


class TwoTierModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1000.0)
        self.l2 = MockTier()
        self.cache = (Cache.builder(self.clock).memory().ttl(L1_TTL)
                      .fallback(Cache.builder(self.clock).storage(self.l2).ttl(L2_TTL)).build())
        self.m1: dict = {}
        self.m2: dict = {}

    def model_get(self, key):
        now = self.clock.now()
        e1 = self.m1.get(key)
        if e1 is not None and fresh(e1, L1_TTL, now):
            return e1["value"]
        e2 = self.m2.get(key)
        if e2 is not None and fresh(e2, L2_TTL, now):
            ttl2 = e2["ttl"] if e2["ttl"] is not None else L2_TTL
            left = ttl2 - (now - e2["at"])
            if left > 0:
                self.m1[key] = {"value": e2["value"], "at": now, "ttl": min(L1_TTL, left)}
            return e2["value"]
        return None

    @rule(key=KEYS, value=st.integers(), ttl=ENTRY_TTLS)
    def insert(self, key, value, ttl) -> None:
        entry = CacheEntry(value) if ttl is None else CacheEntry.expires_after(value, ttl)
        self.cache.insert(key, entry)
        stamped = {"value": value, "at": self.clock.now(), "ttl": ttl}
        self.m1[key] = self.m2[key] = stamped

    @rule(key=KEYS)
    def get(self, key) -> None:
        got = self.cache.get(key)
        expected = self.model_get(key)
        assert (None if got is None else got.value) == expected

    @rule(key=KEYS)
    def invalidate(self, key) -> None:
        self.cache.invalidate(key)
        self.m1.pop(key, None)
        self.m2.pop(key, None)

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.m1.clear()
        self.m2.clear()

    @rule(step=STEPS)
    def advance(self, step) -> None:
        self.clock.advance(step)

    @invariant()
    def nothing_in_flight(self) -> None:
        core = self.cache._core
        assert len(core.flights) == 0 and len(core.guard) == 0 and not core.refreshing
        assert {k: e.value for k, e in self.l2.data.items()} == {
            k: e["value"] for k, e in self.m2.items()}

    @invariant()
    def l1_holds_what_the_model_says(self) -> None:
        held = dict(self.cache._core.levels[0].tier._data)
        assert set(held) <= set(self.m1)
        for key, e in self.m1.items():
            got = held.get(key)
            if got is None:  # only age may have removed it
                assert not fresh(e, L1_TTL, self.clock.now())
            else:
                assert (got.value, got.cached_at, got.ttl) == (e["value"], e["at"], e["ttl"])


TwoTierModel.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
test_two_tier_stack_agrees_with_model = TwoTierModel.TestCase


def test_an_entry_made_on_the_hot_paths_is_a_cache_entry_in_every_way() -> None:
    """``new_entry`` (promotions, loads, decoded rows) builds the same frozen entry as
    ``CacheEntry(...)``: type, equality, hash, repr, immutability, pickling."""
    import dataclasses
    import pickle

    import pytest

    from cachet._core.entry import new_entry

    made, called = new_entry([1], 2.0, 3.0), CacheEntry([1], 2.0, 3.0)
    assert type(made) is CacheEntry and made == called and repr(made) == repr(called)
    assert hash(new_entry(1, 2.0, None)) == hash(CacheEntry(1, 2.0, None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.value = 2  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(made)) == called
    assert dataclasses.replace(made, ttl=None) == CacheEntry([1], 2.0)
