"""The core against a model: a hypothesis state machine drives a ``Core`` of 1-3 dict
tiers (no frontend) and a plain-dict model written from SPEC §2 under one ``ManualClock``:
TTL, TTR with background refresh, promotion, and invalidates and inserts landing during
a load. They must agree at every step."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cachet import CacheEntry, ManualClock
from cachet._core.effects import Load
from cachet._core.stack import PLAIN

from .stepper import Driver, make_core

KEYS = st.sampled_from(["a", 1, (1, "x")])
STEPS = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 16.0])
ENTRY_TTLS = st.sampled_from([None, 1.0, 4.0, 30.0])

Row = tuple[Any, float, "float | None"]  # value, cached_at, ttl


def expired(row: Row, tier_ttl: float | None, now: float) -> bool:
    value, at, ttl = row
    ttl = ttl if ttl is not None else tier_ttl
    return ttl is not None and (at > now or now - at > ttl)


class CoreModel(RuleBasedStateMachine):
    @initialize(ttls=st.sampled_from([[10.0], [None], [4.0, 20.0], [10.0, None], [3.0, 6.0, 30.0]]),
                ttr=st.sampled_from([None, 2.0]))
    def build(self, ttls: list[float | None], ttr: float | None) -> None:
        self.clock = ManualClock(1000.0)
        self.ttls = ttls
        self.ttr = ttr if len(ttls) > 1 and (ttls[0] is None or ttls[0] > 2.0) else None
        self.core, self.tiers = make_core(self.clock, ttls, ttr=self.ttr)
        self.model: list[dict[Any, Row]] = [{} for _ in ttls]
        self.started: set[Any] = set()  # keys with a refresh spawned and not yet run
        self.refreshing: set[Any] = set()  # those of them no write has overtaken since
        self.reloads: dict[Any, Any] = {}  # key -> what the refresh's loader returns, if a load started it
        self.driver = Driver()
        self.values = iter(range(10**9))

    # -- the model of SPEC §2 ------------------------------------------------------------

    def copy_up(self, key: Any, row: Row, source: int, upto: int) -> None:
        """Promotion and refresh: tiers ``upto .. source-1`` get a copy stamped now."""
        now = self.clock.now()
        value, at, ttl = row
        life = ttl if ttl is not None else self.ttls[source]
        left = None if life is None else life - (now - at)
        if left is not None and left <= 0:
            return
        for j in range(source - 1, upto - 1, -1):
            mine = self.ttls[j]
            self.model[j][key] = (value, now, mine if left is None else (left if mine is None else min(mine, left)))

    def model_get(self, key: Any, promote: bool = True, reload: Any = None) -> Any:
        now = self.clock.now()
        for i, tier in enumerate(self.model):
            row = tier.get(key)
            if row is None or expired(row, self.ttls[i], now):
                continue
            if not promote:
                return row[0]
            if i == 0 and self.ttr is not None and now - row[1] >= self.ttr and key not in self.started:
                self.started.add(key)  # one refresh per key at a time
                self.refreshing.add(key)
                self.reloads[key] = reload  # a load's refresh may call its factory again
            self.copy_up(key, row, i, 0)
            return row[0]
        return None

    def forget(self, key: Any) -> None:
        self.refreshing.discard(key)

    # -- rules -----------------------------------------------------------------------------

    def get_value(self, key: Any) -> Any:
        entry = self.core.hit(key)
        if entry is None:
            entry = self.driver.run(self.core.get_op(key))
        return None if entry is None else entry.value

    @rule(key=KEYS)
    def get(self, key: Any) -> None:
        expected = self.model_get(key)
        assert self.get_value(key) == expected

    @rule(key=KEYS, ttl=ENTRY_TTLS)
    def insert(self, key: Any, ttl: float | None) -> None:
        value = next(self.values)
        self.driver.run(self.core.insert_op(key, CacheEntry(value, None, ttl)))
        for tier in self.model:
            tier[key] = (value, self.clock.now(), ttl)
        self.forget(key)

    @rule(key=KEYS)
    def load(self, key: Any) -> None:
        value = next(self.values)
        expected = self.model_get(key, reload=value)
        got = self.driver.run(self.core.load_op(key, lambda: value, PLAIN))
        if expected is None:  # a miss everywhere: loaded, stored in every tier
            assert got.value == value and got.cached_at == self.clock.now()
            for tier in self.model:
                tier[key] = (value, self.clock.now(), None)
        else:
            assert got.value == expected

    @rule(key=KEYS, then=st.sampled_from(["invalidate", "insert"]))
    def write_during_a_load(self, key: Any, then: str) -> None:
        """A load of a missing key is at its factory when an invalidate (or an insert)
        completes: the load's caller gets its value, which is never stored."""
        if self.model_get(key, promote=False) is not None:
            return
        loaded = next(self.values)
        flow = self.core.load_op(key, lambda: loaded, PLAIN)
        pending = self.driver.run(flow, until=lambda e: isinstance(e, Load))
        assert isinstance(pending, Load)
        if then == "invalidate":
            self.driver.run(self.core.invalidate_op(key))
            for tier in self.model:
                tier.pop(key, None)
        else:
            written = next(self.values)
            self.driver.run(self.core.insert_op(key, written))
            for tier in self.model:
                tier[key] = (written, self.clock.now(), None)
        self.forget(key)
        got = self.driver.resume(flow, pending.factory())
        assert got.value == loaded

    @rule(key=KEYS)
    def invalidate(self, key: Any) -> None:
        self.driver.run(self.core.invalidate_op(key))
        for tier in self.model:
            tier.pop(key, None)
        self.forget(key)

    @rule()
    def clear(self) -> None:
        self.driver.run(self.core.clear_op())
        for tier in self.model:
            tier.clear()
        self.refreshing.clear()

    @rule(step=STEPS)
    def advance(self, step: float) -> None:
        self.clock.advance(step)

    @precondition(lambda self: self.driver.spawned or self.started)
    @rule()
    def run_refreshes(self) -> None:
        """The background refreshes run now: each reads the tiers below the first and
        copies what is fresh there into the tiers above it; when nothing below is fresh,
        a refresh a load started calls its factory again and stores the value in every
        tier. One was spawned for each key the model saw served stale, and no more."""
        assert len(self.driver.spawned) == len(self.started)
        now = self.clock.now()
        for key in sorted(self.refreshing, key=repr):
            for i in range(1, len(self.model)):
                row = self.model[i].get(key)
                if row is not None and not expired(row, self.ttls[i], now):
                    self.copy_up(key, row, i, 0)
                    break
            else:
                if self.reloads.get(key) is not None:
                    for tier in self.model:
                        tier[key] = (self.reloads[key], now, None)
        self.refreshing.clear()
        self.reloads.clear()
        self.started.clear()
        self.driver.run_spawned()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def tiers_hold_what_the_model_says(self) -> None:
        for tier, model in zip(self.tiers, self.model, strict=True):
            held = {k: (e.value, e.cached_at, e.ttl) for k, e in tier.data.items()}
            assert held.keys() == model.keys()
            for key, (value, at, ttl) in model.items():
                got = held[key]
                assert got[0] == value and got[1] == at
                assert (got[2] is None) == (ttl is None) and (ttl is None or abs(got[2] - ttl) < 1e-9)

    @invariant()
    def records_die_with_their_calls(self) -> None:
        core = self.core
        assert len(core.flights) == 0
        if not self.driver.spawned:  # a refresh holds its token until it has run
            assert len(core.guard) == 0 and not core.refreshing


CoreModel.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
test_the_core_agrees_with_the_model = CoreModel.TestCase
