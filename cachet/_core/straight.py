"""Straight-line loads: a loader's whole miss on a one-tier stack, in the hit's frame.

A flow (``stack.py``) costs a generator, a driver loop and a frame per step. A load on a
stack whose only tier is in process has no I/O for the frontend to carry out but the
factory itself, so ``Core.make_hit(loader=mode)`` generates the loader method with this
block in place of its miss (``hitpath.py`` does the generating): lead a flight, call
(or await) the factory, stamp, store, settle, each step written out, not called. Every
frame is ~5% of a load, so the bookkeeping of ``Flights`` and ``WriteGuard`` is written
out here too. Anything unusual leaves the block:

- a flight to join, an entry in the tier (expired or stale), a backplane to tell, a
  factory that is not callable: the frontend's general loader (``miss``), which runs
  ``Core.load_flow``;
- a factory error or cancellation: :func:`fail`;
- ``None``, a ``CacheEntry``, a write refused or overtaken by an invalidate:
  :func:`land_other`.

The rules are those of ``Core.load_flow`` (the behaviour suite runs both paths); the
flight is the load's write token, so an invalidate racing the load wins here too.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from ..telemetry import attributes as a
from .entry import _SET_CACHED_AT, _SET_TTL, _SET_VALUE, CacheEntry
from .errors import LoaderError
from .inflight import _ABANDONED, _LOADING, Flight
from .policy import InsertOutcome, InsertPolicy
from .stats import STAT_OF_EVENT

if TYPE_CHECKING:
    from .stack import Core

_ACCEPTED = InsertOutcome.ACCEPTED
_UNWRITTEN: Any = object()
_OPTIONAL, _TRY = a.OP_OPTIONALLY_GET_OR_INSERT, a.OP_TRY_GET_OR_INSERT

# The block, in three parts: the two critical sections run under the core's mutex when
# the core is shared by threads (cachet.sync), and as they are on an event loop's thread
# (cachet.aio: no other thread touches a core without a backplane, and with one a load
# never gets past the first section).
_START = """\
if not _c_callable(_c_factory):
    return {miss}
_c_loading = _c_loading_get()
if _c_loading is not None:
    _c_check_reentrant(_c_key)
"""
_LEAD = """\
if _c_key in _c_flights or _c_key in _c_data or _c_core.publish is not None:
    _c_flight = None
else:
    _c_flight = _c_Flight(_c_mode, _c_key, None)
    if _c_stampede:
        _c_flights[_c_key] = _c_flight
        _c_invalidates.pop(_c_key, None)  # see Core.begin_load
    if _c_key in _c_tokens:
        _c_guard.add(_c_flight)
    else:
        _c_tokens[_c_key] = _c_flight
    _c_counts[_c_S_MISS] += 1
"""
_LOAD = """\
if _c_flight is None:
    return {miss}
_c_flight.mark = _c_loading_set((_c_ident, _c_key, _c_loading))
try:
    _c_value = _c_factory()
    if _c_is_async and _c_hasattr(_c_value, "__await__"):
        _c_value = {await_}_c_value
except BaseException as _c_exc:
    raise _c_fail(_c_core, _c_flight, _c_exc, _c_is_async)
_c_loading_reset(_c_flight.mark)
_c_flight.writing = True  # marked, then checked: see WriteGuard.enter_write
if _c_flight.stale or _c_value is None or _c_isinstance(_c_value, _c_CacheEntry):
    return _c_land_other(_c_core, _c_flight, _c_value)
_c_entry = _c_new(_c_CacheEntry)
_c_set_value(_c_entry, _c_value)
_c_set_cached_at(_c_entry, _c_now())
_c_set_ttl(_c_entry, None)
try:
    _c_outcome = _c_insert(_c_key, _c_entry)
except BaseException as _c_exc:
    return _c_land_other(_c_core, _c_flight, _c_value, _c_exc)
if _c_outcome is not _c_ACCEPTED or _c_flight.stale:
    return _c_land_other(_c_core, _c_flight, _c_value, _c_outcome)
_c_counts[_c_S_INSERTED] += 1
"""
_SETTLE = """\
if _c_tokens.get(_c_key) is _c_flight:
    del _c_tokens[_c_key]
else:
    _c_guard.discard(_c_flight)
_c_flight.value = _c_entry
_c_flight.writing = False
if _c_flights.get(_c_key) is _c_flight:
    del _c_flights[_c_key]
"""
_END = """\
if _c_flight.signal is not None:
    _c_flight.signal.set()
if _c_flight.done is not None:
    _c_flight.done.set()
return _c_entry
"""


def _block(locked: bool) -> str:
    def section(code: str) -> str:
        return "with _c_mutex:\n" + textwrap.indent(code, "    ") if locked else code

    return textwrap.indent(_START + section(_LEAD) + _LOAD + section(_SETTLE) + _END, " " * 8)


_BLOCKS = {locked: _block(locked) for locked in (True, False)}


def straight_loads(core: Core) -> bool:
    """Whether ``core`` can load on the straight path: one in-process tier that stores
    whatever it is given as given (no insert policy, no jitter), no telemetry, no hard
    loader timeout. (Fail-safe needs an expired entry, which sends a load to the flow.)"""
    levels = core.levels
    return (len(levels) == 1 and levels[0].direct and levels[0].inline is not None
            and levels[0].policy is InsertPolicy.always() and not core.jitter
            and core.reporter is None and core.hard_timeout is None)


def load_block(core: Core, mode: str, is_async: bool) -> tuple[str, dict[str, Any]]:
    """The block and the names it reads, for ``build_hit(absent=...)``."""
    level = core.levels[0]
    assert level.inline is not None
    # Without stampede protection the flight is never shared: an empty map stands in.
    flights = core.flights.of(mode) if core.stampede else {}
    return _BLOCKS[core.threaded], {
        "_c_callable": callable, "_c_hasattr": hasattr, "_c_isinstance": isinstance,
        "_c_loading_get": _LOADING.get, "_c_loading_set": _LOADING.set,
        "_c_loading_reset": _LOADING.reset, "_c_check_reentrant": core.check_reentrant,
        "_c_mutex": core.mutex, "_c_flights": flights, "_c_stampede": core.stampede,
        "_c_invalidates": core.flights.of(a.OP_INVALIDATE),
        "_c_data": level.inline[1], "_c_core": core, "_c_Flight": Flight,
        "_c_tokens": core.guard.tokens, "_c_guard": core.guard,
        "_c_S_MISS": STAT_OF_EVENT[a.MISS], "_c_S_INSERTED": STAT_OF_EVENT[a.INSERTED],
        "_c_ident": core.ident, "_c_is_async": is_async, "_c_fail": fail,
        "_c_land_other": land_other, "_c_CacheEntry": CacheEntry, "_c_new": object.__new__,
        "_c_set_value": _SET_VALUE, "_c_set_cached_at": _SET_CACHED_AT, "_c_set_ttl": _SET_TTL,
        "_c_insert": level.insert, "_c_ACCEPTED": _ACCEPTED,
    }


def fail(core: Core, flight: Flight, exc: BaseException, is_async: bool) -> BaseException:
    """The leader's factory raised ``exc``: settle the flight with the error its callers
    get (returned, for the leader to raise). A cancelled aio leader abandons it instead,
    handing the load over to a waiter."""
    _LOADING.reset(flight.mark)
    error = exc
    if flight.op is _TRY and isinstance(exc, Exception):
        error = LoaderError(f"factory for key {flight.key!r} raised {exc!r}")
        error.__cause__ = exc
    if is_async and not isinstance(exc, Exception):
        _settle(core, flight, _ABANDONED, None)
    else:
        _settle(core, flight, None, error)
    return error


def land_other(core: Core, flight: Flight, value: Any, written: Any = _UNWRITTEN) -> CacheEntry[Any] | None:
    """The rest of a load that returned: ``None``, an entry from the factory, a load an
    invalidate overtook, a write the tier refused or failed (``written``: its outcome or
    exception). Settles the flight; returns what the caller gets."""
    result: CacheEntry[Any] | None = None
    error: BaseException | None = None
    try:
        if not (value is None and flight.op is _OPTIONAL):
            result = _store(core, flight, value, written)
    except BaseException as exc:  # a clock or tier bug: the waiters must not hang
        error = exc
    _settle(core, flight, result, error)
    if error is not None:
        raise error
    return result


def _store(core: Core, flight: Flight, value: Any, written: Any) -> CacheEntry[Any]:
    """``load_flow``'s write for one in-process tier (unless ``written`` already): the
    entry the caller gets, unstamped if it was not stored."""
    given = isinstance(value, CacheEntry)
    if flight.stale and written is _UNWRITTEN:
        return value if given else CacheEntry(value)
    entry = value.ensure_cached_at(core.now()) if given else CacheEntry(value, core.now())
    level, key = core.levels[0], flight.key
    outcome = written
    if written is _UNWRITTEN:
        try:
            outcome = level.insert(key, entry)
        except Exception as exc:
            outcome = exc
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, Exception):
            raise outcome
        core.report(level, a.INSERT_ERROR)
    else:
        core.report(level, a.INSERTED if outcome is _ACCEPTED else a.INSERT_REJECTED)
    if flight.stale:  # an invalidate overtook the write: undo it
        core.run_inline(core._remove([level], key))
    elif outcome is _ACCEPTED:
        return entry
    return value if given else CacheEntry(value)


def _settle(core: Core, flight: Flight, value: Any, error: BaseException | None) -> None:
    """Forget the flight as a write token and as the call to join; record its outcome;
    wake its waiters and the invalidates waiting for its write."""
    key = flight.key
    with core.mutex:
        core.guard.discard(flight)
        flight.value = value
        flight.error = error
        flight.writing = False
        done, flight.done = flight.done, None
        flights = core.flights.of(flight.op)
        if flights.get(key) is flight:
            del flights[key]
    if flight.signal is not None:
        flight.signal.set()
    if done is not None:
        done.set()
