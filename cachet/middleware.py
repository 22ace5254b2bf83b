"""Middleware: functions from service to service (SPEC §5).

A *service* is a callable from a request (``GetRequest``, ``InsertRequest``,
``InvalidateRequest``, ``ClearRequest``) to its response; an *async service* is a
coroutine function (or an object whose ``__call__`` is one). A *layer* takes a service
and returns a service of the same flavour, so layers compose::

    from cachet.service import as_service, circuit_breaker, retry, stack, timeout

    guarded = stack(
        as_service(tier),            # innermost: the storage itself
        timeout(0.25),               # each attempt is cut after 250 ms
        retry(attempts=3),           # ... and retried twice with backoff
        circuit_breaker(failure_threshold=5, window=30, cooldown=10),  # outermost
    )
    cache = Cache.builder().memory(10_000).fallback(Cache.builder().service(guarded)).build()

Every layer here works on both flavours: it looks at the service it wraps
(:func:`is_async_service`) and returns a plain function for a sync service and a
coroutine function for an async one. Write your own layer the same way (see
``examples/logging_layer.py``).

The names are re-exported by :mod:`cachet.service`, the one place to import them from.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import inspect
import itertools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast, overload

import anyio

from ._core.breaker import BreakerCore as _BreakerCore
from ._core.breaker import BreakerState as BreakerState
from ._core.breaker import CircuitOpenError as CircuitOpenError
from ._core.clock import Clock
from ._core.durations import Duration, to_seconds
from ._core.errors import CacheError
from ._core.requests import CacheRequest, CacheResponse

__all__ = [
    "AsyncService", "BreakerState", "CircuitBreaker", "CircuitOpenError", "Layer", "Service",
    "ServiceTimeoutError", "SyncService", "circuit_breaker", "is_async_service", "retry",
    "stack", "timeout",
]

SyncService = Callable[[CacheRequest], CacheResponse]
"""A blocking service: ``service(request) -> response``."""

AsyncService = Callable[[CacheRequest], Awaitable[CacheResponse]]
"""An async service: ``await service(request) -> response``."""

Service = SyncService | AsyncService
"""Either flavour of service."""

#: Which exceptions a layer reacts to: a type, a tuple of types, or a predicate.
ErrorFilter = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


class Layer(Protocol):
    """A middleware: takes a service and returns one of the same flavour."""

    @overload
    def __call__(self, service: AsyncService) -> AsyncService: ...
    @overload
    def __call__(self, service: SyncService) -> SyncService: ...


class ServiceTimeoutError(CacheError, TimeoutError):
    """A service call did not answer within the :func:`timeout` bound.

    It is a :class:`TimeoutError` too, so ``except TimeoutError`` catches it.
    """

    def __init__(self, seconds: float, request: Any) -> None:
        self.seconds = seconds
        self.request = request
        super().__init__(f"no answer to {request!r} within {seconds:g}s")


def is_async_service(service: Any) -> bool:
    """True if ``service`` must be awaited: a coroutine function, or an object whose
    ``__call__`` is one (an aio ``Cache`` is such a service).

    A plain function that *returns* an awaitable cannot be told apart before it is
    called; wrap it in an ``async def``.
    """
    if inspect.iscoroutinefunction(service):
        return True
    call = getattr(service, "__call__", None)  # noqa: B004  # bound __call__ of an object
    return call is not None and inspect.iscoroutinefunction(call)


def _matcher(spec: ErrorFilter, what: str) -> Callable[[BaseException], bool]:
    if isinstance(spec, type) and issubclass(spec, BaseException):
        return lambda exc: isinstance(exc, spec)
    if isinstance(spec, tuple) and all(isinstance(t, type) and issubclass(t, BaseException) for t in spec):
        return lambda exc: isinstance(exc, spec)
    if callable(spec):
        return cast(Callable[[BaseException], bool], spec)
    raise TypeError(f"{what} takes an exception type, a tuple of them or a predicate, not {spec!r}")


# -- stack -----------------------------------------------------------------------------


@overload
def stack(service: AsyncService, *layers: Callable[[Any], Any]) -> AsyncService: ...
@overload
def stack(service: SyncService, *layers: Callable[[Any], Any]) -> SyncService: ...
def stack(service: Any, *layers: Callable[[Any], Any]) -> Any:
    """Wrap ``service`` in ``layers``, innermost first.

    ``stack(svc, a, b, c)`` is ``c(b(a(svc)))``: a request meets ``c`` first and ``svc``
    last. Read it from the storage outwards.

    >>> from cachet.service import as_service, stack, retry
    >>> from cachet.testing import MockTier
    >>> svc = stack(as_service(MockTier()), retry(attempts=2))
    >>> from cachet.service import GetRequest
    >>> svc(GetRequest("k")).is_miss
    True
    """
    for layer in layers:
        if not callable(layer):
            raise TypeError(f"a layer must be callable (service -> service), not {layer!r}")
        service = layer(service)
    return service


# -- timeout ---------------------------------------------------------------------------

_timeout_threads = itertools.count(1)


class _Timeout:
    def __init__(self, seconds: float, executor: concurrent.futures.Executor | None) -> None:
        self.seconds = seconds
        self.executor = executor

    @overload
    def __call__(self, service: AsyncService) -> AsyncService: ...
    @overload
    def __call__(self, service: SyncService) -> SyncService: ...
    def __call__(self, service: Any) -> Any:
        seconds = self.seconds
        if is_async_service(service):
            async def timed_async(request: CacheRequest) -> CacheResponse:
                with anyio.move_on_after(seconds):
                    return await service(request)  # type: ignore[no-any-return]
                raise ServiceTimeoutError(seconds, request)

            return timed_async

        executor = self.executor

        def timed(request: CacheRequest) -> CacheResponse:
            ctx = contextvars.copy_context()
            future: concurrent.futures.Future[CacheResponse]
            if executor is not None:
                future = executor.submit(ctx.run, service, request)
            else:
                future = concurrent.futures.Future()
                future.set_running_or_notify_cancel()
                threading.Thread(
                    target=_run_into, args=(future, ctx, service, request),
                    name=f"cachet-timeout-{next(_timeout_threads)}", daemon=True,
                ).start()
            # wait() rather than result(timeout=): a TimeoutError the service itself
            # raised must not be mistaken for ours.
            done, _ = concurrent.futures.wait([future], timeout=seconds)
            if not done:
                future.cancel()  # with an executor, a call still queued never starts
                raise ServiceTimeoutError(seconds, request)
            return future.result()

        return timed

    def __repr__(self) -> str:
        return f"timeout({self.seconds:g})"


def _run_into(future: concurrent.futures.Future[Any], ctx: contextvars.Context,
              service: Callable[[Any], Any], request: Any) -> None:
    try:
        result = ctx.run(service, request)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def timeout(seconds: Duration, *, executor: concurrent.futures.Executor | None = None) -> Layer:
    """A layer that gives up on a call after ``seconds`` with :class:`ServiceTimeoutError`.

    - **async services**: the call runs in an ``anyio.move_on_after`` scope and is
      *cancelled* at the deadline, on asyncio and trio alike. (A call stuck in
      ``anyio.to_thread.run_sync`` is only cut if it was started with
      ``abandon_on_cancel=True``.)
    - **sync services**: Python cannot interrupt a blocking call, so the call runs in
      another thread and the caller *stops waiting* at the deadline. The call itself goes
      on until the service returns; its result is dropped. Each call gets a fresh daemon
      thread (so a stuck call never blocks interpreter exit), or runs on ``executor`` if
      you pass one (you own its lifetime; a call still queued at the deadline never
      starts). The service must therefore be thread-safe, and a service that hangs
      forever leaves one thread per call behind it: put a :func:`circuit_breaker`
      outside the timeout so an outage stops new calls. Context variables are copied
      into the thread.

    >>> from cachet.service import as_service, timeout, GetRequest
    >>> from cachet.testing import MockTier
    >>> timeout(1.0)(as_service(MockTier()))(GetRequest("k")).is_miss
    True
    """
    return _Timeout(to_seconds(seconds, "timeout"), executor)


# -- retry -----------------------------------------------------------------------------


class _Retry:
    def __init__(self, attempts: int, backoff: float, multiplier: float, max_backoff: float,
                 jitter: bool, retry_on: Callable[[BaseException], bool],
                 sleep: Callable[[float], Any] | None,
                 on_retry: Callable[[int, BaseException, float], None] | None) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.multiplier = multiplier
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.retry_on = retry_on
        self.sleep = sleep
        self.on_retry = on_retry

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failed attempt."""
        d = min(self.max_backoff, self.backoff * self.multiplier ** (failures - 1))
        return random.uniform(0.0, d) if self.jitter else d

    def next_delay(self, failures: int, exc: Exception) -> float | None:
        """How long to pause before the next attempt, or ``None`` to give up (re-raise)."""
        if isinstance(exc, CircuitOpenError) or not self.retry_on(exc):
            return None
        if failures >= self.attempts:
            note = f"cachet.retry: gave up after {failures} attempts"
            if hasattr(exc, "add_note"):
                exc.add_note(note)
            else:  # Python 3.10: the attribute PEP 678 defines (shown by 3.11+ tracebacks)
                setattr(exc, "__notes__", [*getattr(exc, "__notes__", ()), note])  # noqa: B010
            return None
        delay = self.delay(failures)
        if self.on_retry is not None:
            self.on_retry(failures, exc, delay)
        return delay

    @overload
    def __call__(self, service: AsyncService) -> AsyncService: ...
    @overload
    def __call__(self, service: SyncService) -> SyncService: ...
    def __call__(self, service: Any) -> Any:
        if is_async_service(service):
            sleep = self.sleep or anyio.sleep

            async def retried_async(request: CacheRequest) -> CacheResponse:
                failures = 0
                while True:
                    failures += 1
                    try:
                        return await service(request)  # type: ignore[no-any-return]
                    except Exception as exc:
                        delay = self.next_delay(failures, exc)
                        if delay is None:
                            raise
                    pause = sleep(delay)
                    if inspect.isawaitable(pause):
                        await pause

            return retried_async

        sync_sleep = self.sleep or time.sleep

        def retried(request: CacheRequest) -> CacheResponse:
            failures = 0
            while True:
                failures += 1
                try:
                    return service(request)  # type: ignore[no-any-return]
                except Exception as exc:
                    delay = self.next_delay(failures, exc)
                    if delay is None:
                        raise
                _refuse_awaitable(sync_sleep(delay), "retry(sleep=...) around a sync service")

        return retried

    def __repr__(self) -> str:
        return f"retry(attempts={self.attempts})"


def retry(
    attempts: int = 3,
    *,
    backoff: Duration = 0.05,
    multiplier: float = 2.0,
    max_backoff: Duration = 2.0,
    jitter: bool = False,
    retry_on: ErrorFilter = Exception,
    sleep: Callable[[float], Any] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> Layer:
    """A layer that calls the service up to ``attempts`` times while it raises.

    - **Backoff**: after the n-th failure it pauses ``min(max_backoff, backoff *
      multiplier ** (n - 1))`` seconds (0.05, 0.1, 0.2, ... by default); ``jitter=True``
      draws the pause uniformly from ``[0, that]`` ("full jitter") so many clients do not
      retry in step.
    - **Which errors count**: ``retry_on``, an exception type, a tuple of them or a
      predicate (default: any ``Exception``). Others propagate at once. Never retried,
      whatever ``retry_on`` says: :class:`CircuitOpenError` (a breaker said stop) and
      anything that is not an ``Exception`` (cancellation, ``KeyboardInterrupt``).
    - **Giving up** re-raises the last error unchanged (with a note saying how many
      attempts were made), so a cache reports it as a ``TierError`` caused by it.
    - **Sleeping** uses ``time.sleep`` (sync services) or ``anyio.sleep`` (async ones);
      pass ``sleep=`` to replace it (a plain function, or for async services a
      coroutine function too). Tests pass ``sleep=delays.append`` and never wait.
    - ``on_retry(failures, exc, delay)`` is called before each pause (for logging).

    Every cache operation is idempotent (get, set, delete, clear), so retrying any of
    them is safe.

    >>> from cachet.service import as_service, retry, GetRequest
    >>> from cachet.testing import MockTier
    >>> tier, pauses = MockTier(), []
    >>> tier.fail_when(lambda req: len(tier.operations) < 3)   # the first two calls fail
    >>> retry(attempts=3, sleep=pauses.append)(as_service(tier))(GetRequest("k")).is_miss
    True
    >>> pauses
    [0.05, 0.1]
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
    if not multiplier >= 1.0:
        raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
    return _Retry(attempts, to_seconds(backoff, "backoff", allow_zero=True), float(multiplier),
                  to_seconds(max_backoff, "max_backoff", allow_zero=True), jitter,
                  _matcher(retry_on, "retry_on"), sleep, on_retry)


# -- circuit breaker -------------------------------------------------------------------


class _MonotonicClock:
    """``time.monotonic``: a breaker's cooldown must not jump with the wall clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()


class CircuitBreaker:
    """A layer that stops calling a failing service for a while (see :func:`circuit_breaker`).

    One ``CircuitBreaker`` is one state: every service it wraps shares it (wrap two
    namespaces of one Redis server with the same breaker and they trip together).
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        window: Duration = 60.0,
        cooldown: Duration = 30.0,
        failure_on: ErrorFilter = Exception,
        clock: Clock | None = None,
        name: str = "breaker",
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
        probe: Callable[[], Any] | None = None,
    ) -> None:
        if probe is not None and not callable(probe):
            raise TypeError(f"probe must be a callable, not {type(probe).__name__}")
        self._probe = probe
        self._core = _BreakerCore(
            clock if clock is not None else _MonotonicClock(),
            failure_threshold=failure_threshold, window=window, cooldown=cooldown,
            name=name, on_change=on_change,
        )
        self._counts = _matcher(failure_on, "failure_on")
        # Taken around every call into the core (never across the service call), so
        # threads and tasks may share one breaker.
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        """``CLOSED``, ``OPEN`` or ``HALF_OPEN`` (an open breaker past its cooldown)."""
        with self._lock:
            return self._core.state

    @property
    def name(self) -> str:
        """The name given at creation; ``CircuitOpenError`` messages use it."""
        return self._core.name

    def reset(self) -> None:
        """Close the breaker now and forget past failures."""
        with self._lock:
            self._core.reset()

    def _acquire(self) -> int:
        with self._lock:
            ticket = self._core.acquire()
            if ticket is None:
                raise self._core.open_error()
            return ticket

    def _probing(self, ticket: int) -> bool:
        if self._probe is None:
            return False
        with self._lock:
            return self._core.probing(ticket)

    def _probed(self, ticket: int, exc: BaseException | None) -> int:
        """Settle the probe's ticket by how the check ended: a failed check refuses the
        call (``CircuitOpenError`` caused by the check's error); a passed one closes the
        breaker and the call goes on under a ticket of its own."""
        with self._lock:
            if exc is None:
                self._core.success(ticket)
            elif isinstance(exc, Exception):
                self._core.failure(ticket)
                raise self._core.open_error() from exc
            else:
                self._core.abandon(ticket)
                raise exc
        return self._acquire()

    def _settle(self, ticket: int, exc: BaseException | None) -> None:
        with self._lock:
            if exc is None:
                self._core.success(ticket)
            elif not isinstance(exc, Exception):
                self._core.abandon(ticket)  # cancelled: no verdict on the service
            elif self._counts(exc):
                self._core.failure(ticket)
            else:
                self._core.success(ticket)  # it answered, with an error that does not count

    @overload
    def __call__(self, service: AsyncService) -> AsyncService: ...
    @overload
    def __call__(self, service: SyncService) -> SyncService: ...
    def __call__(self, service: Any) -> Any:
        if is_async_service(service):
            async def guarded_async(request: CacheRequest) -> CacheResponse:
                ticket = self._acquire()
                if self._probing(ticket):
                    ticket = self._probed(ticket, await _outcome_async(self._probe))  # type: ignore[arg-type]
                with _Settling(self, ticket):
                    return await service(request)  # type: ignore[no-any-return]

            return guarded_async

        def guarded(request: CacheRequest) -> CacheResponse:
            ticket = self._acquire()
            if self._probing(ticket):
                ticket = self._probed(ticket, _outcome(self._probe))  # type: ignore[arg-type]
            with _Settling(self, ticket):
                return service(request)  # type: ignore[no-any-return]

        return guarded

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state.name}>"


class _Settling:
    """Around one guarded call: settle its ticket by how the call ended."""

    __slots__ = ("_breaker", "_ticket")

    def __init__(self, breaker: CircuitBreaker, ticket: int) -> None:
        self._breaker, self._ticket = breaker, ticket

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self._breaker._settle(self._ticket, exc)


def _outcome(probe: Callable[[], Any]) -> BaseException | None:
    """Run a sync service's probe: what it raised, or ``None`` if it passed."""
    try:
        _refuse_awaitable(probe(), "a sync service's probe")
    except BaseException as exc:
        return exc
    return None


async def _outcome_async(probe: Callable[[], Any]) -> BaseException | None:
    """Run an async service's probe (awaited if it returns an awaitable)."""
    try:
        checked = probe()
        if inspect.isawaitable(checked):
            await checked
    except BaseException as exc:
        return exc
    return None


def _refuse_awaitable(result: Any, what: str) -> None:
    """Nothing around a sync service would await ``result``: close it and say so."""
    if inspect.isawaitable(result):
        getattr(result, "close", lambda: None)()
        raise TypeError(f"{what} must be a plain function, not async")


def circuit_breaker(
    *,
    failure_threshold: int = 5,
    window: Duration = 60.0,
    cooldown: Duration = 30.0,
    failure_on: ErrorFilter = Exception,
    clock: Clock | None = None,
    name: str = "breaker",
    on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    probe: Callable[[], Any] | None = None,
) -> CircuitBreaker:
    """A layer that fails fast while the service behind it is failing.

    - **Opens** after ``failure_threshold`` counted failures within ``window`` seconds.
    - **While open**, every call raises :class:`CircuitOpenError` at once; nothing
      reaches the service.
    - **After** ``cooldown`` seconds the next call is a single probe (HALF_OPEN; other
      calls still fail fast). Its success closes the breaker; its failure re-opens it
      for another cooldown.
    - ``failure_on`` says which errors count (type, tuple or predicate; default any
      ``Exception``). An error that does not count is an answer: it counts as a success.
      Cancellation counts as nothing.
    - Time is read from ``clock`` (default ``time.monotonic``); tests pass a
      ``ManualClock`` and ``advance`` it. ``on_change(old, new)`` is called on every
      transition (under the breaker's lock: keep it short).
    - ``probe``, if given, is the check made in place of the first call after the
      cooldown: a cheap function with a short timeout of its own (sync for a sync
      service; sync or async for an async one) that raises when the service is still
      down. Then a service that still hangs costs the probing caller the check's
      timeout, not a full call's: a failed check re-opens the breaker and that call
      gets ``CircuitOpenError``; a passed check closes it and the call goes through.

    Put it outside ``timeout`` and ``retry`` so that a call that timed out after all its
    retries counts as one failure. The state machine is
    :class:`cachet._core.breaker.BreakerCore`, shared by sync and async services.

    >>> from cachet import ManualClock
    >>> from cachet.service import as_service, circuit_breaker, GetRequest, CircuitOpenError
    >>> from cachet.testing import MockTier
    >>> tier, clock = MockTier(), ManualClock()
    >>> breaker = circuit_breaker(failure_threshold=1, cooldown=5, clock=clock)
    >>> svc = breaker(as_service(tier))
    >>> tier.fail_when(lambda req: True)
    >>> try: svc(GetRequest("k"))
    ... except Exception as exc: print(type(exc).__name__)
    MockTierError
    >>> breaker.state
    BreakerState.OPEN
    """
    return CircuitBreaker(failure_threshold=failure_threshold, window=window, cooldown=cooldown,
                          failure_on=failure_on, clock=clock, name=name, on_change=on_change,
                          probe=probe)
