"""Blocking-code peers for ``compare.py``: L1 hit, decorator hit, protected miss, 32-thread stampede.

Every hit case is a ``functools.partial`` of a one-argument callable, so all rows pay the
same call overhead; each case is built by its own setup function so that the callgrind
runs (``compare.py --instructions``) import and build only the case they count.
"""

from __future__ import annotations

import functools
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from _timing import per_call_ns

KEYS = {f"k{i}": i for i in range(1000)}
HOT = "k5"
TTL = 600
SIZE = 10_000

# kind: "floor" | "cachet" | "python" (pure-Python peer) | "hybrid" (Python hit path over a
# native policy core) | "native" (hit path in C or Rust) | "disk"
Case = tuple[str, str, str, Callable[[], Callable[[], Any]]]  # (name, kind, settings, setup)

_TMP: list[Any] = []  # keep temporary directories alive for the process


def _tmpdir() -> str:
    d = tempfile.TemporaryDirectory(prefix="cachet-bench-")
    _TMP.append(d)
    return d.name


# -- sync L1 hit -----------------------------------------------------------------------------


def _floor_locked_dict() -> Callable[[], Any]:
    lock = threading.Lock()
    d = dict(KEYS)

    def get(k: str) -> Any:
        with lock:
            return d[k]

    return partial(get, HOT)


def _cachetools_ttl() -> Callable[[], Any]:
    import cachetools

    c: Any = cachetools.TTLCache(SIZE, ttl=TTL)
    c.update(KEYS)
    lock = threading.Lock()

    def get(k: str) -> Any:
        with lock:
            return c.get(k)

    return partial(get, HOT)


def _lru_cache() -> Callable[[], Any]:
    @functools.lru_cache(maxsize=SIZE)
    def load(k: str) -> Any:
        return KEYS[k]

    for k in KEYS:
        load(k)
    return partial(load, HOT)


def _dogpile_region(tmp: bool = False) -> Any:
    from dogpile.cache import make_region

    return make_region().configure("dogpile.cache.memory", expiration_time=TTL)


def _dogpile_get() -> Callable[[], Any]:
    region = _dogpile_region()
    for k, v in KEYS.items():
        region.set(k, v)
    assert region.get(HOT) == KEYS[HOT]
    return partial(region.get, HOT)


def _theine_get() -> Callable[[], Any]:
    import theine

    c: Any = theine.Cache(SIZE)
    for k, v in KEYS.items():
        c.set(k, v, timedelta(seconds=TTL))
    assert c.get(HOT) == (KEYS[HOT], True)
    return partial(c.get, HOT)


def _cachebox_get() -> Callable[[], Any]:
    import cachebox

    c: Any = cachebox.TTLCache(SIZE, global_ttl=TTL)
    c.update(KEYS)
    assert c.get(HOT) == KEYS[HOT]
    return partial(c.get, HOT)


def _diskcache_get() -> Callable[[], Any]:
    import diskcache

    c: Any = diskcache.Cache(_tmpdir())
    for k, v in KEYS.items():
        c.set(k, v, expire=TTL)
    assert c.get(HOT) == KEYS[HOT]
    return partial(c.get, HOT)


def _cachet_get() -> Callable[[], Any]:
    import cachet

    c: Any = cachet.Cache.builder().memory(SIZE).ttl(TTL).build()
    for k, v in KEYS.items():
        c.insert(k, v)
    assert c.get(HOT).value == KEYS[HOT]
    return partial(c.get, HOT)


def _cachet_get_protected() -> Callable[[], Any]:
    import cachet

    c: Any = cachet.Cache.builder().memory(SIZE).ttl(TTL).stampede_protection().build()
    for k, v in KEYS.items():
        c.insert(k, v)
    assert c.get(HOT).value == KEYS[HOT]
    return partial(c.get, HOT)


SYNC_HIT: list[Case] = [
    ("locked dict[k] (floor)", "floor", "`dict` read under a `threading.Lock`", _floor_locked_dict),
    ("cachetools TTLCache + Lock", "python", "`TTLCache(10_000, ttl=600)`, `.get(k)` under a `threading.Lock` (cachetools is not thread-safe on its own)", _cachetools_ttl),
    ("functools.lru_cache", "native", "`@lru_cache(maxsize=10_000)` on the loader; a hit is a call (C implementation)", _lru_cache),
    ("dogpile.cache memory backend", "python", "`make_region().configure('dogpile.cache.memory', expiration_time=600)`, `region.get(k)`", _dogpile_get),
    ("theine Cache", "hybrid", "`theine.Cache(10_000)`, `set(k, v, timedelta(seconds=600))`, `get(k)` (returns `(value, ok)`); thread-safe default (locks on)", _theine_get),
    ("cachebox TTLCache", "native", "`cachebox.TTLCache(10_000, global_ttl=600)`, `.get(k)` (Rust, thread-safe)", _cachebox_get),
    ("diskcache Cache", "disk", "`diskcache.Cache(tmpdir)`, `set(k, v, expire=600)`, `.get(k)` (SQLite file; not an in-memory cache)", _diskcache_get),
    ("cachet Cache.get", "cachet", "`Cache.builder().memory(10_000).ttl(600).build()`, `get(k)` (returns a `CacheEntry`)", _cachet_get),
    ("cachet Cache.get, stampede on", "cachet", "as above plus `.stampede_protection()`", _cachet_get_protected),
]


# -- sync decorator hit ----------------------------------------------------------------------


def _floor_memo() -> Callable[[], Any]:
    lock = threading.Lock()
    d: dict[Any, Any] = {}

    def load(k: str) -> Any:
        return KEYS[k]

    def memo(k: str) -> Any:
        with lock:
            v = d.get(k, d)
        if v is d:
            v = load(k)
            with lock:
                d[k] = v
        return v

    memo(HOT)
    return partial(memo, HOT)


def _cachetools_cached() -> Callable[[], Any]:
    import cachetools

    @cachetools.cached(cachetools.TTLCache(SIZE, ttl=TTL), lock=threading.Lock())
    def load(k: str) -> Any:
        return KEYS[k]

    load(HOT)
    return partial(load, HOT)


def _cachetools_cached_cond() -> Callable[[], Any]:
    import cachetools

    @cachetools.cached(cachetools.TTLCache(SIZE, ttl=TTL), condition=threading.Condition())
    def load(k: str) -> Any:
        return KEYS[k]

    load(HOT)
    return partial(load, HOT)


def _cachebox_cached() -> Callable[[], Any]:
    import cachebox

    @cachebox.cached(cachebox.TTLCache(SIZE, global_ttl=TTL))
    def load(k: str) -> Any:
        return KEYS[k]

    load(HOT)
    return partial(load, HOT)


def _theine_memoize() -> Callable[[], Any]:
    import theine

    @theine.Memoize(SIZE, timedelta(seconds=TTL))
    def load(k: str) -> Any:
        return KEYS[k]

    @load.key
    def _key(k: str) -> str:
        return k

    load(HOT)
    return partial(load, HOT)


def _dogpile_decorator() -> Callable[[], Any]:
    region = _dogpile_region()

    @region.cache_on_arguments()
    def load(k: str) -> Any:
        return KEYS[k]

    load(HOT)
    return partial(load, HOT)


def _diskcache_memoize() -> Callable[[], Any]:
    import diskcache

    c = diskcache.Cache(_tmpdir())

    @c.memoize(expire=TTL)
    def load(k: str) -> Any:
        return KEYS[k]

    load(HOT)
    return partial(load, HOT)


def _cachet_decorator(protected: bool) -> Callable[[], Callable[[], Any]]:
    def setup() -> Callable[[], Any]:
        import cachet

        b = cachet.Cache.builder().memory(SIZE).ttl(TTL)
        c: Any = (b.stampede_protection() if protected else b).build()

        @c.cached()
        def load(k: str) -> Any:
            return KEYS[k]

        load(HOT)
        return partial(load, HOT)

    return setup


SYNC_DECORATOR: list[Case] = [
    ("hand-written memo, locked dict (floor)", "floor", "a function reading a `dict` under a `threading.Lock`, loading on a miss", _floor_memo),
    ("cachetools @cached(lock=Lock())", "python", "`@cached(TTLCache(10_000, ttl=600), lock=threading.Lock())`", _cachetools_cached),
    ("cachetools @cached(condition=Condition())", "python", "`@cached(TTLCache(10_000, ttl=600), condition=threading.Condition())` (stampede-protected)", _cachetools_cached_cond),
    ("functools.lru_cache", "native", "`@lru_cache(maxsize=10_000)` (C)", _lru_cache),
    ("cachebox @cached", "native", "`@cachebox.cached(TTLCache(10_000, global_ttl=600))` (defaults: `lock=True`, `postprocess_copy_mutables`)", _cachebox_cached),
    ("theine @Memoize", "hybrid", "`@Memoize(10_000, timedelta(seconds=600))` with a custom key function (the mode its docs recommend)", _theine_memoize),
    ("dogpile @cache_on_arguments", "python", "`region.cache_on_arguments()` on the memory region above", _dogpile_decorator),
    ("diskcache @memoize", "disk", "`Cache(tmpdir).memoize(expire=600)`", _diskcache_memoize),
    ("cachet @cache.cached()", "cachet", "`@cache.cached()` on `memory(10_000).ttl(600)`", _cachet_decorator(False)),
    ("cachet @cache.cached(), stampede on", "cachet", "as above plus `.stampede_protection()`", _cachet_decorator(True)),
]


def measure_hits(cases: list[Case], rounds: int, number: int) -> dict[str, float]:
    fns = {name: setup() for name, _, _, setup in cases}
    # Slow cases (diskcache, tens of microseconds) get fewer calls per sample, so that a
    # sample lasts about as long as a fast case's (budget: number x 1 us).
    counts = {}
    for name, fn in fns.items():
        est = per_call_ns(fn, max(number // 10, 1))
        counts[name] = max(200, min(number, int(number * 1_000 / max(est, 1.0))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(per_call_ns(fn, counts[name]))
    return {name: statistics.median(s) for name, s in samples.items()}


# -- protected miss-then-load on unique keys ----------------------------------------------------

MissSetup = Callable[[], Callable[[int], Any]]  # a fresh cache; returns "load key k through it"


def _miss_floor() -> Callable[[int], Any]:
    lock = threading.Lock()
    d: dict[int, int] = {}

    def load(k: int) -> int:
        return k

    def memo(k: int) -> Any:
        with lock:
            v = d.get(k)
        if v is None:
            v = load(k)
            with lock:
                d[k] = v
        return v

    return memo


def _miss_cachetools() -> Callable[[int], Any]:
    import cachetools

    @cachetools.cached(cachetools.TTLCache(10**6, ttl=TTL), condition=threading.Condition())
    def load(k: int) -> int:
        return k

    return load


def _miss_dogpile() -> Callable[[int], Any]:
    region = _dogpile_region()

    def miss(k: int) -> Any:
        return region.get_or_create(k, lambda: k)

    return miss


def _miss_theine() -> Callable[[int], Any]:
    import theine

    @theine.Memoize(10**6, timedelta(seconds=TTL))
    def load(k: int) -> int:
        return k

    @load.key
    def _key(k: int) -> int:
        return k

    return load


def _miss_cachebox() -> Callable[[int], Any]:
    import cachebox

    @cachebox.cached(cachebox.TTLCache(10**6, global_ttl=TTL))
    def load(k: int) -> int:
        return k

    return load


def _miss_diskcache() -> Callable[[int], Any]:
    import diskcache
    from diskcache.recipes import memoize_stampede

    c = diskcache.Cache(_tmpdir())

    @memoize_stampede(c, expire=TTL)
    def load(k: int) -> int:
        return k

    return load


def _miss_cachet_goi() -> Callable[[int], Any]:
    import cachet

    c: Any = cachet.Cache.builder().memory(10**6).ttl(TTL).stampede_protection().build()
    gi = c.get_or_insert

    def miss(k: int) -> Any:
        return gi(k, lambda: k).value

    return miss


def _miss_cachet_decorator() -> Callable[[int], Any]:
    import cachet

    c: Any = cachet.Cache.builder().memory(10**6).ttl(TTL).stampede_protection().build()

    @c.cached()
    def load(k: int) -> int:
        return k

    return load


SYNC_MISS: list[tuple[str, str, str, MissSetup]] = [
    ("locked dict get + load + set (floor)", "floor", "read under a Lock, call the loader, write under the Lock (no protection)", _miss_floor),
    ("cachetools @cached(condition=...)", "python", "`@cached(TTLCache(1e6, ttl=600), condition=threading.Condition())`", _miss_cachetools),
    ("dogpile region.get_or_create", "python", "memory region, `get_or_create(k, creator)` (dogpile lock per key)", _miss_dogpile),
    ("theine @Memoize", "hybrid", "`@Memoize(1e6, timedelta(seconds=600))`, custom key (per-key event)", _miss_theine),
    ("cachebox @cached", "native", "`@cached(TTLCache(1e6, global_ttl=600))`, default `lock=True`", _miss_cachebox),
    ("diskcache memoize_stampede", "disk", "`recipes.memoize_stampede(Cache(tmpdir), expire=600)` (early recomputation, not coalescing)", _miss_diskcache),
    ("cachet get_or_insert", "cachet", "`memory(1e6).ttl(600).stampede_protection()`, `get_or_insert(k, lambda: k)`", _miss_cachet_goi),
    ("cachet @cache.cached()", "cachet", "same cache, `@cache.cached()`", _miss_cachet_decorator),
]


def measure_misses(cases: list[tuple[str, str, str, MissSetup]], rounds: int, n: int) -> dict[str, float]:
    """Median ns per miss-then-load; every round uses fresh caches and never-seen keys."""
    counter = itertools.count()
    samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for r in range(rounds + 1):
        for name, _, _, setup in cases:
            fn = setup()
            keys = [next(counter) for _ in range(n)]
            t0 = time.perf_counter_ns()
            for k in keys:
                fn(k)
            dt = (time.perf_counter_ns() - t0) / n
            if r:  # round 0 warms up
                samples[name].append(dt)
    return {name: statistics.median(s) for name, s in samples.items()}


# -- stampede: 32 threads, one cold key, 50 ms loader --------------------------------------------

LOAD_S = 0.05
StampedeSetup = Callable[[Callable[[], int]], Callable[[], Any]]  # loader -> "get the cold key"


def _st_floor(load: Callable[[], int]) -> Callable[[], Any]:
    lock = threading.Lock()
    state: dict[str, Any] = {}

    def get() -> Any:
        with lock:
            ev = state.get("ev")
            leader = ev is None
            if leader:
                ev = state["ev"] = threading.Event()
        if leader:
            state["v"] = load()
            ev.set()
        else:
            ev.wait()
        return state["v"]

    return get


def _st_cachetools(load: Callable[[], int]) -> Callable[[], Any]:
    import cachetools

    @cachetools.cached(cachetools.TTLCache(10, ttl=TTL), condition=threading.Condition())
    def f(k: str) -> int:
        return load()

    return partial(f, "cold")


def _st_dogpile(load: Callable[[], int]) -> Callable[[], Any]:
    region = _dogpile_region()
    return partial(region.get_or_create, "cold", load)


def _st_theine(load: Callable[[], int]) -> Callable[[], Any]:
    import theine

    @theine.Memoize(10, timedelta(seconds=TTL))
    def f(k: str) -> int:
        return load()

    @f.key
    def _key(k: str) -> str:
        return k

    return partial(f, "cold")


def _st_cachebox(load: Callable[[], int]) -> Callable[[], Any]:
    import cachebox

    @cachebox.cached(cachebox.TTLCache(10, global_ttl=TTL))
    def f(k: str) -> int:
        return load()

    return partial(f, "cold")


def _st_diskcache(load: Callable[[], int]) -> Callable[[], Any]:
    import diskcache
    from diskcache.recipes import memoize_stampede

    @memoize_stampede(diskcache.Cache(_tmpdir()), expire=TTL)
    def f(k: str) -> int:
        return load()

    return partial(f, "cold")


def _st_cachet(load: Callable[[], int]) -> Callable[[], Any]:
    import cachet

    c: Any = cachet.Cache.builder().memory(10).stampede_protection().build()
    gi = c.get_or_insert
    return lambda: gi("cold", load).value


SYNC_STAMPEDE: list[tuple[str, str, str, StampedeSetup]] = [
    ("bare threading.Event single-flight (floor)", "floor", "one leader loads, the others wait on an Event", _st_floor),
    ("cachetools @cached(condition=...)", "python", "`condition=threading.Condition()`", _st_cachetools),
    ("dogpile region.get_or_create", "python", "memory region, dogpile lock", _st_dogpile),
    ("theine @Memoize", "hybrid", "per-key `threading.Event`", _st_theine),
    ("cachebox @cached", "native", "default `lock=True`", _st_cachebox),
    ("diskcache memoize_stampede", "disk", "early recomputation (does not coalesce a cold key)", _st_diskcache),
    ("cachet get_or_insert", "cachet", "`.stampede_protection()`", _st_cachet),
]


def stampede_threads(threads: int, runs: int) -> list[dict[str, Any]]:
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name, *_ in SYNC_STAMPEDE}
    for _ in range(runs):
        for name, _, _, setup in SYNC_STAMPEDE:
            calls = 0
            clock = threading.Lock()

            def load() -> int:
                nonlocal calls
                with clock:  # noqa: B023 (called within this iteration)
                    calls += 1
                time.sleep(LOAD_S)
                return 1

            get = setup(load)
            barrier = threading.Barrier(threads + 1)
            errors: list[BaseException] = []

            def one(get: Callable[[], Any] = get, barrier: threading.Barrier = barrier,
                    errors: list[BaseException] = errors) -> None:
                barrier.wait()
                try:
                    if get() != 1:
                        errors.append(AssertionError("wrong value"))
                except BaseException as e:
                    errors.append(e)

            ts = [threading.Thread(target=one) for _ in range(threads)]
            for t in ts:
                t.start()
            c0, w0 = time.process_time(), time.perf_counter()
            barrier.wait()
            for t in ts:
                t.join()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if errors:
                raise RuntimeError(f"{name}: {errors[0]!r}")
            results[name].append((calls, wall, cpu))
    return [{"case": name, "kind": kind, "settings": settings,
             "calls": max(r[0] for r in results[name]),
             "calls_all": [r[0] for r in results[name]],
             "wall_ms": statistics.median(r[1] for r in results[name]) * 1e3,
             "cpu_ms": statistics.median(r[2] for r in results[name]) * 1e3}
            for name, kind, settings, _ in SYNC_STAMPEDE]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def ncpu() -> int:
    return os.cpu_count() or 0
