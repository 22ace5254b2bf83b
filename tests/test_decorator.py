"""``@cache.cached()`` on the sync cache and on the aio cache (asyncio and trio).

Functions under test are written once as plain functions; :func:`flavour` makes the
coroutine-function twin for the aio frontends (same name, same signature).
"""

from __future__ import annotations

import functools
import inspect
import threading
from datetime import timedelta
from typing import Any

import anyio
import pytest

from cachet import CacheEntry, Clock, ManualClock
from cachet.sync import Cache

from .frontends import Frontend
from .helpers import wait_until

pytestmark = pytest.mark.anyio


def flavour(frontend: Frontend, fn: Any) -> Any:
    """``fn`` for a sync cache, an ``async def`` twin with ``fn``'s signature for an aio one."""
    if frontend.is_sync:
        return fn

    @functools.wraps(fn)
    async def afn(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return afn


async def call(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def record(self, *args: Any) -> None:
        self.calls.append(args)

    def __len__(self) -> int:
        return len(self.calls)


def build(frontend: Frontend, clock: Clock, *, stampede: bool = False, ttl: float | None = 3600) -> Any:
    b = frontend.builder(clock).memory(1000)
    if ttl is not None:
        b = b.ttl(ttl)
    if stampede:
        b = b.stampede_protection()
    return b.build()


# -- keys ------------------------------------------------------------------------------


async def test_positional_keyword_and_default_calls_share_one_entry(frontend, clock) -> None:
    n = Counter()

    def area(width, height=2):
        n.record(width, height)
        return width * height

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached()(flavour(frontend, area))
        results = [await call(f(3)), await call(f(3, 2)), await call(f(3, height=2)),
                   await call(f(width=3, height=2)), await call(f(height=2, width=3))]
        assert results == [6] * 5
        assert n.calls == [(3, 2)]
        assert await call(f(3, 5)) == 15  # other arguments, another entry
        assert await call(f(4)) == 8
        assert n.calls == [(3, 2), (3, 5), (4, 2)]


async def test_var_positional_keyword_only_and_var_keyword(frontend, clock) -> None:
    n = Counter()

    def g(a, *rest, scale=1, **extra):
        n.record(a, rest, scale, tuple(sorted(extra.items())))
        return (a + sum(rest)) * scale + len(extra)

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached()(flavour(frontend, g))
        assert await call(f(1, 2, 3, scale=1, z=5, y=4)) == 8
        assert await call(f(1, 2, 3, y=4, z=5)) == 8  # default scale, kwargs in another order
        assert len(n) == 1
        assert await call(f(1, 2, y=4, z=5)) == 5  # fewer positional: a different key
        assert await call(f(1, 2, 3, scale=2, y=4, z=5)) == 14
        assert await call(f(1, 2, 3, y=4)) == 7
        assert len(n) == 4


async def test_the_key_names_the_function(frontend, clock) -> None:
    def one(x):
        return ("one", x)

    def two(x):
        return ("two", x)

    async with frontend.open(build(frontend, clock)) as c:
        f1 = c.cached()(flavour(frontend, one))
        f2 = c.cached()(flavour(frontend, two))
        assert await call(f1(1)) == ("one", 1)
        assert await call(f2(1)) == ("two", 1)  # same arguments, another function
        assert f1.key(1) == (f"{__name__}.test_the_key_names_the_function.<locals>.one", 1)
        entry = await c.get(f1.key(1))
        assert entry is not None and entry.value == ("one", 1)


async def test_custom_key_is_the_cache_key(frontend, clock) -> None:
    n = Counter()

    def profile(user_id, verbose=False):
        n.record(user_id, verbose)
        return {"id": user_id}

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached(key=lambda user_id, verbose=False: ("profile", user_id))(flavour(frontend, profile))
        assert await call(f(7)) == {"id": 7}
        assert await call(f(7, verbose=True)) == {"id": 7}  # the key ignores verbose
        assert len(n) == 1
        assert f.key(7, True) == ("profile", 7)
        entry = await c.get(("profile", 7))
        assert entry is not None and entry.value == {"id": 7}
        await call(f.invalidate(7))
        assert await c.get(("profile", 7)) is None


async def test_unhashable_arguments_point_to_key(frontend, clock) -> None:
    def total(items):
        return sum(items)

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached()(flavour(frontend, total))
        with pytest.raises(TypeError, match=r"not hashable.*key=") as info:
            await call(f([1, 2]))
        assert "total" in str(info.value)
        with pytest.raises(TypeError, match="key="):
            await call(f(items=[1, 2]))
        with pytest.raises(TypeError, match="key="):
            await call(f.invalidate([1, 2]))
        g = c.cached(key=lambda items: tuple(items))(flavour(frontend, total))
        assert await call(g([1, 2])) == 3
        bad = c.cached(key=lambda items: items)(flavour(frontend, total))
        with pytest.raises(TypeError, match=r"key returned by key=\.\.\. is not hashable"):
            await call(bad([1, 2]))


async def test_wrong_arguments_raise_like_the_function(frontend, clock) -> None:
    def f(a, b):
        return a + b

    async with frontend.open(build(frontend, clock)) as c:
        cf = c.cached()(flavour(frontend, f))
        with pytest.raises(TypeError, match=r"missing (a|1) required (positional )?argument"):
            await call(cf(1))
        with pytest.raises(TypeError):
            await call(cf(1, 2, 3))


# -- methods ---------------------------------------------------------------------------


async def test_methods_cache_per_instance(frontend, clock) -> None:
    n = Counter()

    async with frontend.open(build(frontend, clock)) as c:
        class Repo:
            def __init__(self, name: str) -> None:
                self.name = name

            def find(self, ident, suffix=""):
                n.record(self.name, ident)
                return f"{self.name}:{ident}{suffix}"

        Repo.find = c.cached()(flavour(frontend, Repo.find))  # as if decorated in the class body
        a, b = Repo("a"), Repo("b")
        assert await call(a.find(1)) == "a:1"
        assert await call(a.find(ident=1)) == "a:1"
        assert await call(Repo.find(a, 1)) == "a:1"  # through the class: the same key
        assert await call(b.find(1)) == "b:1"  # another instance, another entry
        assert n.calls == [("a", 1), ("b", 1)]
        assert a.find.cache is b.find.cache
        assert a.find.key(1) == Repo.find.key(a, 1)
        await call(a.find.invalidate(1))  # self is bound: only a's entry goes
        assert await call(a.find(1)) == "a:1"
        assert await call(b.find(1)) == "b:1"
        assert n.calls == [("a", 1), ("b", 1), ("a", 1)]


async def test_classmethod_and_staticmethod(frontend, clock) -> None:
    n = Counter()

    async with frontend.open(build(frontend, clock)) as c:
        def describe(cls, x):
            n.record(cls.__name__, x)
            return f"{cls.__name__}({x})"

        def double(x):
            n.record("double", x)
            return 2 * x

        class Base:
            pass

        Base.describe = c.cached()(classmethod(flavour(frontend, describe)))
        Base.double = c.cached()(staticmethod(flavour(frontend, double)))

        class Child(Base):
            pass

        assert await call(Base.describe(1)) == "Base(1)"
        assert await call(Base().describe(1)) == "Base(1)"  # bound to the class either way
        assert await call(Child.describe(1)) == "Child(1)"  # the class is part of the key
        assert await call(Base.double(4)) == 8
        assert await call(Child().double(4)) == 8
        assert n.calls == [("Base", 1), ("Child", 1), ("double", 4)]
        await call(Child.describe.invalidate(1))
        assert await call(Child.describe(1)) == "Child(1)"
        assert await call(Base.describe(1)) == "Base(1)"
        assert len(n) == 4


async def test_unhashable_instance_points_to_key(frontend, clock) -> None:
    async with frontend.open(build(frontend, clock)) as c:
        class Unhashable:
            __hash__ = None  # type: ignore[assignment]

            def m(self, x):
                return x

        Unhashable.m = c.cached()(flavour(frontend, Unhashable.m))
        with pytest.raises(TypeError, match="key="):
            await call(Unhashable().m(1))


# -- ttl, invalidation, errors -----------------------------------------------------------


@pytest.mark.parametrize("ttl", [10, 10.0, timedelta(seconds=10)])
async def test_ttl_counts_on_the_cache_clock(frontend, clock: ManualClock, ttl) -> None:
    n = Counter()

    def load(x):
        n.record(x)
        return len(n)

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached(ttl=ttl)(flavour(frontend, load))
        assert await call(f("k")) == 1
        clock.advance(10)
        assert await call(f("k")) == 1  # exactly ttl old: still fresh
        entry = await c.get(f.key("k"))
        assert entry is not None and entry.ttl == 10.0
        clock.advance(0.001)
        assert await call(f("k")) == 2  # expired: loaded again
        assert len(n) == 2


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
def test_bad_ttl_is_a_value_error(ttl) -> None:
    cache = Cache.builder().memory(10).build()
    with pytest.raises(ValueError, match=r"cached\(ttl=\.\.\.\)"):
        cache.cached(ttl=ttl)


def test_key_must_be_callable() -> None:
    cache = Cache.builder().memory(10).build()
    with pytest.raises(TypeError, match="key="):
        cache.cached(key="user_id")  # type: ignore[arg-type]


async def test_invalidate_with_equivalent_arguments(frontend, clock) -> None:
    n = Counter()

    def f(a, b=2):
        n.record(a, b)
        return len(n)

    async with frontend.open(build(frontend, clock)) as c:
        cf = c.cached()(flavour(frontend, f))
        assert await call(cf(1)) == 1
        assert await call(cf(5)) == 2
        await call(cf.invalidate(a=1, b=2))  # another spelling of cf(1)
        assert await call(cf(1)) == 3
        assert await call(cf(5)) == 2  # untouched
        await call(cf.invalidate(99))  # nothing cached: fine


async def test_exceptions_propagate_and_are_not_cached(frontend, clock) -> None:
    n = Counter()

    def flaky(x):
        n.record(x)
        if len(n) == 1:
            raise LookupError("first call fails")
        return x

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached()(flavour(frontend, flaky))
        with pytest.raises(LookupError, match="first call fails"):
            await call(f(1))
        assert await call(f(1)) == 1
        assert await call(f(1)) == 1
        assert len(n) == 2


async def test_none_and_entries_are_ordinary_results(frontend, clock) -> None:
    n = Counter()
    kept = CacheEntry.expires_after("inner", 1)

    def nothing(x):
        n.record(x)
        return None

    def entry(x):
        n.record(x)
        return kept

    async with frontend.open(build(frontend, clock)) as c:
        f = c.cached()(flavour(frontend, nothing))
        assert await call(f(1)) is None
        assert await call(f(1)) is None
        g = c.cached()(flavour(frontend, entry))
        assert await call(g(1)) is kept  # returned as the function returned it
        clock.advance(5)  # beyond the inner entry's ttl: it is a value, not the cache entry
        assert await call(g(1)) is kept
        assert len(n) == 2


async def test_wrapper_metadata_and_cache(frontend, clock) -> None:
    def documented(x):
        """Docs of the function."""
        return x

    cache = build(frontend, clock)
    async with frontend.open(cache) as c:
        fn = flavour(frontend, documented)
        f = c.cached()(fn)
        assert f.cache is cache
        assert f.__wrapped__ is fn
        assert f.__name__ == "documented" and f.__doc__ == "Docs of the function."
        assert "documented" in repr(f)
        if not frontend.is_sync:
            assert inspect.iscoroutinefunction(f.__call__)


async def test_cached_values_come_from_every_tier(frontend, clock) -> None:
    """A decorated function sees the whole stack: a value in L2 is promoted, not recomputed."""
    n = Counter()

    def f(x):
        n.record(x)
        return x * 10

    l2 = frontend.builder(clock).memory(100)
    cache = frontend.builder(clock).memory(100).ttl(60).fallback(l2).build()
    async with frontend.open(cache) as c:
        cf = c.cached()(flavour(frontend, f))
        assert await call(cf(1)) == 10
        l1 = cache._core.levels[0].tier
        l1.clear()
        assert await call(cf(1)) == 10
        assert len(n) == 1


# -- the wrong kind of function -----------------------------------------------------------


def test_sync_cache_refuses_a_coroutine_function() -> None:
    cache = Cache.builder().memory(10).build()

    async def coro(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"coroutine function.*cachet\.aio"):
        cache.cached()(coro)
    with pytest.raises(TypeError, match="coroutine function"):
        cache.cached()(staticmethod(coro))


def test_aio_cache_refuses_a_plain_function() -> None:
    import cachet.aio

    cache = cachet.aio.Cache.builder().memory(10).build()

    def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"not a coroutine function.*cachet\.sync"):
        cache.cached()(plain)
    with pytest.raises(TypeError, match="not a coroutine function"):
        cache.cached()(classmethod(plain))
    with pytest.raises(TypeError, match="decorates a function"):
        cache.cached()(42)


# -- stampede ----------------------------------------------------------------------------




def waiters(cache: Any, key: Any) -> int:
    flight = cache._core.flights.find("cache.get_or_insert", key)
    return -1 if flight is None else int(flight.waiters)


@pytest.mark.parametrize("outcome", ["value", "error"])
async def test_stampede_one_call_for_many_callers(frontend, clock, outcome) -> None:
    n_callers = 8
    calls = Counter()
    cache = build(frontend, clock, stampede=True)
    results: list[Any] = [None] * n_callers
    errors: list[BaseException | None] = [None] * n_callers
    failure = RuntimeError("load failed")

    async with frontend.open(cache):
        if frontend.is_sync:
            opened = threading.Event()

            @cache.cached()
            def slow(x):
                calls.record(x)
                opened.wait(10)
                if outcome == "error":
                    raise failure
                return x * 2

            def one(i: int) -> None:
                try:
                    results[i] = slow(21)
                except BaseException as exc:
                    errors[i] = exc

            threads = [threading.Thread(target=one, args=(i,)) for i in range(n_callers)]
            for t in threads:
                t.start()
            wait_until(lambda: waiters(cache, slow.key(21)) == n_callers - 1, "callers to coalesce")
            opened.set()
            for t in threads:
                t.join(10)
        else:
            aopened = anyio.Event()

            @cache.cached()
            async def aslow(x):
                calls.record(x)
                await aopened.wait()
                if outcome == "error":
                    raise failure
                return x * 2

            async def aone(i: int) -> None:
                try:
                    results[i] = await aslow(21)
                except Exception as exc:
                    errors[i] = exc

            async with anyio.create_task_group() as tg:
                for i in range(n_callers):
                    tg.start_soon(aone, i)
                await anyio.wait_all_tasks_blocked()
                assert waiters(cache, aslow.key(21)) == n_callers - 1
                aopened.set()
        assert len(calls) == 1
        if outcome == "value":
            assert results == [42] * n_callers and errors == [None] * n_callers
        else:
            assert all(e is failure for e in errors)
        assert cache.stats()["coalesced_waits"] == n_callers - 1
        assert len(cache._core.flights) == 0


async def test_without_stampede_protection_callers_do_not_wait(clock) -> None:
    """Without protection two concurrent misses both run the function (the contrast case;
    on asyncio and trio, where the interleaving is deterministic)."""
    import cachet.aio

    calls = Counter()
    cache = cachet.aio.Cache.builder(clock).memory(10).build()
    gate = anyio.Event()
    async with cache:
        @cache.cached()
        async def slow(x):
            calls.record(x)
            await gate.wait()
            return x

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow, 1)
            tg.start_soon(slow, 1)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert len(calls) == 2


async def test_a_closed_cache_serves_no_memoized_hit(frontend, clock) -> None:
    from cachet import CacheError

    cache = frontend.builder(clock).memory(10).build()

    def f(x):
        return x * 2

    async with frontend.open(cache) as c:
        cf = c.cached()(flavour(frontend, f))
        assert await call(cf(2)) == 4
        assert await call(cf(2)) == 4  # a hit
    with pytest.raises(CacheError, match="closed"):
        await call(cf(2))
