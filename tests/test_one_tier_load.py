"""A loader's miss on a stack of one in-process tier runs as plain calls
(``Core.start_load`` / ``finish_load`` / ``fail_load``) instead of a driven flow. Each
case here runs both ways, on sync, asyncio and trio, and must give the same result, the
same tier contents, the same stats, and leave no record in flight. On aio the plain run
goes twice: entered (a protected load's awaitable is then detached, awaited in a task
of its own) and not entered (awaited by its caller)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cachet import CacheEntry, InsertPolicy, LoaderError, ReentrantLoadError, TierError
from cachet.service import GetRequest, InsertRequest
from cachet.testing import MockTier, MockTierError

from .frontends import SyncFacade

pytestmark = pytest.mark.anyio

PATHS = ["plain", "flow"]


def build(frontend: Any, clock: Any, path: str, tier: Any = None, *, policy: Any = None,
          stampede: bool = True) -> Any:
    b = frontend.builder(clock).name("one")
    b = b.storage(tier) if tier is not None else b.memory(100)
    b = b.ttl(60)
    if policy is not None:
        b = b.insert_policy(policy)
    if stampede:
        b = b.stampede_protection()
    cache = b.build()
    assert cache._core.direct_load
    return cache


def settled(cache: Any) -> None:
    core = cache._core
    assert len(core.flights) == 0 and len(core.guard) == 0


@contextlib.asynccontextmanager
async def unentered(frontend: Any, cache: Any) -> AsyncIterator[Any]:
    """The cache, usable and closed at the end, but (aio) not entered."""
    if frontend.is_sync:
        with cache:
            yield SyncFacade(cache)
    else:
        try:
            yield cache
        finally:
            await cache.close()


async def run(frontend: Any, clock: Any, path: str, scenario: Any, *, entered: bool = True,
              **kw: Any) -> Any:
    """Run ``scenario`` on a fresh cache: with the plain-call load (``plain``) or with it
    turned off (``flow``). Returns its outcome, the stats, and how many loads ran as a
    flow (``Core.load_op``)."""
    cache = build(frontend, clock, path, **kw)
    core = cache._core
    flows = []
    load_op = core.load_op

    def counted(*args: Any) -> Any:
        flows.append(args[0])
        return load_op(*args)

    core.load_op = counted  # what the frontends call when the plain path does not apply
    async with (frontend.open(cache) if entered else unentered(frontend, cache)) as c:
        if path == "flow":
            cache._start_load = None
        outcome = await scenario(c, frontend)
        settled(cache)
        return outcome, cache.stats()["tiers"], len(flows)


async def both(frontend: Any, clock: Any, scenario: Any, *, tier: Any = None, flows: int = 0,
               **kw: Any) -> Any:
    """Run ``scenario`` both ways (``tier``: a tier class, one fresh tier per run); the
    outcome and stats must agree, and the plain run must have run ``flows`` loads as a
    flow (0: every load took the plain path). Returns the outcome."""
    plain = await run(frontend, clock, "plain", scenario, tier=tier and tier(), **kw)
    flow = await run(frontend, clock, "flow", scenario, tier=tier and tier(), **kw)
    assert plain[:2] == flow[:2]
    assert plain[2] == flows, f"{plain[2]} loads ran as a flow on the plain path"
    if not frontend.is_sync:
        outside = await run(frontend, clock, "plain", scenario, tier=tier and tier(), entered=False, **kw)
        assert outside == plain
    assert flow[2] > 0  # the comparison run really ran the flow
    return plain[0]


async def test_a_miss_loads_stamps_and_stores(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        got = await c.get_or_insert("k", fe.factory(lambda: 1))
        again = await c.get("k")
        return got.value, got.cached_at, again.value

    assert await both(frontend, clock, scenario) == (1, clock.now(), 1)


async def test_an_unhashable_key_and_a_factory_that_is_not_callable_are_refused(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        with pytest.raises(TypeError, match="hashable"):
            await c.get_or_insert(["k"], fe.factory(lambda: 1))
        with pytest.raises(TypeError, match="factory must be callable"):
            await c.get_or_insert("k", 5)
        return await c.get("k")

    assert await both(frontend, clock, scenario, flows=2) is None  # both handed to the flow


async def test_a_failing_tier_read_raises_once_and_never_calls_the_factory(frontend, clock) -> None:
    calls = []

    async def scenario(c: Any, fe: Any) -> Any:
        tier = c._core.levels[0].tier if not fe.is_sync else c.sync._core.levels[0].tier
        tier.fail_when(lambda r: isinstance(r, GetRequest))
        with pytest.raises(TierError) as info:
            await c.get_or_insert("k", fe.factory(lambda: calls.append(1) or 1))
        reads = sum(isinstance(r, GetRequest) for r in tier.operations)
        tier.clear_failures()
        got = await c.get_or_insert("k", fe.factory(lambda: 2))
        return type(info.value.__cause__), reads, got.value

    assert await both(frontend, clock, scenario, tier=MockTier) == (MockTierError, 1, 2)
    assert calls == []


async def test_a_failing_tier_write_still_returns_the_value_unstamped(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        tier = c._core.levels[0].tier if not fe.is_sync else c.sync._core.levels[0].tier
        tier.fail_when(lambda r: isinstance(r, InsertRequest))
        got = await c.get_or_insert("k", fe.factory(lambda: 1))
        return got.value, got.cached_at, tier.contains_key("k")

    assert await both(frontend, clock, scenario, tier=MockTier) == (1, None, False)


async def test_a_refusing_policy_stores_nothing(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        got = await c.get_or_insert("k", fe.factory(lambda: 1))
        return got.value, got.cached_at, await c.get("k")

    refuse = InsertPolicy(lambda entry: False, "never")
    assert await both(frontend, clock, scenario, policy=refuse) == (1, None, None)


async def test_none_entries_and_optional_loads(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        nothing = await c.optionally_get_or_insert("a", fe.factory(lambda: None))
        given = await c.get_or_insert("b", fe.factory(lambda: CacheEntry("v", None, 5.0)))
        none_value = await c.get_or_insert("c", fe.factory(lambda: None))
        return (nothing, await c.get("a"), given.value, given.ttl, given.cached_at,
                none_value.value, (await c.get("c")).value)

    assert await both(frontend, clock, scenario) == (None, None, "v", 5.0, clock.now(), None, None)


async def test_factory_errors_propagate_as_each_mode_says_and_are_not_cached(frontend, clock) -> None:
    def boom() -> Any:
        raise KeyError("backend")

    async def scenario(c: Any, fe: Any) -> Any:
        with pytest.raises(KeyError):
            await c.get_or_insert("k", fe.factory(boom))
        with pytest.raises(LoaderError) as info:
            await c.try_get_or_insert("k", fe.factory(boom))
        got = await c.get_or_insert("k", fe.factory(lambda: 3))
        return type(info.value.__cause__), got.value

    assert await both(frontend, clock, scenario) == (KeyError, 3)


async def test_an_invalidate_during_the_factory_wins(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        async def load() -> Any:
            await c.invalidate("k")
            return "old"

        def load_sync() -> Any:
            c.sync.invalidate("k")
            return "old"

        got = await c.get_or_insert("k", load_sync if fe.is_sync else load)
        return got.value, got.cached_at, await c.get("k")

    assert await both(frontend, clock, scenario) == ("old", None, None)


@pytest.mark.parametrize("stampede", [True, False])
async def test_a_factory_that_loads_its_own_key_is_refused(frontend, clock, stampede) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        if fe.is_sync:
            def inner() -> Any:
                return c.sync.get_or_insert("k", lambda: 2).value
        else:
            async def inner() -> Any:
                return (await c.get_or_insert("k", lambda: 2)).value
        with pytest.raises(ReentrantLoadError):
            await c.get_or_insert("k", inner)
        return await c.get("k")

    assert await both(frontend, clock, scenario, stampede=stampede) is None


class Overtaken(MockTier):
    """A tier during whose insert an invalidate of the key begins (marks the loads of
    the key stale), as a racing thread's or task's would."""

    core: Any = None

    def insert(self, key: Any, entry: Any) -> Any:
        outcome = super().insert(key, entry)
        self.core.guard.supersede(key)
        return outcome


async def test_a_write_an_invalidate_overtook_is_undone(frontend, clock) -> None:
    async def scenario(c: Any, fe: Any) -> Any:
        core = c._core if not fe.is_sync else c.sync._core
        core.levels[0].tier.core = core
        got = await c.get_or_insert("k", fe.factory(lambda: 1))
        return got.value, got.cached_at, core.levels[0].tier.contains_key("k")

    assert await both(frontend, clock, scenario, tier=Overtaken) == (1, None, False)


@pytest.mark.parametrize("stampede", [True, False])
async def test_an_entry_that_lands_between_the_hit_and_the_load_is_judged_by_the_flow(
        frontend, clock, stampede) -> None:
    """The plain path gives the key back to the flow when the tier holds an entry the hit
    did not serve (here: expired), so the flow's rules decide."""
    async def scenario(c: Any, fe: Any) -> Any:
        await c.insert("k", CacheEntry("old", clock.now() - 100, 1.0))
        got = await c.get_or_insert("k", fe.factory(lambda: "new"))
        return got.value, (await c.get("k")).value

    assert await both(frontend, clock, scenario, stampede=stampede, flows=1) == ("new", "new")


@pytest.mark.filterwarnings("error")  # a coroutine left unawaited would warn
@pytest.mark.parametrize("stack", ["one tier", "two tiers"])
@pytest.mark.parametrize("method", ["get_or_insert", "try_get_or_insert", "optionally_get_or_insert"])
def test_a_sync_cache_refuses_a_coroutine_factory_clearly(stack, method) -> None:
    import cachet

    b = cachet.Cache.builder().memory(10).stampede_protection()
    if stack == "two tiers":
        b = b.fallback(cachet.Cache.builder().storage(MockTier()))
    cache = b.build()

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"returned a coroutine \(.*fetch\).*cachet.aio.Cache"):
        getattr(cache, method)("k", fetch)
    assert cache.get("k") is None
    assert len(cache._core.flights) == 0 and len(cache._core.guard) == 0
    assert getattr(cache, method)("k", lambda: 2).value == 2  # the key is not stuck
