"""The memory tier: eviction policies, weight bounds, age driven by the injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from cachet import Cache, CacheEntry, InsertOutcome, SerializationError
from cachet.testing import ManualClock
from cachet.tiers import MemoryTier


def fill(tier: MemoryTier, keys, now=0.0) -> None:
    for k in keys:
        assert tier.insert(k, CacheEntry(k, now)) is InsertOutcome.ACCEPTED


def test_lru_evicts_least_recently_used() -> None:
    tier = MemoryTier(3, policy="lru")
    fill(tier, "abc")
    tier.get("a")
    fill(tier, "d")
    assert tier.get("b") is None and tier.get("a") is not None and tier.len() == 3


def test_fifo_evicts_first_inserted_even_if_read() -> None:
    tier = MemoryTier(3, policy="fifo")
    fill(tier, "abc")
    tier.get("a")
    fill(tier, "d")
    assert tier.get("a") is None and tier.get("b") is not None


def test_lfu_evicts_least_frequently_used() -> None:
    tier = MemoryTier(3, policy="lfu")
    fill(tier, "abc")
    for _ in range(3):
        tier.get("a")
        tier.get("c")
    fill(tier, "d")
    assert tier.get("b") is None and tier.get("a") is not None


def test_rr_stays_within_bound() -> None:
    tier = MemoryTier(5, policy="rr")
    fill(tier, range(50))
    assert tier.len() == 5


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "rr"])
def test_weight_bound(policy) -> None:
    tier = MemoryTier(policy=policy, max_size=10, getsizeof=lambda e: len(e.value))
    for i in range(10):
        tier.insert(i, CacheEntry("xxx"))  # weight 3 each
    assert tier.len() == 3
    assert tier.insert("big", CacheEntry("x" * 11)) is InsertOutcome.REJECTED


def test_age_sweep_uses_the_injected_clock_and_keeps_fresh_entries() -> None:
    clock = ManualClock(100.0)
    tier = MemoryTier(10, clock=clock, ttl=10.0)
    tier.insert("tier-ttl", CacheEntry("v", 100.0))
    tier.insert("own-ttl", CacheEntry("v", 100.0, 30.0))
    clock.set(110.0)  # equal to the ttl: still fresh (strict >)
    assert tier.expire() == 0
    clock.set(110.001)
    assert tier.expire() == 1
    assert tier.get("tier-ttl") is None and tier.get("own-ttl") is not None


def test_evictions_and_expiry_show_in_stats() -> None:
    clock = ManualClock(0.0)
    cache = Cache.builder(clock).name("m").memory(2).ttl(5).build()
    for k in "abc":
        cache.insert(k, k)
    stats = cache.stats()["tiers"]["m"]
    assert stats["evictions"] == 1
    clock.advance(6)
    cache.insert("d", "d")  # the insert sweeps what age removed: events, not lookups
    assert cache.stats()["tiers"]["m"]["expired"] == 0
    assert cache.get("b") is None and cache.stats()["tiers"]["m"]["misses"] == 1


def test_unbounded_memory_tier_keeps_everything() -> None:
    tier = MemoryTier()
    fill(tier, range(1000))
    assert tier.len() == 1000
    tier.invalidate(5)
    tier.clear()
    assert tier.len() == 0


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_reinserting_a_key_keeps_the_bound_and_refreshes_its_place(policy) -> None:
    tier = MemoryTier(3, policy=policy)
    fill(tier, "abc")
    fill(tier, "a")  # a is now the newest: the next insert evicts b
    fill(tier, "d")
    assert tier.get("b") is None and tier.get("a") is not None and tier.len() == 3


def test_a_subclass_that_overrides_get_and_insert_is_called_as_written() -> None:
    seen = []

    class Counting(MemoryTier):
        def get(self, key):
            seen.append(("get", key))
            return super().get(key)

        def insert(self, key, entry):
            seen.append(("insert", key))
            return super().insert(key, entry)

    tier = Counting(10)
    assert tier.inline is None  # no reads of its mapping behind its back
    cache = Cache.builder().storage(tier).build()
    assert cache.get_or_insert("k", lambda: 1).value == 1
    assert cache.get("k").value == 1
    assert seen == [("get", "k"), ("insert", "k"), ("get", "k")]


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "rr"])
def test_evictions_are_counted_with_telemetry_off_under_every_policy(policy: str) -> None:
    cache = Cache.builder().memory(2, policy=policy).build()
    for k in "abcd":
        cache.insert(k, k)
    assert cache.stats()["tiers"]["memory"]["evictions"] == 2


def test_lru_reads_through_the_hit_path_order_evictions() -> None:
    """A cache hit records its read in the tier's read buffer, without the lock; the next
    insert replays the buffer first, so the entry read is not the one evicted."""
    cache = Cache.builder().memory(3).build()
    for k in "abc":
        cache.insert(k, k)
    assert cache.get("a") is not None  # the hit path (stats show a hit, no lock taken)
    assert cache.stats()["tiers"]["memory"]["hits"] == 1
    cache.insert("d", "d")
    assert cache.get("b") is None and cache.get("a") is not None


def test_a_buffered_read_of_a_key_removed_since_is_harmless() -> None:
    tier = MemoryTier(2, policy="lru")
    fill(tier, "ab")
    tier.get("a")
    tier.invalidate("a")  # gone before the buffer is replayed
    fill(tier, "cd")
    assert tier.len() == 2 and tier.get("c") is not None and tier.get("d") is not None


def test_the_read_buffer_is_bounded_and_keeps_the_newest_reads() -> None:
    from cachet.tiers._memory import READ_BUFFER

    tier = MemoryTier(3, policy="lru")
    fill(tier, "abc")
    tier.get("a")
    for _ in range(READ_BUFFER):  # a long run of reads with no write: "a"'s read is dropped
        tier.get("c")
    assert len(tier._reads or ()) == READ_BUFFER
    fill(tier, "d")
    assert tier.get("a") is None and tier.get("b") is not None  # "a" was oldest by what is kept


def test_hits_racing_removals_from_another_thread_never_fail() -> None:
    """The backplane's case: another thread removes keys (``Core.evict_local``) and
    inserts them while hits read them; every hit returns an entry or ``None``."""
    import threading

    cache = Cache.builder().memory(8).ttl(60).build()
    keys = [f"k{i}" for i in range(16)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn() -> None:
        try:
            for n in range(20_000):
                key = keys[n % len(keys)]
                cache._core.evict_local(key)
                cache.insert(key, n)
        except BaseException as exc:  # pragma: no cover (the failure this test looks for)
            errors.append(exc)
        finally:
            stop.set()

    t = threading.Thread(target=churn)
    t.start()
    reads = 0
    try:
        while not stop.is_set() or reads < 1000:
            for key in keys:
                entry = cache.get(key)
                assert entry is None or entry.value >= 0
                reads += 1
    finally:
        t.join(30)
    assert not errors and not t.is_alive()
    assert cache.len() <= 8


# -- cull and copy (the framework backends' memory tier) ------------------------------------


@pytest.mark.parametrize(("cull", "left"), [(1 / 3, 29), (0.5, 19), (1.0, 19)])
def test_cull_evicts_that_fraction_of_max_entries_at_once(cull, left) -> None:
    tier = MemoryTier(30, cull=cull)
    for i in range(1, 50):
        tier.insert(i, CacheEntry(i))
    assert len(tier) == left  # Django's LocMemCache culls to the same count
    assert tier.get(49) is not None  # the newest survives a cull of everything
    survivors = sorted(k for k in range(1, 50) if tier.get(k) is not None)
    assert survivors == list(range(50 - left, 50))  # the oldest went first


def test_cull_goes_through_update_too() -> None:
    tier = MemoryTier(3, cull=1.0)
    for i in range(3):
        tier.insert(i, CacheEntry(i))
    tier.update("new", lambda stored: (CacheEntry("v"), None))
    assert len(tier) == 1 and tier.get("new") is not None


@pytest.mark.parametrize(("kw", "message"), [
    ({"cull": 0}, "cull must be"), ({"cull": 1.5}, "cull must be"), ({"cull": True}, "cull must be"),
    ({"cull": 0.5, "max_entries": None}, "needs max_entries"),
    ({"cull": 0.5, "policy": "lfu"}, "lru or fifo"),
])
def test_bad_cull_is_refused(kw, message) -> None:
    args = {"max_entries": 10, **kw}
    with pytest.raises(ValueError, match=message):
        MemoryTier(args.pop("max_entries"), **args)
    with pytest.raises(ValueError, match=message):
        Cache.builder().memory(**{"max_entries": 10, **kw}).build()


def test_a_copying_tier_keeps_its_own_copy() -> None:
    cache = Cache.builder().memory(10, copy=True).build()
    value = {"items": [1]}
    cache.insert("k", value)
    value["items"].append(2)  # changed after insert
    got = cache.get("k").value
    assert got == {"items": [1]}
    got["items"].append(3)  # changed after get
    assert cache.get("k").value == {"items": [1]}
    assert cache.add("n", 1) and cache.incr("n") == 2  # the atomic step sees copies too


def test_a_value_that_cannot_be_copied_is_refused_and_not_stored() -> None:
    import pickle

    class Unpicklable:
        def __getstate__(self) -> Any:
            raise pickle.PickleError("not this one")

    cache = Cache.builder().memory(10, copy=True).build()
    with pytest.raises(SerializationError) as info:
        cache.insert("k", Unpicklable())
    assert isinstance(info.value.__cause__, pickle.PickleError)
    assert cache.get("k") is None
