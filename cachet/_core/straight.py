"""Straight-line paths: a loader's whole miss on a one-tier stack, and a get's read of
the second tier of a two-tier stack, each in the hit's frame.

A flow (``stack.py``) costs a generator, a driver loop and a frame per step. A load on a
stack whose only tier is in process has no I/O for the frontend to carry out but the
factory itself, so ``Core.make_hit(loader=mode)`` generates the loader method with this
block in place of its miss (``hitpath.py`` does the generating): lead a flight (or wait
on the one in flight), call (or await) the factory, stamp, store, settle, each step
written out, not called. Every
frame is ~5% of a load, so the bookkeeping of ``Flights`` and ``WriteGuard`` is written
out here too. Anything unusual leaves the block:

- an entry in the tier (expired or stale), a backplane to tell, a factory that is not
  callable, a leader that was cancelled while we waited: the frontend's general loader
  (``miss``), which runs ``Core.load_flow``;
- a factory error or cancellation: :func:`fail`;
- ``None``, a ``CacheEntry``, a write refused or overtaken by an invalidate:
  :func:`land_other`.

The rules are those of ``Core.load_flow`` (the behaviour suite runs both paths); the
flight is the load's write token, so an invalidate racing the load wins here too.

The get (:func:`get_block`) is ``Core.get_flow`` for a stack of an in-process tier over
any other, telemetry and fail-safe off: lead the read (stampede protection), read the
second tier (the one I/O, called or awaited), then check its freshness, promote a copy
into the first tier (a write section of the guard, undone if an invalidate overtook it)
and settle, written out. A read error or a cancellation goes to :func:`read_failed`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Hashable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ..telemetry import attributes as a
from .entry import CacheEntry, Unfrozen
from .errors import LoaderError
from .inflight import _ABANDONED, _LOADING, Flight
from .policy import InsertOutcome, InsertPolicy
from .stats import STAT_OF_EVENT as _STAT

if TYPE_CHECKING:
    from .stack import Core

_ACCEPTED = InsertOutcome.ACCEPTED
_UNWRITTEN: Any = object()
_FLOW: Any = object()  # "leave the straight path"
_OPTIONAL, _TRY = a.OP_OPTIONALLY_GET_OR_INSERT, a.OP_TRY_GET_OR_INSERT

# The load's block, in parts: the two critical sections run under the core's mutex when
# the core is shared by threads (cachet.sync, or a backplane's subscriber thread), and as
# they are on an event loop's thread (cachet.aio without a backplane: no other thread
# touches the core).
_START = """\
if not _c_callable(_c_factory):
    return {miss}
_c_loading = _c_loading_get()
if _c_loading is not None:
    _c_check_reentrant(_c_key)
"""
_LEAD = """\
_c_flight = _c_flights.get(_c_key)
_c_lead = False
if _c_flight is not None:  # join the load in flight (Flights.join, written out)
    if _c_flight.signal is None:
        _c_flight.signal = _c_make_signal()
    _c_flight.waiters += 1
    _c_core.coalesced_waits += 1
elif _c_key in _c_data or _c_core.publish is not None:
    _c_flight = _c_FLOW
else:
    _c_flight = _c_Flight(_c_mode, _c_key, None)
    _c_lead = True
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
if _c_flight is _c_FLOW:
    return {miss}
if not _c_lead:  # a waiter, as in the frontends' _run
    {await_}_c_flight.signal.wait()
    if _c_flight.abandoned:  # its leader was cancelled: start over
        return {miss}
    return _c_flight.result()
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
_c_result = _c_new(_c_Unfrozen)  # CacheEntry(value, now) at half the cost: entry.new_entry
_c_result.value = _c_value
_c_result.cached_at = _c_now()
_c_result.ttl = None
_c_result.__class__ = _c_CacheEntry
try:
    _c_outcome = _c_insert(_c_key, _c_result)
except BaseException as _c_exc:
    return _c_land_other(_c_core, _c_flight, _c_value, _c_exc)
if _c_outcome is not _c_ACCEPTED or _c_flight.stale:
    return _c_land_other(_c_core, _c_flight, _c_value, _c_outcome)
_c_counts[_c_S_INSERTED] += 1
"""
# The settle and the end are the same for both blocks: ``_c_result`` is what the caller gets.
_SETTLE = """\
if _c_tokens.get(_c_key) is _c_flight:
    del _c_tokens[_c_key]
else:
    _c_guard.discard(_c_flight)
_c_flight.value = _c_result
_c_flight.writing = False
if _c_flights.get(_c_key) is _c_flight:
    del _c_flights[_c_key]
"""
_END = """\
if _c_flight.signal is not None:
    _c_flight.signal.set()
if _c_flight.done is not None:
    _c_flight.done.set()
return _c_result
"""


def _blocks(start: str, lead: str, middle: str, settle: str, end: str, locked: bool) -> str:
    """A block of the template: ``lead`` and ``settle`` run under the core's mutex when
    the core is shared by threads, as they are on an event loop's thread. (``acquire``
    and ``try``/``finally`` rather than ``with``: half the cost on CPython 3.11.)"""
    def section(code: str) -> str:
        if not locked:
            return code
        return ("_c_acquire()\ntry:\n" + textwrap.indent(code, "    ")
                + "finally:\n    _c_release()\n")

    return textwrap.indent(start + section(lead) + middle + section(settle) + end, " " * 8)


def _common(core: Core, is_async: bool) -> dict[str, Any]:
    """The names both blocks read."""
    return {
        "_c_acquire": getattr(core.mutex, "acquire", None),
        "_c_release": getattr(core.mutex, "release", None),
        "_c_stampede": core.stampede, "_c_core": core,
        "_c_Flight": Flight, "_c_tokens": core.guard.tokens, "_c_guard": core.guard,
        "_c_S_MISS": _STAT[a.MISS], "_c_S_INSERTED": _STAT[a.INSERTED],
        "_c_is_async": is_async, "_c_CacheEntry": CacheEntry, "_c_new": object.__new__,
        "_c_Unfrozen": Unfrozen,
        "_c_insert": core.levels[0].insert, "_c_ACCEPTED": _ACCEPTED,
    }


_GET_START = """\
if _c_key in _c_flights:
    _c_flight = None
else:
    _c_flight = _c_Flight(_c_op, _c_key, None)
    if _c_stampede:
        _c_flights[_c_key] = _c_flight
    if _c_key in _c_tokens:
        _c_guard.add(_c_flight)
    else:
        _c_tokens[_c_key] = _c_flight
    _c_counts[_c_S_MISS] += 1
"""
_GET_READ = """\
if _c_flight is None:
    return {miss}
try:
    _c_result = _c_read(_c_key)
    if _c_type(_c_result) is _c_Coroutine:  #[async]
        _c_result = {await_}_c_result  #[async]
    if _c_result is not None:
        _c_t = _c_now()
        _c_ttl = _c_result.ttl
        if _c_ttl is None:  #[low_ttl]
            _c_ttl = _c_low_ttl  #[low_ttl]
        _c_at = _c_result.cached_at
        if _c_ttl is not None and (_c_at is None or _c_at > _c_t or _c_t - _c_at > _c_ttl):
            _c_low_counts[_c_S_EXPIRED] += 1
            _c_result = None
            try:  #[eager]
                _c_gone = _c_low_invalidate(_c_key)  #[eager]
                if _c_type(_c_gone) is _c_Coroutine:  #[eager,async]
                    {await_}_c_gone  #[eager,async]
            except Exception:  #[eager]
                _c_low_counts[_c_S_ERROR] += 1  #[eager]
        else:
            _c_low_counts[_c_S_HIT] += 1
    else:
        _c_low_counts[_c_S_MISS] += 1
except BaseException as _c_exc:
    raise _c_read_failed(_c_core, _c_flight, _c_exc, _c_is_async)
if _c_result is not None:
    if _c_ttl is None:  # the copy: stamped now, never outliving its source
        _c_left = None
    else:
        _c_left = 0.0 if _c_at is None else _c_ttl - (_c_t - _c_at)
    # An invalidate that came first means no copy (flows: enter_write says no).
    if (_c_left is None or _c_left > 0) and not _c_flight.stale:
        _c_counts[_c_S_REJECTED] += 1  #[refuses]
        _c_copy = _c_new(_c_Unfrozen)  # see entry.new_entry  #[!refuses]
        _c_copy.value = _c_result.value  #[!refuses]
        _c_copy.cached_at = _c_t  #[!refuses]
        _c_copy.ttl = _c_left  #[!refuses,!top_ttl]
        _c_copy.ttl = _c_top_ttl if _c_left is None else min(_c_top_ttl, _c_left)  #[!refuses,top_ttl]
        _c_copy.__class__ = _c_CacheEntry  #[!refuses]
        _c_flight.writing = True  # marked, then checked: see WriteGuard.enter_write  #[!refuses]
        if not _c_accepts(_c_copy):  #[!refuses,accepts]
            _c_counts[_c_S_REJECTED] += 1  #[!refuses,accepts]
        elif not _c_flight.stale:  #[!refuses,accepts]
        if not _c_flight.stale:  #[!refuses,!accepts]
            try:  #[!refuses]
                _c_outcome = _c_insert(_c_key, _c_copy)  #[!refuses]
            except Exception:  #[!refuses]
                _c_outcome = None  #[!refuses]
                _c_counts[_c_S_ERROR] += 1  #[!refuses]
            if _c_flight.stale:  # an invalidate overtook the write: undo it  #[!refuses]
                _c_undo(_c_core, _c_key)  #[!refuses]
            elif _c_outcome is _c_ACCEPTED:  #[!refuses]
                _c_counts[_c_S_INSERTED] += 1  #[!refuses]
            elif _c_outcome is not None:  #[!refuses]
                _c_counts[_c_S_REJECTED] += 1  #[!refuses]
"""
_TAG = re.compile(r"\s*#\[([!\w,]+)\]$")


def _select(code: str, flags: dict[str, bool]) -> str:
    """``code`` for one build: a line tagged ``#[a,!b]`` stays (untagged) only when flag
    ``a`` is on and ``b`` off, so what a cache's settings rule out is never run."""
    lines = []
    for line in code.splitlines(keepends=True):
        tag = _TAG.search(line)
        if tag is not None:
            if not all(not flags[t[1:]] if t[0] == "!" else flags[t] for t in tag[1].split(",")):
                continue
            line = line[:tag.start()] + "\n"
        lines.append(line)
    return "".join(lines)


def straight_gets(core: Core) -> bool:
    """Whether ``core``'s get can take the straight path: an in-process tier (with a hit
    path) over one other, no jitter, no telemetry, no fail-safe."""
    levels = core.levels
    return (len(levels) == 2 and levels[0].direct and levels[0].inline is not None
            and not core.jitter and core.reporter is None and core.fail_safe is None)


def get_block(core: Core, is_async: bool) -> tuple[str, dict[str, Any]]:
    """The get's block and the names it reads, for ``build_hit(absent=...)``."""
    top, low = core.levels
    # A backplane's subscriber thread touches an aio core too (Core.evict_local).
    locked = core.threaded or core.publish is not None
    read = _select(_GET_READ, {
        "async": is_async, "low_ttl": low.ttl is not None, "eager": low.eager,
        "refuses": top.policy is InsertPolicy.never(), "top_ttl": top.ttl is not None,
        "accepts": top.policy is not InsertPolicy.always(),
    })
    return _blocks("", _GET_START, read, _SETTLE, _END, locked), {
        **_common(core, is_async), "_c_op": a.OP_GET,
        "_c_flights": core.flights.of(a.OP_GET) if core.stampede else {},
        "_c_read": low.get, "_c_low_ttl": low.ttl, "_c_low_eager": low.eager,
        "_c_low_invalidate": low.invalidate, "_c_low_counts": core.counts[1],
        "_c_top_ttl": top.ttl, "_c_read_failed": read_failed, "_c_undo": _undo,
        "_c_accepts": top.policy.accepts,
        "_c_type": type, "_c_Coroutine": CoroutineType,
        "_c_S_HIT": _STAT[a.HIT], "_c_S_EXPIRED": _STAT[a.EXPIRED],
        "_c_S_ERROR": _STAT[a.GET_ERROR], "_c_S_REJECTED": _STAT[a.INSERT_REJECTED],
    }


def read_failed(core: Core, flight: Flight, exc: BaseException, is_async: bool) -> BaseException:
    """The second tier's read raised ``exc``: count it, settle the read with the
    ``TierError`` its callers get (returned, for the leader to raise); a cancelled aio
    leader abandons it instead."""
    level = core.levels[1]
    if is_async and not isinstance(exc, Exception):
        _settle(core, flight, _ABANDONED, None)
        return exc
    if isinstance(exc, Exception):
        core.report(level, a.GET_ERROR)
        exc = core.tier_error(level, "get", exc)
    _settle(core, flight, None, exc)
    return exc


def _undo(core: Core, key: Hashable) -> None:
    core.run_inline(core._remove([core.levels[0]], key))


def straight_loads(core: Core) -> bool:
    """Whether ``core`` can load on the straight path: one in-process tier that stores
    whatever it is given as given (no insert policy, no jitter), no telemetry, no hard
    loader timeout. (Fail-safe needs an expired entry, which sends a load to the flow.)"""
    levels = core.levels
    return (len(levels) == 1 and levels[0].direct and levels[0].inline is not None
            and levels[0].policy is InsertPolicy.always() and not core.jitter
            and core.reporter is None and core.hard_timeout is None)


def load_block(core: Core, mode: str, is_async: bool) -> tuple[str, dict[str, Any]]:
    """The loader's block and the names it reads, for ``build_hit(absent=...)``."""
    level = core.levels[0]
    assert level.inline is not None
    locked = core.threaded or core.publish is not None  # as in get_block
    return _blocks(_START, _LEAD, _LOAD, _SETTLE, _END, locked), {
        **_common(core, is_async), "_c_callable": callable, "_c_hasattr": hasattr,
        "_c_isinstance": isinstance, "_c_loading_get": _LOADING.get,
        "_c_loading_set": _LOADING.set, "_c_loading_reset": _LOADING.reset,
        "_c_check_reentrant": core.check_reentrant,
        # Without stampede protection the flight is never shared: an empty map stands in.
        "_c_flights": core.flights.of(mode) if core.stampede else {},
        "_c_invalidates": core.flights.of(a.OP_INVALIDATE), "_c_data": level.inline[1],
        "_c_ident": core.ident, "_c_fail": fail, "_c_land_other": land_other,
        "_c_make_signal": core.make_signal, "_c_FLOW": _FLOW,
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
    if written is _UNWRITTEN:
        outcome: Any = core.insert_direct(level, key, entry)[0]
    elif isinstance(written, BaseException):
        if not isinstance(written, Exception):
            raise written
        outcome = None
        core.report(level, a.INSERT_ERROR)
    else:
        outcome = written
        core.report(level, a.INSERTED if outcome is _ACCEPTED else a.INSERT_REJECTED)
    if flight.stale:  # an invalidate overtook the write: undo it
        _undo(core, key)
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
