"""Resilience (issue 9): TTL jitter, refresh back-off, fail-safe, loader timeouts."""

from __future__ import annotations

import pytest

from cachet import CacheEntry
from cachet.testing import MockTier

pytestmark = pytest.mark.anyio


async def test_ttl_jitter_spreads_expiry_within_the_bound(frontend, clock) -> None:
    l1, l2 = MockTier(), MockTier()
    cache = (frontend.builder(clock).storage(l1).ttl(10, jitter=0.5)
             .fallback(frontend.builder(clock).storage(l2).ttl(100)).build())
    async with frontend.open(cache) as c:
        for k in range(50):
            await c.insert(k, k)
    ttls = [e.ttl for e in l1.data.values()]
    assert all(10.0 <= t <= 15.0 for t in ttls)
    assert len(set(ttls)) > 40  # spread out, not one value
    assert all(e.ttl is None for e in l2.data.values())  # no jitter configured there


async def test_jittered_promotion_never_outlives_its_source(frontend, clock) -> None:
    l1, l2 = MockTier(), MockTier.with_data({"k": CacheEntry("v", clock.now() - 95)})
    cache = (frontend.builder(clock).storage(l1).ttl(10, jitter=1.0)
             .fallback(frontend.builder(clock).storage(l2).ttl(100)).build())
    async with frontend.open(cache) as c:
        await c.get("k")
    assert l1.data["k"].ttl == 5.0  # 5 s left in L2 caps the jittered L1 ttl


def test_jitter_must_be_a_fraction(frontend) -> None:
    with pytest.raises(ValueError, match="jitter"):
        frontend.builder().memory(10).ttl(10, jitter=2).build()
