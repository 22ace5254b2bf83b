"""Straight-line paths: the slow operations of the simplest stacks as plain calls.

A flow (``stack.py``) costs a generator, a driver loop and a frame per step. A load on a
stack whose only tier is in process has no I/O for the frontend to carry out but the
factory itself, so :class:`Core` also offers it as plain calls around that factory::

    joined = core.lead_load(mode, key, make_signal)  # None: run core.load_flow instead
    flight, leader = joined                          # a waiter waits on flight.signal
    ... the leader calls (or awaits) the factory ...
    entry = core.land_load(flight, value, mode)      # or: error = core.fail_load(...)
    # then: set flight.signal if it is not None

These functions are methods of :class:`Core` (assigned in its class body). The
bookkeeping of ``Flights`` and ``WriteGuard`` is written out here, not called: every
frame is ~5% of a load. The rules are those of ``Core.load_flow`` (the behaviour suite runs both paths); the
flight is the load's write token, so an invalidate racing the load wins here too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ..telemetry import attributes as a
from .entry import _SET_CACHED_AT as _set_cached_at
from .entry import _SET_TTL as _set_ttl
from .entry import _SET_VALUE as _set_value
from .entry import CacheEntry
from .errors import LoaderError
from .inflight import _ABANDONED, _LOADING, Flight
from .policy import InsertOutcome, InsertPolicy
from .stats import STAT_OF_EVENT

if TYPE_CHECKING:
    from .stack import Core

_S_MISS, _S_INSERTED = STAT_OF_EVENT[a.MISS], STAT_OF_EVENT[a.INSERTED]
_ACCEPTED = InsertOutcome.ACCEPTED
_UNWRITTEN: Any = object()
_new = object.__new__
_OPTIONAL, _TRY = a.OP_OPTIONALLY_GET_OR_INSERT, a.OP_TRY_GET_OR_INSERT


def straight_loads(core: Core) -> bool:
    """Whether ``core`` can load on the straight path: one in-process tier that stores
    whatever it is given as given (no insert policy, no jitter), no telemetry, no hard
    loader timeout. (Fail-safe needs an expired entry, which sends a load to the flow.)"""
    levels = core.levels
    return (len(levels) == 1 and levels[0].direct and levels[0].inline is not None
            and levels[0].policy is InsertPolicy.always() and not core.jitter and core.reporter is None
            and core.hard_timeout is None)


def lead_load(self: Core, mode: str, key: Hashable,
              make_signal: Callable[[], Any]) -> tuple[Flight, bool] | None:
    """Join the load of ``key`` in flight (stampede protection), or lead a new one;
    ``None`` when the flow must decide (the tier holds something for ``key``, expired
    or stale, or a backplane is to be told about the write). Raises
    ``ReentrantLoadError`` for a load of ``key`` from inside its own factory."""
    loading = _LOADING.get()
    if loading is not None:
        self.check_reentrant(key)
    stampede = self.stampede
    with self.mutex:
        if stampede:
            flight = self.flights.map.get((mode, key))
            if flight is not None:
                if flight.signal is None:
                    flight.signal = make_signal()
                flight.waiters += 1
                self.coalesced_waits += 1
                return flight, False
        if key in self.levels[0].inline[1] or self.publish is not None:  # type: ignore[index]
            return None
        flight = Flight(mode, key, None)
        if stampede:
            self.flights.map[(mode, key)] = flight
        held = self.guard.tokens.get(key)
        if held is None:
            self.guard.tokens[key] = [flight]
        else:
            held.append(flight)
        self.counts[0][_S_MISS] += 1
    flight.mark = _LOADING.set((self.ident, key, loading))
    return flight, True

def land_load(self: Core, flight: Flight, value: Any, mode: str) -> CacheEntry[Any] | None:
    """The leader's factory returned ``value``: store it unless an invalidate came
    first (``load_flow``'s write, for one in-process tier), and settle the flight.
    Returns what the caller gets. Written out for the common case, a plain value."""
    _LOADING.reset(flight.mark)
    if flight.stale or value is None or isinstance(value, CacheEntry):
        return _land_other(self, flight, value, mode)
    entry: CacheEntry[Any] = _new(CacheEntry)  # CacheEntry(value, now), without its __init__ frame
    _set_value(entry, value)
    _set_cached_at(entry, self.now())
    _set_ttl(entry, None)
    level, key = self.levels[0], flight.key
    try:
        outcome = level.insert(key, entry)
    except BaseException as exc:
        return _land_other(self, flight, value, mode, exc)
    if outcome is not _ACCEPTED or flight.stale:
        return _land_other(self, flight, value, mode, outcome)
    self.counts[0][_S_INSERTED] += 1
    with self.mutex:  # _settle, written out
        held = self.guard.tokens.get(key)
        if held is not None and flight in held:
            if len(held) == 1:
                del self.guard.tokens[key]
            else:
                held.remove(flight)
        flight.value = entry
        flights = self.flights.map
        if flights.get((mode, key)) is flight:
            del flights[(mode, key)]
    return entry

def _land_other(self: Core, flight: Flight, value: Any, mode: str,
                written: Any = _UNWRITTEN) -> CacheEntry[Any] | None:
    """``land_load`` for the rest: ``None``, an entry from the factory, a load an
    invalidate overtook, a write the tier refused or failed (``written``: its outcome
    or exception)."""
    result: CacheEntry[Any] | None = None
    error: BaseException | None = None
    try:
        if not (value is None and mode is _OPTIONAL):
            result = _store_loaded(self, flight, value, written)
    except BaseException as exc:  # a clock or tier bug: the waiters must not hang
        error = exc
    _settle(self, flight, result, error)
    if error is not None:
        raise error
    return result

def _store_loaded(self: Core, flight: Flight, value: Any, written: Any) -> CacheEntry[Any]:
    """Stamp and store a loaded value (unless ``written`` already); the entry the
    caller gets, unstamped if it was not stored."""
    given = isinstance(value, CacheEntry)
    if flight.stale and written is _UNWRITTEN:
        return value if given else CacheEntry(value)
    entry = value.ensure_cached_at(self.now()) if given else CacheEntry(value, self.now())
    level, key = self.levels[0], flight.key
    outcome = written
    if written is _UNWRITTEN:
        try:
            outcome = level.insert(key, entry)
        except Exception as exc:
            outcome = exc
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, Exception):
            raise outcome
        self.report(level, a.INSERT_ERROR)
    else:
        self.report(level, a.INSERTED if outcome is _ACCEPTED else a.INSERT_REJECTED)
    if flight.stale:  # an invalidate overtook the write: undo it
        self.run_inline(self._remove([level], key))
    elif outcome is _ACCEPTED:
        return entry
    return value if given else CacheEntry(value)

def fail_load(self: Core, flight: Flight, exc: BaseException, mode: str,
              abandon: bool = False) -> BaseException:
    """The leader's factory raised ``exc``: settle the flight with the error its
    callers get (returned, for the leader to raise), or, with ``abandon`` (the
    leader was cancelled), hand the load over to a waiter."""
    _LOADING.reset(flight.mark)
    error = exc
    if mode is _TRY and isinstance(exc, Exception):
        error = LoaderError(f"factory for key {flight.key!r} raised {exc!r}")
        error.__cause__ = exc
    if abandon:
        _settle(self, flight, _ABANDONED, None)
    else:
        _settle(self, flight, None, error)
    return error

def _settle(self: Core, flight: Flight, value: Any, error: BaseException | None) -> None:
    """Forget the flight as a write token and as the call to join; record its outcome."""
    key = flight.key
    with self.mutex:
        held = self.guard.tokens.get(key)
        if held is not None and flight in held:
            if len(held) == 1:
                del self.guard.tokens[key]
            else:
                held.remove(flight)
        flight.value = value
        flight.error = error
        flights = self.flights.map
        if flights.get((flight.op, key)) is flight:
            del flights[(flight.op, key)]
