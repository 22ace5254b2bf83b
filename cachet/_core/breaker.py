"""The circuit breaker's state machine: pure, clock-injected, shared by both frontends.

Rules (everything that decides what the breaker does lives here; the middleware in
``cachet.middleware`` only asks :meth:`BreakerCore.acquire` before a call and reports
how the call ended):

1. CLOSED: every call goes through. A counted failure is remembered with its time; when
   ``failure_threshold`` failures fall within ``window`` seconds (the newest minus the
   oldest of the last ``failure_threshold``, inclusive), the breaker OPENS. Successes do
   not erase failures; failures older than the window stop counting.
2. OPEN: every call is refused (:class:`CircuitOpenError`) without reaching the service,
   until ``cooldown`` seconds have passed since it opened.
3. The first call after the cooldown moves the breaker to HALF_OPEN and is the one
   probe; while the probe is out, other calls are refused.
4. HALF_OPEN: the probe's success CLOSES the breaker (failure history forgotten); its
   failure OPENS it again for a fresh cooldown. The probe is the first call itself, or,
   when the middleware is given a ``probe`` function, that cheap check made first
   (:meth:`BreakerCore.probing` says a ticket is the probe's), so that a service that
   still hangs costs the probing caller the check's short timeout, not the call's. A probe that ends neither way (it was
   cancelled, or the caller abandoned it) frees the slot: the next call probes.
5. Outcomes are matched to the state they started in by a ticket (a generation number
   that changes on every transition). A call that started before a transition cannot
   change the new state: a slow success from before the breaker opened does not close
   it, and a late failure cannot re-open a breaker a probe just closed.
6. Time comes from the injected clock only. If it goes backwards while OPEN, the
   cooldown restarts from the new "now" (a breaker never closes early because a clock
   was stepped).

There is no lock here: the sync middleware holds a ``threading.Lock`` around each call
into this object; the aio middleware calls it between awaits, which is atomic.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from .clock import Clock
from .durations import Duration, to_seconds
from .errors import CacheError


class BreakerState(enum.Enum):
    """Where a circuit breaker is: ``CLOSED`` (calls pass), ``OPEN`` (calls refused),
    ``HALF_OPEN`` (one probe call decides)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __repr__(self) -> str:
        return f"BreakerState.{self.name}"


class CircuitOpenError(CacheError):
    """A circuit breaker refused the call: the service behind it is failing.

    ``retry_after`` is how many seconds remain until the breaker lets a probe through
    (``0.0`` when only waiting for the probe in flight). Nothing reached the service.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        wait = f"next probe in {retry_after:.3g}s" if retry_after > 0 else "a probe is in flight"
        super().__init__(f"circuit breaker {name!r} is open; {wait}")


Transition = Callable[[BreakerState, BreakerState], None]

#: ``acquire`` returned this: the call is refused.
REFUSED = None


class BreakerCore:
    """The state machine behind :func:`cachet.service.circuit_breaker` (see the module rules).

    Use: ``ticket = core.acquire()``; ``None`` means refuse (raise :meth:`open_error`);
    otherwise make the call and report exactly one of ``success(ticket)``,
    ``failure(ticket)`` or ``abandon(ticket)``.

    >>> from cachet import ManualClock
    >>> clock = ManualClock()
    >>> core = BreakerCore(clock, failure_threshold=2, window=10, cooldown=5)
    >>> core.failure(core.acquire()); core.failure(core.acquire()); core.state
    BreakerState.OPEN
    >>> core.acquire() is None
    True
    >>> clock.advance(5); t = core.acquire(); core.state
    BreakerState.HALF_OPEN
    >>> core.success(t); core.state
    BreakerState.CLOSED
    """

    __slots__ = ("_clock", "_cooldown", "_failures", "_generation", "_name", "_on_change",
                 "_opened_at", "_probe_out", "_state", "_threshold", "_window")

    def __init__(
        self,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        window: Duration = 60.0,
        cooldown: Duration = 30.0,
        name: str = "breaker",
        on_change: Transition | None = None,
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) \
                or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be an int >= 1, got {failure_threshold!r}")
        self._clock = clock
        self._threshold = failure_threshold
        self._window = to_seconds(window, "window")
        self._cooldown = to_seconds(cooldown, "cooldown")
        self._name = name
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._generation = 0
        # Only the last `threshold` failure times matter for rule 1.
        self._failures: deque[float] = deque(maxlen=failure_threshold)
        self._opened_at = 0.0
        self._probe_out = False

    # -- inspection --------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name, as ``CircuitOpenError`` reports it."""
        return self._name

    @property
    def state(self) -> BreakerState:
        """The state as of now: an OPEN breaker whose cooldown is over reads HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._cooldown_left(self._clock.now()) <= 0:
            return BreakerState.HALF_OPEN
        return self._state

    def open_error(self) -> CircuitOpenError:
        """The error to raise for a refused call."""
        left = self._cooldown_left(self._clock.now()) if self._state is BreakerState.OPEN else 0.0
        return CircuitOpenError(self._name, max(left, 0.0))

    # -- the protocol ------------------------------------------------------------------

    def acquire(self) -> int | None:
        """Ask to make a call: a ticket to report back with, or ``None`` (refused)."""
        state = self._state
        if state is BreakerState.CLOSED:
            return self._generation
        if state is BreakerState.OPEN:
            if self._cooldown_left(self._clock.now()) > 0:
                return REFUSED
            self._move(BreakerState.HALF_OPEN)
        if self._probe_out:
            return REFUSED
        self._probe_out = True
        return self._generation

    def probing(self, ticket: int | None) -> bool:
        """Whether ``ticket`` (just acquired) is the one probe of a HALF_OPEN breaker."""
        return ticket == self._generation and self._state is BreakerState.HALF_OPEN

    def success(self, ticket: int | None) -> None:
        """The call made under ``ticket`` succeeded (or failed in a way that does not count)."""
        if ticket != self._generation:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False
            self._failures.clear()
            self._move(BreakerState.CLOSED)

    def failure(self, ticket: int | None) -> None:
        """The call made under ``ticket`` failed with an error that counts."""
        if ticket != self._generation:
            return
        now = self._clock.now()
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False
            self._open(now)
            return
        if self._state is BreakerState.CLOSED:
            self._failures.append(now)
            if len(self._failures) == self._threshold and now - self._failures[0] <= self._window:
                self._open(now)

    def abandon(self, ticket: int | None) -> None:
        """The call made under ``ticket`` ended with no verdict (cancelled): free the probe."""
        if ticket == self._generation and self._state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def reset(self) -> None:
        """Close the breaker and forget every failure (an operator's override)."""
        self._failures.clear()
        self._probe_out = False
        self._move(BreakerState.CLOSED)

    # -- internals ---------------------------------------------------------------------

    def _cooldown_left(self, now: float) -> float:
        if now < self._opened_at:  # rule 6: the clock went backwards
            self._opened_at = now
        return self._opened_at + self._cooldown - now

    def _open(self, now: float) -> None:
        self._failures.clear()
        self._opened_at = now
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._generation += 1
        if self._on_change is not None and old is not new:
            self._on_change(old, new)

    def __repr__(self) -> str:
        return f"<BreakerCore {self._name!r} {self.state.name}>"
