"""The tier conformance suite (``cachet.testing.conformance``) against every built-in tier,
sync and async, and against tiers that break the contract (so the suite can fail)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachet import CacheEntry, InsertOutcome
from cachet.serialize import encode_key
from cachet.service import (
    ClearRequest,
    GetRequest,
    InsertRequest,
    InvalidateRequest,
    ServiceAdapter,
    as_service,
)
from cachet.testing import MockTier
from cachet.testing import strategies as cst
from cachet.testing.conformance import CHECKS, ConformanceError, TierContract, check_tier
from cachet.tiers import MemoryTier, SQLiteTier

from .redis_server import RedisServer, running_server

# -- typed tiers -----------------------------------------------------------------------


class TestMemoryTier(TierContract):
    def make_tier(self) -> Any:
        return MemoryTier()


class TestBoundedMemoryTier(TierContract):
    def make_tier(self) -> Any:
        return MemoryTier(10_000, policy="lfu")


class TestCopyingMemoryTier(TierContract):
    def make_tier(self) -> Any:
        from cachet.tiers import CopyingMemoryTier

        return CopyingMemoryTier(10_000)


class TestMockTier(TierContract):
    backend = "trio"

    def make_tier(self) -> Any:
        return MockTier()


class TestServiceAdapterSync(TierContract):
    def make_tier(self) -> Any:
        return ServiceAdapter(as_service(MemoryTier()))


def async_service_over(tier: Any) -> Any:
    """An async service answering from ``tier``, with a checkpoint per request (as I/O would)."""
    serve = as_service(tier)

    async def service(request: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return serve(request)

    return service


class TestServiceAdapterAsyncOnAsyncio(TierContract):
    def make_tier(self) -> Any:
        tier = ServiceAdapter(async_service_over(MockTier()))
        assert tier.is_async
        return tier


class TestServiceAdapterAsyncOnTrio(TestServiceAdapterAsyncOnAsyncio):
    backend = "trio"


# -- byte tiers ------------------------------------------------------------------------


class TestSQLiteTierInMemory(TierContract):
    def make_tier(self) -> Any:
        return SQLiteTier()


class TestSQLiteTierFile(TierContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "cache.db"

    def make_tier(self) -> Any:
        # One file, a fresh namespace per tier: clear() must keep to its own namespace.
        return SQLiteTier(self.path, namespace=f"ns-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_server() as s:
        yield s


class RedisContract(TierContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        pytest.importorskip("redis")
        self.url = redis_server.url

    def namespace(self) -> str:
        return f"conf-{uuid.uuid4().hex[:12]}"


@pytest.mark.redis
class TestSyncRedisTier(RedisContract):
    def make_tier(self) -> Any:
        import redis

        from cachet.tiers import RedisTier

        return RedisTier(redis.Redis.from_url(self.url), namespace=self.namespace())

    def close_tier(self, tier: Any) -> None:
        tier.client.close()  # the caller's client: the tier leaves it open


@pytest.mark.redis
class TestAsyncRedisTierOnAsyncio(RedisContract):
    async def make_tier(self) -> Any:
        from cachet.tiers import RedisTier

        return RedisTier.from_url(self.url, asynchronous=True, namespace=self.namespace())


@pytest.mark.redis
class TestAsyncRedisTierOnTrio(TestAsyncRedisTierOnAsyncio):
    backend = "trio"


@pytest.mark.redis
class TestRedisTierThroughAService(RedisContract):
    """A byte tier behind the service adapter: ``bytes_only`` is the adapter's to declare."""

    def make_tier(self) -> Any:
        from cachet.tiers import RedisTier

        tier = ServiceAdapter(as_service(RedisTier.from_url(self.url, namespace=self.namespace())))
        tier.bytes_only = True  # type: ignore[attr-defined]
        return tier


# -- the suite itself --------------------------------------------------------------------


def test_check_tier_runs_every_applicable_check() -> None:
    ran = check_tier(MemoryTier)
    assert "any_bytes" not in ran  # a typed tier
    assert set(ran) == set(CHECKS) - {"any_bytes", "get_many_matches_get"}  # (no get_many)
    ran = check_tier(SQLiteTier, backend="trio")
    assert {"any_bytes", "len_counts_entries"} <= set(ran)
    assert "any_reasonable_key_type" not in ran
    with pytest.raises(ValueError, match="no such checks"):
        check_tier(MemoryTier, skip=["round_trip"])


class Restamping(MockTier):
    """Breaks the contract: stamps entries with its own time on insert."""

    def insert(self, key: Any, entry: CacheEntry[Any]) -> InsertOutcome:
        return super().insert(key, CacheEntry(entry.value, cached_at=123.0, ttl=entry.ttl))


class Forgetful(MockTier):
    """Breaks the contract: invalidate does nothing, and clear keeps one entry."""

    def invalidate(self, key: Any) -> None:
        pass

    def clear(self) -> None:
        keep = dict(list(self.data.items())[:1])
        super().clear()
        self.data.update(keep)


class MissesAsNothing(MockTier):
    """Breaks the contract: a stored ``None`` value reads as a miss, and 1.0 is not 1."""

    def get(self, key: Any) -> CacheEntry[Any] | None:
        entry = self.data.get((type(key), key))
        return None if entry is None or entry.value is None else entry

    def insert(self, key: Any, entry: CacheEntry[Any]) -> InsertOutcome:
        self.data[(type(key), key)] = entry
        return InsertOutcome.ACCEPTED

    def invalidate(self, key: Any) -> None:
        self.data.pop((type(key), key), None)


class ReturnsTuples(MockTier):
    def get(self, key: Any) -> Any:
        entry = super().get(key)
        return None if entry is None else (entry.value, entry.cached_at, entry.ttl)


class WrongLen(MockTier):
    def len(self) -> int:
        return len(self.data) + 1


class AsyncLosesWrites:
    """An async tier whose read-modify-write loses concurrent inserts."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    async def get(self, key: Any) -> Any:
        return self.data.get(key)

    async def insert(self, key: Any, entry: Any) -> InsertOutcome:
        snapshot = dict(self.data)
        await anyio.lowlevel.checkpoint()
        snapshot[key] = entry
        self.data = snapshot
        return InsertOutcome.ACCEPTED

    async def invalidate(self, key: Any) -> None:
        self.data.pop(key, None)

    async def clear(self) -> None:
        self.data.clear()


class UpdateNotAtomic(MockTier):
    """Breaks the contract: update reads, lets other threads run, then writes."""

    def update(self, key: Any, change: Any) -> Any:
        new, result = change(self.data.get(key))
        time.sleep(0.0005)  # another thread's read-modify-write slips in here
        if isinstance(new, CacheEntry):
            self.data[key] = new
        return result


class UpdateForgetsItsResult(MockTier):
    """Breaks the contract: update returns nothing, and swallows the change's errors."""

    def update(self, key: Any, change: Any) -> Any:
        try:
            super().update(key, change)
        except Exception:
            pass


class AsyncUpdateLosesWrites(AsyncLosesWrites):
    """An async tier whose update awaits between its read and its write."""

    async def update(self, key: Any, change: Any) -> Any:
        new, result = change(self.data.get(key))
        await anyio.lowlevel.checkpoint()
        if isinstance(new, CacheEntry):
            self.data[key] = new
        return result


class GetManyOutOfOrder(MockTier):
    """Breaks the contract: get_many answers each distinct key once, in sorted order."""

    def get_many(self, keys: list[Any]) -> list[Any]:
        return [self.get(k) for k in sorted(set(keys))]


@pytest.mark.parametrize(("tier", "failing"), [
    (GetManyOutOfOrder, {"get_many_matches_get"}),
    (UpdateNotAtomic, {"concurrent_updates_lose_nothing"}),
    (UpdateForgetsItsResult, {"update_applies_the_change"}),
    (AsyncUpdateLosesWrites, {"concurrent_updates_lose_nothing"}),
    (Restamping, {"round_trip_keeps_the_entry", "insert_replaces", "random_operations_match_a_dict"}),
    (Forgetful, {"invalidate_removes_one_key", "clear_removes_everything", "equal_keys_are_one_key"}),
    (MissesAsNothing, {"equal_keys_are_one_key", "any_value"}),
    (ReturnsTuples, {"round_trip_keeps_the_entry", "keys_are_independent"}),
    (WrongLen, {"len_counts_entries"}),
    (AsyncLosesWrites, {"concurrent_callers"}),
])
def test_the_suite_catches_broken_tiers(tier: Any, failing: set[str]) -> None:
    with pytest.raises(ConformanceError) as info:
        check_tier(tier)
    message = str(info.value)
    failed = {line[2:].split(":")[0] for line in message.splitlines()[1:] if line.startswith("- ")}
    assert failing <= failed, message  # each break is caught by the check about it


def test_byte_tier_rejecting_binary_keys_fails() -> None:
    class Utf8Only(MockTier):
        bytes_only = True

        def insert(self, key: Any, entry: CacheEntry[Any]) -> InsertOutcome:
            key.decode("utf-8")
            return super().insert(key, entry)

    with pytest.raises(ConformanceError, match="any_bytes"):
        check_tier(Utf8Only)


# -- the strategies ------------------------------------------------------------------------

@settings(max_examples=200, database=None)
@given(cst.keys())
def test_keys_are_hashable_and_encodable(key: Any) -> None:
    hash(key)
    assert encode_key(key) == encode_key(key)


@settings(max_examples=200, database=None)
@given(cst.entries())
def test_entries_are_valid_cache_entries(entry: CacheEntry[Any]) -> None:
    assert isinstance(entry, CacheEntry)
    assert entry.ttl is None or entry.ttl > 0


@settings(max_examples=200, database=None)
@given(st.data())
def test_fresh_entries_are_fresh(data: st.DataObject) -> None:
    now = 1_000_000.0
    entry = data.draw(cst.fresh_entries(now))
    if entry.ttl is not None:
        assert entry.cached_at is not None and now - entry.cached_at <= entry.ttl


@settings(max_examples=100, database=None)
@given(cst.operation_sequences(key_pool=2, min_size=10))
def test_operation_sequences_meet_on_a_few_keys(ops: list[Any]) -> None:
    assert all(isinstance(op, GetRequest | InsertRequest | InvalidateRequest | ClearRequest) for op in ops)
    keys = {op.key for op in ops if not isinstance(op, ClearRequest)}
    assert len(keys) <= 2
