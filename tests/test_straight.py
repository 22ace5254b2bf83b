"""The straight paths (``cachet/_core/straight.py``) against the flows they shortcut:
the same operations on two caches, one with the straight paths and one without, give the
same results, raise the same errors and count the same stats, step by step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cachet import Cache, CacheEntry, ExpirationPolicy, InsertPolicy, TierError
from cachet.testing import ManualClock, MockTier
from cachet.tiers import MemoryTier

KEYS = st.integers(0, 3)
OPS = st.lists(st.one_of(
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("get_or_insert"), KEYS),
    st.tuples(st.just("optionally_get_or_insert"), KEYS),
    st.tuples(st.just("insert"), KEYS, st.one_of(st.none(), st.floats(1, 30))),
    st.tuples(st.just("invalidate"), KEYS),
    st.tuples(st.just("advance"), st.floats(0, 30)),
    st.tuples(st.just("fail_l2_reads"), st.booleans()),
), max_size=40)


def build(straight: bool, tiers: int, policy: str, eager: bool) -> tuple[Any, MockTier, Any]:
    with pytest.MonkeyPatch.context() as m:
        if not straight:
            m.setattr("cachet._core.straight.straight_loads", lambda core: False)
            m.setattr("cachet._core.straight.straight_gets", lambda core: False)
        clock = ManualClock(1_000_000.0)
        top = Cache.builder(clock).name("l1").storage(MemoryTier(2, clock=clock, ttl=10)).ttl(10).stampede_protection()
        if policy == "even":  # only even values are stored in L1
            top = top.insert_policy(InsertPolicy.when(lambda e: e.value % 2 == 0))
        elif policy == "never":
            top = top.insert_policy(InsertPolicy.never())
        l2 = MockTier()
        if tiers == 2:
            low = (Cache.builder(clock).name("l2").storage(l2).ttl(20)
                   .expiration_policy(ExpirationPolicy.eager() if eager else ExpirationPolicy.lazy()))
            top = top.fallback(low)
        cache = top.build()
        assert cache._core.straight == (straight and tiers == 1 and policy == "always")
        assert cache._core.straight_get == (straight and tiers == 2)
        return cache, l2, clock


def apply(cache: Any, l2: MockTier, clock: ManualClock, op: tuple[Any, ...], n: int) -> Any:
    name = op[0]
    try:
        if name == "get":
            return cache.get(op[1])
        if name in ("get_or_insert", "optionally_get_or_insert"):
            value = None if name.startswith("optionally") and n % 3 == 0 else n
            return getattr(cache, name)(op[1], lambda: value)
        if name == "insert":
            value = n if op[2] is None else CacheEntry.expires_after(n, op[2])
            return cache.insert(op[1], value)
        if name == "invalidate":
            return cache.invalidate(op[1])
        if name == "advance":
            return clock.advance(op[1])
        l2.clear_failures()
        if op[1]:
            l2.fail_when(lambda req: type(req).__name__ == "GetRequest")
        return None
    except TierError as exc:
        return ("TierError", exc.tier)


@pytest.mark.parametrize("tiers", [1, 2])
@pytest.mark.parametrize("policy", ["always", "even", "never"])
@pytest.mark.parametrize("eager", [True, False])
@settings(max_examples=150, deadline=None)
@given(ops=OPS)
# The cases the straight get decides (L1 holds 2 keys: a third insert evicts the first):
@example(ops=[("insert", 0, None), ("insert", 1, None), ("insert", 2, None),  # L2 expired
              ("advance", 25.0), ("get", 0), ("get", 0)])
@example(ops=[("insert", 0, None), ("insert", 1, None), ("insert", 2, None),  # copy's ttl:
              ("advance", 15.0), ("get", 0), ("advance", 4.0), ("get", 0),  # what L2 has left
              ("advance", 2.0), ("get", 0)])
@example(ops=[("insert", 0, 12.0), ("insert", 1, None), ("insert", 2, None),  # entry's own ttl
              ("advance", 5.0), ("get", 0), ("advance", 8.0), ("get", 0)])
@example(ops=[("insert", 0, None), ("insert", 1, None), ("insert", 2, None),  # read errors
              ("fail_l2_reads", True), ("get", 0), ("fail_l2_reads", False), ("get", 0)])
@example(ops=[("insert", 0, None), ("insert", 1, None), ("insert", 2, None),  # no life left
              ("advance", 20.0), ("get", 0), ("get", 0)])
@example(ops=[("insert", 3, None), ("insert", 1, None), ("insert", 0, None),  # policy "even"
              ("get", 3), ("get", 3), ("get_or_insert", 2)])
def test_straight_paths_match_the_flows(ops, tiers, policy, eager) -> None:
    a, l2a, ca = build(True, tiers, policy, eager)
    b, l2b, cb = build(False, tiers, policy, eager)
    for n, op in enumerate(ops):
        got, want = apply(a, l2a, ca, op, n), apply(b, l2b, cb, op, n)
        assert got == want, (n, op)
        assert a.stats() == b.stats(), (n, op)
    assert l2a.data == l2b.data
