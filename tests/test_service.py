"""SPEC §5: operations as values, adapters both ways, middleware (timeout, retry, circuit
breaker, stack), on the sync frontend and on aio over asyncio and trio.

For the aio frontends the services are coroutine functions; for sync, plain functions.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import threading
import time
import types
from typing import Any

import anyio
import pytest

from cachet import CacheEntry, CacheError, InsertOutcome, ManualClock, TierError
from cachet._core.breaker import BreakerCore
from cachet.service import (
    BreakerState,
    CircuitOpenError,
    ClearRequest,
    ClearResponse,
    GetRequest,
    GetResponse,
    InsertRequest,
    InsertResponse,
    InvalidateRequest,
    InvalidateResponse,
    ServiceAdapter,
    ServiceTimeoutError,
    UnexpectedResponseError,
    as_service,
    circuit_breaker,
    is_async_service,
    retry,
    stack,
    timeout,
)
from cachet.testing import MockTier, MockTierError

from .frontends import Frontend

pytestmark = pytest.mark.anyio

GUARD = 10.0  # seconds: a broken timeout fails the test after this instead of hanging it


# -- helpers ---------------------------------------------------------------------------


def service_of(frontend: Frontend, tier: Any) -> Any:
    """``tier`` as a service of the frontend's flavour (async for aio)."""
    inner = as_service(tier)
    if frontend.is_sync:
        return inner

    async def svc(request: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return inner(request)

    return svc


def constant_service(frontend: Frontend, response: Any) -> Any:
    """A service that answers everything with ``response``."""
    if frontend.is_sync:
        return lambda request: response

    async def svc(request: Any) -> Any:
        return response

    return svc


async def call(service: Any, request: Any) -> Any:
    result = service(request)
    return await result if inspect.isawaitable(result) else result


async def call_tier(tier: Any, method: str, *args: Any) -> Any:
    result = getattr(tier, method)(*args)
    return await result if inspect.isawaitable(result) else result


def raw(cache_view: Any) -> Any:
    """The cache object itself (the sync facade hides it), to call it as a service."""
    return getattr(cache_view, "sync", cache_view)


def failing_first(tier: MockTier, n: int) -> None:
    """The first ``n`` operations on ``tier`` raise ``MockTierError``."""
    tier.fail_when(lambda request: len(tier.operations) <= n)


# -- adapters --------------------------------------------------------------------------


async def test_service_adapter_round_trips_every_operation(frontend: Frontend) -> None:
    mock = MockTier()
    adapter = ServiceAdapter(service_of(frontend, mock))
    assert adapter.is_async is (not frontend.is_sync)
    entry = CacheEntry.expires_at("v", 10, 1000.0)

    assert await call_tier(adapter, "get", "k") is None
    assert await call_tier(adapter, "insert", "k", entry) is InsertOutcome.ACCEPTED
    assert await call_tier(adapter, "get", "k") == entry
    assert await call_tier(adapter, "invalidate", "k") is None
    assert not mock.contains_key("k")
    await call_tier(adapter, "insert", "j", entry)
    assert await call_tier(adapter, "clear") is None
    assert mock.entry_count == 0
    assert mock.operations == [
        GetRequest("k"), InsertRequest("k", entry), GetRequest("k"), InvalidateRequest("k"),
        InsertRequest("j", entry), ClearRequest(),
    ]


async def test_builder_service_is_a_tier(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier()
    cache = frontend.builder(clock).service(service_of(frontend, mock)).build()
    async with frontend.open(cache) as c:
        assert await c.insert("k", 1) is InsertOutcome.ACCEPTED
        assert mock.data["k"] == CacheEntry(1, cached_at=clock.now())
        assert (await c.get("k")).value == 1
        await c.invalidate("k")
        assert await c.get("k") is None
        await c.insert("j", 2)
        await c.clear()
        assert mock.entry_count == 0
    assert [type(r) for r in mock.operations] == [
        InsertRequest, GetRequest, InvalidateRequest, GetRequest, InsertRequest, ClearRequest,
    ]


async def test_cache_is_a_service(frontend: Frontend, clock: ManualClock) -> None:
    cache = frontend.builder(clock).memory(10).build()
    assert is_async_service(cache) is (not frontend.is_sync)
    async with frontend.open(cache) as c:
        svc = raw(c)
        miss = await call(svc, GetRequest("k"))
        assert miss == GetResponse(None) and miss.is_miss and not miss.is_hit
        assert await call(svc, InsertRequest("k", CacheEntry(1))) == InsertResponse(InsertOutcome.ACCEPTED)
        hit = await call(svc, GetRequest("k"))
        assert hit.is_hit and hit.entry == CacheEntry(1, cached_at=clock.now())
        assert await call(svc, InvalidateRequest("k")) == InvalidateResponse()
        assert await c.get("k") is None
        await c.insert("j", 2)
        assert await call(svc, ClearRequest()) == ClearResponse()
        assert await c.get("j") is None
        with pytest.raises(CacheError, match="not a cache request"):
            await call(svc, "get k")


async def test_cache_behind_a_cache(frontend: Frontend, clock: ManualClock) -> None:
    """Both directions at once: a cache, called as a service, is the L2 of another."""
    inner = frontend.builder(clock).memory(10).build()
    async with frontend.open(inner) as l2:
        outer = frontend.builder(clock).memory(10).fallback(
            frontend.builder(clock).service(raw(l2))).build()
        async with frontend.open(outer) as l1:
            await l1.insert("k", 1)
            assert (await l2.get("k")).value == 1
            await l2.insert("only-below", 2)
            assert (await l1.get("only-below")).value == 2  # promoted from the inner cache
            await l1.invalidate("k")
            assert await l2.get("k") is None
            await l1.clear()
            assert await l2.get("only-below") is None


async def test_as_service_of_a_tier_or_cache(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier.with_data({"k": 1})
    svc = as_service(mock)
    assert not is_async_service(svc)
    assert svc(GetRequest("k")).entry == CacheEntry(1)
    assert svc(InsertRequest("j", CacheEntry(2))).outcome is InsertOutcome.ACCEPTED
    assert svc(InvalidateRequest("k")) == InvalidateResponse()
    assert svc(ClearRequest()) == ClearResponse() and mock.entry_count == 0

    cache = frontend.builder(clock).memory(10).build()
    assert as_service(cache) is cache
    with pytest.raises(TypeError, match="lacks get"):
        as_service(object())


async def test_as_service_of_an_async_tier(anyio_backend: str) -> None:
    mock = MockTier()

    class AsyncTier:
        async def get(self, key: Any) -> Any:
            return mock.get(key)

        async def insert(self, key: Any, entry: Any) -> Any:
            return mock.insert(key, entry)

        async def invalidate(self, key: Any) -> None:
            mock.invalidate(key)

        async def clear(self) -> None:
            mock.clear()

    svc = as_service(AsyncTier())
    assert is_async_service(svc)
    assert (await svc(InsertRequest("k", CacheEntry(1)))).outcome is InsertOutcome.ACCEPTED
    assert (await svc(GetRequest("k"))).entry == CacheEntry(1)
    await svc(InvalidateRequest("k"))
    await svc(ClearRequest())
    assert [type(r) for r in mock.operations] == [InsertRequest, GetRequest, InvalidateRequest,
                                                   ClearRequest]


@pytest.mark.parametrize("request_, wrong", [
    (GetRequest("k"), InsertResponse(InsertOutcome.ACCEPTED)),
    (InsertRequest("k", CacheEntry(1)), GetResponse(CacheEntry(1))),
    (InvalidateRequest("k"), ClearResponse()),
    (ClearRequest(), None),
])
async def test_wrong_response_raises(frontend: Frontend, request_: Any, wrong: Any) -> None:
    adapter = ServiceAdapter(constant_service(frontend, wrong))
    method = {GetRequest: "get", InsertRequest: "insert", InvalidateRequest: "invalidate",
              ClearRequest: "clear"}[type(request_)]
    args = [getattr(request_, f) for f in ("key", "entry") if hasattr(request_, f)]
    with pytest.raises(UnexpectedResponseError) as info:
        await call_tier(adapter, method, *args)
    assert isinstance(info.value, CacheError)
    assert info.value.request == request_ and info.value.response == wrong


async def test_wrong_response_through_a_cache_is_a_tier_error(frontend: Frontend, clock: ManualClock) -> None:
    cache = frontend.builder(clock).service(constant_service(frontend, ClearResponse())).name("svc").build()
    async with frontend.open(cache) as c:
        with pytest.raises(TierError) as info:
            await c.insert("k", 1)
    assert info.value.tier == "svc"
    assert isinstance(info.value.__cause__, UnexpectedResponseError)


async def test_adapter_async_override(anyio_backend: str) -> None:
    """A plain function returning a coroutine cannot be detected; ``is_async=True`` says so."""
    inner = as_service(MockTier.with_data({"k": 1}))

    async def answer(request: Any) -> Any:
        return inner(request)

    def lazy(request: Any) -> Any:
        return answer(request)

    assert not is_async_service(lazy)
    adapter = ServiceAdapter(lazy, is_async=True)
    assert (await adapter.get("k")).value == 1
    with pytest.raises(TypeError, match="callable"):
        ServiceAdapter(42)


async def test_is_async_service_sees_async_call_objects(anyio_backend: str) -> None:
    class Obj:
        async def __call__(self, request: Any) -> Any:
            return GetResponse(None)

    assert is_async_service(Obj())
    assert (await ServiceAdapter(Obj()).get("k")) is None
    assert not is_async_service(lambda request: None)


# -- stack -----------------------------------------------------------------------------


def tagging(tag: str, log: list[str]) -> Any:
    def layer(service: Any) -> Any:
        if is_async_service(service):
            async def tagged_async(request: Any) -> Any:
                log.append(tag)
                return await service(request)
            return tagged_async

        def tagged(request: Any) -> Any:
            log.append(tag)
            return service(request)
        return tagged

    return layer


async def test_stack_wraps_innermost_first(frontend: Frontend) -> None:
    log: list[str] = []
    mock = MockTier()
    svc = stack(service_of(frontend, mock), tagging("inner", log), tagging("middle", log),
                tagging("outer", log))
    assert is_async_service(svc) is (not frontend.is_sync)
    assert (await call(svc, GetRequest("k"))).is_miss
    assert log == ["outer", "middle", "inner"]
    assert stack(svc) is svc
    with pytest.raises(TypeError, match="layer must be callable"):
        stack(svc, None)  # type: ignore[arg-type]


# -- timeout ---------------------------------------------------------------------------


async def test_timeout_passes_answers_and_errors_through(frontend: Frontend) -> None:
    mock = MockTier.with_data({"k": 1})
    svc = timeout(GUARD)(service_of(frontend, mock))
    assert is_async_service(svc) is (not frontend.is_sync)
    assert (await call(svc, GetRequest("k"))).entry == CacheEntry(1)
    mock.fail_when(lambda request: True)
    with pytest.raises(MockTierError):
        await call(svc, GetRequest("k"))


async def test_timeout_does_not_claim_the_services_own_timeout_error(frontend: Frontend) -> None:
    own = TimeoutError("the service's own")
    if frontend.is_sync:
        def svc(request: Any) -> Any:
            raise own
    else:
        async def svc(request: Any) -> Any:
            raise own
    with pytest.raises(TimeoutError) as info:
        await call(timeout(GUARD)(svc), GetRequest("k"))
    assert info.value is own


def _join_timeout_threads(before: set[threading.Thread]) -> None:
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("cachet-timeout-"):
            thread.join(GUARD)
            assert not thread.is_alive(), "a timed-out call's thread did not finish"


async def test_timeout_cuts_a_slow_async_service(anyio_backend: str) -> None:
    never = anyio.Event()
    reached = anyio.Event()
    cancelled = []

    async def stuck(request: Any) -> Any:
        reached.set()
        try:
            await never.wait()
        except BaseException:
            cancelled.append(request)
            raise
        raise AssertionError("unreachable")

    bound = 0.05
    with anyio.fail_after(GUARD):
        start = time.monotonic()
        with pytest.raises(ServiceTimeoutError) as info:
            await timeout(bound)(stuck)(GetRequest("k"))
        elapsed = time.monotonic() - start
    assert reached.is_set() and cancelled == [GetRequest("k")]  # the call was cancelled
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, CacheError)
    assert info.value.seconds == bound and info.value.request == GetRequest("k")
    assert elapsed >= bound * 0.9


@pytest.mark.parametrize("use_executor", [False, True])
def test_timeout_cuts_a_slow_sync_service(use_executor: bool) -> None:
    release = threading.Event()
    started = threading.Event()
    finished = threading.Event()
    guard = threading.Timer(GUARD, release.set)  # a broken timeout fails, never hangs
    guard.start()
    before = set(threading.enumerate())
    executor = concurrent.futures.ThreadPoolExecutor(1) if use_executor else None

    def stuck(request: Any) -> Any:
        started.set()
        release.wait()
        finished.set()
        return GetResponse(None)

    bound = 0.05
    try:
        start = time.monotonic()
        with pytest.raises(ServiceTimeoutError) as info:
            timeout(bound, executor=executor)(stuck)(GetRequest("k"))
        elapsed = time.monotonic() - start
        assert started.is_set() and not release.is_set() and not finished.is_set()
        assert elapsed >= bound * 0.9
        assert isinstance(info.value, TimeoutError)
    finally:
        release.set()
        guard.cancel()
        guard.join()
        if executor is not None:
            executor.shutdown(wait=True)
        _join_timeout_threads(before)
    assert finished.is_set()  # the abandoned call ran to its end in its thread


async def test_timeout_on_the_l2_of_a_cache(frontend: Frontend, clock: ManualClock) -> None:
    """Through a cache, a timed-out tier read is a TierError caused by the timeout."""
    before = set(threading.enumerate())
    release = threading.Event()
    never = anyio.Event()
    if frontend.is_sync:
        def stuck(request: Any) -> Any:
            release.wait(GUARD)
            return GetResponse(None)
    else:
        async def stuck(request: Any) -> Any:
            await never.wait()
            raise AssertionError("unreachable")

    cache = (frontend.builder(clock).memory(10)
             .fallback(frontend.builder(clock).name("slow").service(timeout(0.05)(stuck)))
             .build())
    try:
        async with frontend.open(cache) as c:
            with anyio.fail_after(GUARD), pytest.raises(TierError) as info:
                await c.get("k")
        assert info.value.tier == "slow"
        assert isinstance(info.value.__cause__, ServiceTimeoutError)
    finally:
        release.set()
        _join_timeout_threads(before)


def test_timeout_rejects_bad_durations() -> None:
    with pytest.raises(ValueError, match="timeout"):
        timeout(0)
    with pytest.raises(ValueError, match="timeout"):
        timeout(-1)


# -- retry -----------------------------------------------------------------------------


async def test_retry_succeeds_after_transient_failures(frontend: Frontend) -> None:
    mock = MockTier.with_data({"k": 1})
    failing_first(mock, 2)
    pauses: list[float] = []
    seen: list[tuple[int, str, float]] = []
    svc = retry(attempts=3, backoff=0.1, multiplier=3, sleep=pauses.append,
                on_retry=lambda n, exc, d: seen.append((n, type(exc).__name__, d)))(
        service_of(frontend, mock))
    assert is_async_service(svc) is (not frontend.is_sync)
    assert (await call(svc, GetRequest("k"))).entry == CacheEntry(1)
    assert mock.operations == [GetRequest("k")] * 3
    assert pauses == pytest.approx([0.1, 0.3])
    assert seen == [(1, "MockTierError", pytest.approx(0.1)), (2, "MockTierError", pytest.approx(0.3))]


async def test_retry_gives_up_after_its_limit(frontend: Frontend) -> None:
    mock = MockTier()
    mock.fail_when(lambda request: True)
    pauses: list[float] = []
    svc = retry(attempts=4, backoff=1, max_backoff=2.5, sleep=pauses.append)(service_of(frontend, mock))
    with pytest.raises(MockTierError) as info:
        await call(svc, InsertRequest("k", CacheEntry(1)))
    assert len(mock.operations) == 4
    assert pauses == [1, 2, 2.5]
    assert any("gave up after 4 attempts" in note for note in info.value.__notes__)


async def test_retry_only_counts_the_errors_it_is_told_to(frontend: Frontend) -> None:
    mock = MockTier()
    mock.fail_when(lambda request: True)
    pauses: list[float] = []
    only_timeouts = retry(attempts=5, retry_on=TimeoutError, sleep=pauses.append)
    with pytest.raises(MockTierError):
        await call(only_timeouts(service_of(frontend, mock)), GetRequest("k"))
    assert len(mock.operations) == 1 and pauses == []

    by_predicate = retry(attempts=2, retry_on=lambda exc: "injected" in str(exc), sleep=pauses.append)
    with pytest.raises(MockTierError):
        await call(by_predicate(service_of(frontend, mock)), GetRequest("k"))
    assert len(mock.operations) == 3 and len(pauses) == 1


async def test_retry_never_retries_an_open_breaker(frontend: Frontend) -> None:
    mock = MockTier()
    breaker = circuit_breaker(failure_threshold=1, clock=ManualClock())
    mock.fail_when(lambda request: True)
    svc = stack(service_of(frontend, mock), breaker, retry(attempts=5, sleep=lambda d: None))
    with pytest.raises(CircuitOpenError):  # 1st attempt fails and opens; 2nd is refused
        await call(svc, GetRequest("k"))
    assert len(mock.operations) == 1


async def test_retry_with_an_async_sleep(anyio_backend: str) -> None:
    mock = MockTier()
    failing_first(mock, 1)
    pauses: list[float] = []

    async def fake_sleep(d: float) -> None:
        await anyio.lowlevel.checkpoint()
        pauses.append(d)

    svc = retry(attempts=2, sleep=fake_sleep)(service_of(Frontend("asyncio"), mock))
    assert (await svc(GetRequest("k"))).is_miss
    assert pauses == [0.05]


def test_retry_rejects_an_async_sleep_around_a_sync_service() -> None:
    mock = MockTier()
    failing_first(mock, 1)

    async def fake_sleep(d: float) -> None:
        pass

    with pytest.raises(TypeError, match="plain function"):
        retry(attempts=2, sleep=fake_sleep)(as_service(mock))(GetRequest("k"))


def test_retry_rejects_bad_arguments() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="attempts"):
            retry(attempts=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiplier"):
        retry(multiplier=0.5)
    with pytest.raises(TypeError, match="retry_on"):
        retry(retry_on=42)  # type: ignore[arg-type]


async def test_retry_does_not_retry_cancellation(anyio_backend: str) -> None:
    calls = []

    async def stuck(request: Any) -> Any:
        calls.append(request)
        await anyio.sleep_forever()

    svc = retry(attempts=5, retry_on=BaseException, sleep=lambda d: None)(stuck)
    with anyio.move_on_after(0.01) as scope:
        await svc(GetRequest("k"))
    assert scope.cancelled_caught and len(calls) == 1


# -- circuit breaker -------------------------------------------------------------------


def make_breaker(clock: ManualClock, **kw: Any) -> Any:
    options = {"failure_threshold": 3, "window": 10, "cooldown": 5, "clock": clock, "name": "l2"}
    options.update(kw)
    return circuit_breaker(**options)


async def trip(svc: Any, n: int) -> None:
    for _ in range(n):
        with pytest.raises(MockTierError):
            await call(svc, GetRequest("k"))


async def test_breaker_opens_and_fails_fast_without_calling(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier()
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = make_breaker(clock, on_change=lambda old, new: changes.append((old, new)))
    svc = breaker(service_of(frontend, mock))
    assert is_async_service(svc) is (not frontend.is_sync)
    mock.fail_when(lambda request: True)
    await trip(svc, 2)
    assert breaker.state is BreakerState.CLOSED
    await trip(svc, 1)
    assert breaker.state is BreakerState.OPEN
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]

    mock.clear_operations()
    mock.clear_failures()  # the service recovered, but the breaker does not know yet
    clock.advance(2)
    for request in (GetRequest("k"), InsertRequest("k", CacheEntry(1)), InvalidateRequest("k"),
                    ClearRequest()):
        with pytest.raises(CircuitOpenError) as info:
            await call(svc, request)
    assert mock.operations == []  # nothing reached the service
    assert isinstance(info.value, CacheError)
    assert info.value.retry_after == pytest.approx(3) and info.value.name == "l2"
    assert "'l2' is open" in str(info.value)


async def test_breaker_half_opens_after_cooldown_and_closes_on_success(
        frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier.with_data({"k": 1})
    breaker = make_breaker(clock)
    svc = breaker(service_of(frontend, mock))
    mock.fail_when(lambda request: True)
    await trip(svc, 3)
    mock.clear_failures()
    mock.clear_operations()

    clock.advance(4.999)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await call(svc, GetRequest("k"))
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    assert mock.operations == []

    assert (await call(svc, GetRequest("k"))).entry == CacheEntry(1)  # the probe
    assert breaker.state is BreakerState.CLOSED
    assert mock.operations == [GetRequest("k")]
    # Closed again, the failure history is forgotten: two failures do not open it.
    mock.fail_when(lambda request: True)
    await trip(svc, 2)
    assert breaker.state is BreakerState.CLOSED


async def test_breaker_reopens_on_a_failed_probe(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier()
    breaker = make_breaker(clock)
    svc = breaker(service_of(frontend, mock))
    mock.fail_when(lambda request: True)
    await trip(svc, 3)
    clock.advance(5)
    mock.clear_operations()
    await trip(svc, 1)  # the probe reaches the service and fails
    assert mock.operations == [GetRequest("k")]
    assert breaker.state is BreakerState.OPEN
    clock.advance(4)  # a fresh cooldown counts from the failed probe
    with pytest.raises(CircuitOpenError) as info:
        await call(svc, GetRequest("k"))
    assert info.value.retry_after == pytest.approx(1)
    assert mock.operations == [GetRequest("k")]
    clock.advance(1)
    mock.clear_failures()
    assert (await call(svc, GetRequest("k"))).is_miss
    assert breaker.state is BreakerState.CLOSED


async def test_breaker_counts_failures_within_the_window(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier()
    breaker = make_breaker(clock)
    svc = breaker(service_of(frontend, mock))
    mock.fail_when(lambda request: True)
    for _ in range(4):  # failures 10.5 s apart never make three within 10 s
        await trip(svc, 1)
        clock.advance(5.25)
        await trip(svc, 1)
        clock.advance(5.25)
        assert breaker.state is BreakerState.CLOSED
    await trip(svc, 1)
    clock.advance(10)  # the oldest of the last three is exactly 10 s old: inside the window
    await trip(svc, 2)
    assert breaker.state is BreakerState.OPEN


async def test_breaker_ignores_errors_that_do_not_count(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier()
    breaker = make_breaker(clock, failure_threshold=1, failure_on=ConnectionError)
    svc = breaker(service_of(frontend, mock))
    mock.fail_when(lambda request: True)
    await trip(svc, 5)  # MockTierError is not a ConnectionError
    assert breaker.state is BreakerState.CLOSED
    assert len(mock.operations) == 5


async def test_breaker_allows_a_single_probe(anyio_backend: str, clock: ManualClock) -> None:
    """While the probe is out, other calls fail fast; a cancelled probe frees the slot."""
    mock = MockTier()
    gate = anyio.Event()
    probing = anyio.Event()
    inner = as_service(mock)

    async def svc(request: Any) -> Any:
        if isinstance(request, GetRequest) and request.key == "slow":
            probing.set()
            await gate.wait()
        return inner(request)

    breaker = make_breaker(clock, failure_threshold=1)
    guarded = breaker(svc)
    mock.fail_when(lambda request: True)
    await trip(guarded, 1)
    mock.clear_failures()
    clock.advance(5)

    # A probe that is cancelled gives no verdict: the breaker stays half-open.
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(guarded, GetRequest("slow"))
            await probing.wait()
            scope.cancel()
    assert breaker.state is BreakerState.HALF_OPEN

    probing = anyio.Event()
    results: list[Any] = []

    async def probe() -> None:
        results.append(await guarded(GetRequest("slow")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        await probing.wait()
        mock.clear_operations()
        with pytest.raises(CircuitOpenError) as info:
            await guarded(GetRequest("other"))
        assert info.value.retry_after == 0.0 and "probe is in flight" in str(info.value)
        assert mock.operations == []
        gate.set()
    assert results == [GetResponse(None)] and breaker.state is BreakerState.CLOSED


async def test_breaker_probes_with_its_probe_function_not_a_call(
        frontend: Frontend, clock: ManualClock) -> None:
    """Given ``probe=``, the first call after the cooldown runs the check first: a failed
    check re-opens the breaker and refuses that call without reaching the service; a
    passed one closes it and the call goes through."""
    mock = MockTier.with_data({"k": 1})
    checks: list[str] = []
    down = [True]

    def check() -> None:
        checks.append("sync")
        if down[0]:
            raise ConnectionError("still down")

    async def acheck() -> None:  # an async service may take an async check
        await anyio.lowlevel.checkpoint()
        check()

    breaker = make_breaker(clock, probe=check if frontend.is_sync else acheck)
    svc = breaker(service_of(frontend, mock))
    mock.fail_when(lambda request: True)
    await trip(svc, 3)
    mock.clear_failures()
    mock.clear_operations()
    assert checks == []  # closed and open calls never probe

    clock.advance(5)
    with pytest.raises(CircuitOpenError) as info:
        await call(svc, GetRequest("k"))
    assert isinstance(info.value.__cause__, ConnectionError)
    assert mock.operations == [] and len(checks) == 1
    assert breaker.state is BreakerState.OPEN and info.value.retry_after == pytest.approx(5)

    down[0] = False
    clock.advance(5)
    assert (await call(svc, GetRequest("k"))).entry == CacheEntry(1)
    assert breaker.state is BreakerState.CLOSED
    assert mock.operations == [GetRequest("k")] and len(checks) == 2
    assert (await call(svc, GetRequest("k"))).entry == CacheEntry(1)
    assert len(checks) == 2  # closed again: no more checks


async def test_a_cancelled_probe_check_frees_the_probe(anyio_backend: str, clock: ManualClock) -> None:
    mock = MockTier()
    started = anyio.Event()

    async def hangs() -> None:
        started.set()
        await anyio.sleep_forever()

    breaker = make_breaker(clock, failure_threshold=1, probe=hangs)
    inner = as_service(mock)

    async def service(request: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return inner(request)

    svc = breaker(service)
    mock.fail_when(lambda request: True)
    await trip(svc, 1)
    mock.clear_failures()
    clock.advance(5)
    with anyio.move_on_after(0.05) as scope:  # the caller gives up during the check
        await svc(GetRequest("k"))
    assert scope.cancelled_caught and breaker.state is BreakerState.HALF_OPEN
    assert mock.operations == [GetRequest("k")]  # only the call that opened it
    with pytest.raises(TypeError, match="probe"):
        circuit_breaker(probe="nope")  # type: ignore[arg-type]


def test_an_async_probe_on_a_sync_service_never_passes(clock: ManualClock) -> None:
    mock = MockTier()

    async def check() -> None:
        pass

    breaker = make_breaker(clock, failure_threshold=1, probe=check)
    svc = breaker(as_service(mock))
    mock.fail_when(lambda request: True)
    with pytest.raises(MockTierError):
        svc(GetRequest("k"))
    mock.clear_failures()
    clock.advance(5)
    with pytest.raises(CircuitOpenError) as info:  # unawaited, it would have closed the breaker
        svc(GetRequest("k"))
    assert isinstance(info.value.__cause__, TypeError) and breaker.state is BreakerState.OPEN


def test_breaker_is_shared_by_the_services_it_wraps(clock: ManualClock) -> None:
    a, b = MockTier(), MockTier()
    breaker = make_breaker(clock, failure_threshold=2)
    svc_a, svc_b = breaker(as_service(a)), breaker(as_service(b))
    a.fail_when(lambda request: True)
    for _ in range(2):
        with pytest.raises(MockTierError):
            svc_a(GetRequest("k"))
    with pytest.raises(CircuitOpenError):
        svc_b(GetRequest("k"))
    assert b.operations == []
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    assert svc_b(GetRequest("k")).is_miss
    assert "CLOSED" in repr(breaker)


def test_breaker_rejects_bad_arguments(clock: ManualClock) -> None:
    for kw in ({"failure_threshold": 0}, {"window": 0}, {"cooldown": -1}):
        with pytest.raises(ValueError):
            circuit_breaker(clock=clock, **kw)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="failure_on"):
        circuit_breaker(failure_on="oops")  # type: ignore[arg-type]


async def test_breaker_on_the_l2_of_a_two_tier_cache(frontend: Frontend, clock: ManualClock) -> None:
    mock = MockTier()
    breaker = make_breaker(clock, failure_threshold=2, cooldown=30)
    cache = (frontend.builder(clock).memory(100)
             .fallback(frontend.builder(clock).name("l2").service(breaker(service_of(frontend, mock))))
             .build())
    async with frontend.open(cache) as c:
        await c.insert("hot", 1)
        assert mock.contains_key("hot")

        mock.fail_when(lambda request: True)  # L2 outage
        mock.clear_operations()
        for key in ("cold-1", "cold-2"):
            with pytest.raises(TierError) as info:
                await c.get(key)
            assert isinstance(info.value.__cause__, MockTierError)
        assert breaker.state is BreakerState.OPEN

        mock.clear_operations()
        for _ in range(100):
            assert (await c.get("hot")).value == 1  # L1 hits keep being served
        for key in ("cold-1", "cold-3"):
            with pytest.raises(TierError) as info:
                await c.get(key)
            assert info.value.tier == "l2" and isinstance(info.value.__cause__, CircuitOpenError)
        assert mock.operations == []  # no L2 call while open

        mock.clear_failures()  # L2 is back; after the cooldown a miss probes it
        clock.advance(30)
        assert await c.get("cold-1") is None
        assert breaker.state is BreakerState.CLOSED
        assert mock.operations == [GetRequest("cold-1")]


# -- the breaker's state machine, directly ---------------------------------------------


def test_core_late_results_do_not_change_a_new_state() -> None:
    clock = ManualClock()
    core = BreakerCore(clock, failure_threshold=1, window=10, cooldown=5)
    slow_success = core.acquire()
    core.failure(core.acquire())
    assert core.state is BreakerState.OPEN
    core.success(slow_success)  # started before the breaker opened: ignored
    assert core.state is BreakerState.OPEN
    clock.advance(5)
    probe = core.acquire()
    assert core.acquire() is None  # the single probe is out
    core.success(probe)
    assert core.state is BreakerState.CLOSED
    core.failure(probe)  # a second report under an old ticket changes nothing
    assert core.state is BreakerState.CLOSED


def test_core_abandoned_probe_frees_the_slot() -> None:
    clock = ManualClock()
    core = BreakerCore(clock, failure_threshold=1, window=10, cooldown=5)
    core.failure(core.acquire())
    clock.advance(5)
    probe = core.acquire()
    assert probe is not None and core.acquire() is None
    core.abandon(probe)
    assert core.state is BreakerState.HALF_OPEN
    assert core.acquire() is not None


def test_core_clock_going_backwards_restarts_the_cooldown() -> None:
    clock = ManualClock(100)
    core = BreakerCore(clock, failure_threshold=1, window=10, cooldown=5)
    core.failure(core.acquire())
    clock.set(50)
    assert core.acquire() is None
    clock.set(54.9)
    assert core.state is BreakerState.OPEN
    clock.set(55)
    assert core.state is BreakerState.HALF_OPEN


def test_breaker_allows_a_single_probe_across_threads(clock: ManualClock) -> None:
    mock = MockTier()
    inner = as_service(mock)
    gate = threading.Event()
    probing = threading.Event()

    def svc(request: Any) -> Any:
        if isinstance(request, GetRequest) and request.key == "slow":
            probing.set()
            gate.wait(GUARD)
        return inner(request)

    breaker = make_breaker(clock, failure_threshold=1)
    guarded = breaker(svc)
    mock.fail_when(lambda request: True)
    with pytest.raises(MockTierError):
        guarded(GetRequest("k"))
    mock.clear_failures()
    clock.advance(5)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        probe = pool.submit(guarded, GetRequest("slow"))
        try:
            assert probing.wait(GUARD)
            mock.clear_operations()
            with pytest.raises(CircuitOpenError, match="probe is in flight"):
                guarded(GetRequest("other"))
            assert mock.operations == []
        finally:
            gate.set()
        assert probe.result(GUARD) == GetResponse(None)
    assert breaker.state is BreakerState.CLOSED
    assert guarded(GetRequest("other")).is_miss


def test_public_names_are_exported_and_documented() -> None:
    import cachet.middleware
    import cachet.service

    assert set(cachet.middleware.__all__) <= set(cachet.service.__all__)
    for name in cachet.service.__all__:
        obj = getattr(cachet.service, name)
        assert obj is not None
        alias = isinstance(obj, types.GenericAlias)  # a type alias (a class to 3.10's inspect)
        if (inspect.isclass(obj) and not alias) or inspect.isfunction(obj):
            assert getattr(obj, "__doc__", None), f"{name} has no docstring"
