"""The I/O-free heart: every decision about what a cache operation does (SPEC §2-§3).

The frontends (``cachet.sync``, ``cachet.aio``) only carry out what this decides:

1. A hit on the primary tier is one plain call, ``Core.hit`` (``hit.py``): the entry if
   it is fresh and not stale, else ``None``, meaning "take the slow path".
2. Every slow path is a generator flow yielding effects (``effects.py``) that the
   frontend's driver carries out: ``get_op``, ``load_op``, ``insert_op``,
   ``invalidate_op``, ``clear_op``. In-process tiers (``Level.direct``) are called
   inline; the rest are effects. Flows never raise a tier's own exception: they raise
   :class:`TierError` (or the factory's exception for loaders). One slow path is plain
   calls instead: a loader's miss on a stack of one in-process tier (``start_load``,
   ``finish_load``, ``fail_load``), whose only I/O is the factory; it calls the rules
   the flows call and hands anything unusual back to ``load_op``.
3. A copy stored in an upper tier (promotion, refresh) is stamped now and never
   outlives its source (``Level.copy_of``).
4. A value read or loaded before an invalidate, insert or clear of its key is never
   written after it (``WriteGuard``): a write that loses the race is undone, and an
   invalidate empties the primary tier last (``_remove``), so no read racing it can
   leave the old value there.
5. Coalescing is a flow here too (``_operation``): a waiter yields a wait on the
   leader's signal (a ``threading.Event`` or ``anyio.Event`` the frontend supplies).
   On a core that ``detach``-es (an entered aio cache) a shared load runs in a task of
   its own (``_detached``; ``detach_load`` on the plain path) and its leader waits too;
   a load that overran its timeout is joined (``_join_late``). Refresh dedup and
   back-off are bookkeeping here.
6. Resilience: fail-safe serves an expired entry instead of an error (``_serve_spare``);
   a timed load that overruns is finished by ``_late_flow``.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from functools import partial
from types import CoroutineType
from typing import Any

from . import atomic
from . import attributes as a
from .atomic import EXPIRE_NOW, entry_of
from .clock import Clock, SystemClock
from .effects import DETACHED, Call, Fanout, Flow, Load, LoadTimedOut, Spawn, Wait
from .entry import CacheEntry, new_entry
from .errors import (
    CacheError,
    LoaderError,
    LoaderTimeout,
    ReentrantLoadError,
    SerializationError,
    TierError,
    UnsupportedError,
)
from .freshness import EXPIRED, STALE
from .hit import make_hit
from .inflight import _ABANDONED, _LOADING, Flight, Flights, WriteGuard, WriteToken
from .level import Level
from .policy import FailSafe, InsertOutcome, InsertPolicy
from .stats import FIELDS, STAT_OF_EVENT, snapshot
from .tier import KEEP, Change

_S_MISS, _S_HIT = STAT_OF_EVENT[a.MISS], STAT_OF_EVENT[a.HIT]
_S_INSERTED, _S_REJECTED = STAT_OF_EVENT[a.INSERTED], STAT_OF_EVENT[a.INSERT_REJECTED]
_S_INSERT_ERROR = STAT_OF_EVENT[a.INSERT_ERROR]

ALWAYS = InsertPolicy.always()
ACCEPTED = InsertOutcome.ACCEPTED
REJECTED = InsertOutcome.REJECTED

# Loader modes.
PLAIN, TRY, OPTIONAL = a.OP_GET_OR_INSERT, a.OP_TRY_GET_OR_INSERT, a.OP_OPTIONALLY_GET_OR_INSERT
# Operations whose in-flight run an invalidate detaches (it may write the key back).
LOAD_OPS = (PLAIN, TRY, OPTIONAL)
# The loads of each mode that outlived their timeout and still run: callers join them.
LATE_OF = {mode: f"{mode}.late" for mode in LOAD_OPS}
READ_OPS = (a.OP_GET, *LOAD_OPS, *LATE_OF.values())
# Operations an insert detaches: calls after it see its value (or remove it).
WRITE_DETACHES = (*READ_OPS, a.OP_INVALIDATE)
_ALL: Any = object()  # "every key": what _remove clears

REQUEST_ID: ContextVar[int] = ContextVar("cachet_request_id", default=0)
_request_ids = itertools.count(1)
_logger = logging.getLogger(a.TARGET)
_ns = time.perf_counter_ns


def run_inline(flow: Flow) -> Any:
    """Run a flow that has no effect to ask for (every tier it touches is in process)."""
    try:
        effect = flow.send(None)
    except StopIteration as stop:
        return stop.value
    flow.close()
    raise AssertionError(f"a flow run inline yielded {effect!r}")


def refuse_coroutine(result: CoroutineType[Any, Any, Any]) -> None:
    """A factory returned a coroutine to a cache that does not await: close it (no
    "never awaited" warning) and say what to do."""
    name = result.__qualname__
    result.close()
    raise TypeError(
        f"the factory returned a coroutine ({name}): a cachet.sync.Cache does not await; "
        f"pass a plain function, or use a cachet.aio.Cache"
    )


def unhashable(key: Any) -> TypeError:
    """The error for a key that cannot be a cache key."""
    return TypeError(f"cache keys must be hashable; got a key of unhashable type {type(key).__name__}")


class ReadAhead:
    """A bulk read's answers from the tier at ``index``, each taken by its key's walk,
    with the write tokens begun before the read (``Core.get_many_flow``)."""

    __slots__ = ("entries", "index", "tokens")

    def __init__(self, index: int, tokens: dict[Hashable, WriteToken]) -> None:
        self.index = index
        self.entries: dict[Hashable, CacheEntry[Any] | None] = {}
        self.tokens = tokens

    def take_token(self, key: Hashable) -> WriteToken | None:
        return self.tokens.pop(key, None)

    def release(self, guard: WriteGuard) -> None:
        """End the tokens no walk took (a key served by a tier above, or joined)."""
        tokens, self.tokens = self.tokens, {}
        for token in tokens.values():
            guard.end(token)


class Core:
    """The decisions of one cache stack, shared by both frontends."""

    def __init__(
        self,
        levels: list[Level],
        clock: Clock,
        *,
        name: str,
        stampede: bool,
        reporter: Any,
        mutex: threading.Lock,
        handoff: bool,
        make_signal: Callable[[], Any],
        owner: Callable[[], int] | None = None,
        fail_safe: FailSafe | None = None,
        loader_timeouts: tuple[float | None, float | None] = (None, None),
        degraded: bool = False,
    ) -> None:
        self.levels = levels
        self.clock = clock
        self.now: Callable[[], float] = time.time if type(clock) is SystemClock else clock.now
        self.name = name
        self.stampede = stampede
        self.reporter = reporter
        self.mutex = mutex
        # A cancelled leader hands its shared call over to a waiter (aio), rather than
        # failing it for them (sync: only an interrupt stops a thread).
        self.handoff = handoff
        # Shared loads run in the background, not in their leader (set by an aio cache
        # while entered: it has a task group for them). See _operation.
        self.detach = False
        self.make_signal = make_signal  # threading.Event or anyio.Event: what waits wait on
        # Who runs a caller's load, for the re-entrancy check (check_reentrant): the
        # thread (sync: threading.get_ident), or None: the context's chain of loads (aio,
        # whose tasks share a thread).
        self.owner = owner
        self.fail_safe = fail_safe
        self.degraded = degraded  # a failing bottom tier (not the primary) reads as a miss
        # Soft: with a fail-safe value at hand, serve it after this long. Hard: give up.
        self.soft_timeout, self.hard_timeout = loader_timeouts
        self.flights = Flights(WRITE_DETACHES)  # every operation that can be shared
        self.invalidates = self.flights.of(a.OP_INVALIDATE)
        self.guard = WriteGuard(mutex)
        self.refreshing: set[tuple[int, Hashable]] = set()
        # A refresh that failed is retried only after its tier's ``retry_after``.
        self.refresh_backoff: dict[tuple[int, Hashable], float] = {}
        self.jitter = any(lv.jitter for lv in levels)
        self.random: Callable[[], float] = random.random  # jitter's source; tests may seed it
        self.counts = [[0] * len(FIELDS) for _ in levels]
        self.coalesced_waits = 0
        self.load_errors = 0  # failed loads no caller saw (report_load_error)
        self.ident = id(self)
        # Set by a frontend when a backplane is configured: called (sync) or awaited (aio)
        # as publish(op, key) after each local write; see _publish.
        self.publish: Callable[[str, Hashable], Any] | None = None
        # The primary tier's get; for a tier read in place, its mapping's (no LRU touch:
        # only a miss is acted on). Read by start_load.
        self.peek: Callable[[Hashable], Any] = levels[0].get if levels[0].inline is None else levels[0].inline[1].get
        # A loader's miss on one in-process tier, with nothing else to do but the factory,
        # runs as plain calls (start_load, finish_load) instead of a flow.
        self.direct_load = (len(levels) == 1 and levels[0].direct and reporter is None
                            and fail_safe is None and loader_timeouts == (None, None))
        # Rule 1: the primary tier's hit, one plain call (hit.py).
        self.hit = make_hit(levels[0], self.now, self.counts[0], reporter is not None)

    # -- telemetry ---------------------------------------------------------------------

    def report(self, level: Level, event: str, t0: int = 0, request_id: int | None = None, *,
               duration: int | None = None, count: bool = True) -> None:
        """Count ``event`` in the tier's stats (unless ``count`` is false) and, with
        telemetry on, emit it with the time since ``t0`` (or the given ``duration``)."""
        if count:
            stat = STAT_OF_EVENT.get(event)
            if stat is not None:
                self.counts[level.index][stat] += 1
        rep = self.reporter
        if rep is not None:
            rid = REQUEST_ID.get() if request_id is None else request_id
            if duration is None:
                duration = _ns() - t0 if t0 else 0
            rep.tier(rid, level.name, level.is_fallback, event, duration)

    def begin_operation(self, background: bool = False) -> tuple[Any, int]:
        """Give this operation a request id (0 for background work; telemetry on only).

        Returns what :meth:`end_operation` needs.
        """
        return REQUEST_ID.set(0 if background else next(_request_ids)), _ns()

    def end_operation(self, started: tuple[Any, int], op: str, coalesced: bool) -> None:
        token, t0 = started
        rid = REQUEST_ID.get()
        REQUEST_ID.reset(token)
        self.reporter.operation(rid, op, _ns() - t0, coalesced)

    def stats(self) -> dict[str, Any]:
        return snapshot([lv.name for lv in self.levels], self.counts, self.coalesced_waits, self.load_errors)

    def tier_error(self, level: Level, op: str, exc: BaseException) -> CacheError:
        """The error a failed tier operation raises: a ``TierError`` naming the tier,
        except that the tier's own ``TierError`` and encoding errors pass unchanged."""
        if isinstance(exc, TierError | SerializationError):
            return exc
        err = TierError(level.name, op, f"tier {level.name!r} failed during {op}: {exc!r}")
        err.__cause__ = exc
        return err

    # -- 5. operations: a frontend's slow paths, coalescing and re-entrancy -------------

    def check_reentrant(self, key: Hashable) -> None:
        """Refuse a load of ``key`` asked for by a factory of a load of ``key`` (of this
        cache): it would wait on itself forever."""
        owner = self.owner
        if owner is not None:
            if self.guard.owned(key, owner()):
                raise self._reentrant(key)
            return
        loading = _LOADING.get()
        while loading is not None:  # the loads this context is inside, innermost first
            ident, loading_key, loading = loading
            if ident == self.ident and loading_key == key:
                raise self._reentrant(key)

    def _reentrant(self, key: Hashable) -> ReentrantLoadError:
        return ReentrantLoadError(f"a factory of cache {self.name!r} asked it to load the key it is "
                                  f"loading ({key!r}); this would wait on itself forever")

    def get_op(self, key: Hashable, ahead: ReadAhead | None = None) -> Flow:
        """``get``'s slow path (the hit path missed); ``ahead``: a bulk read's answers.
        A read with a bulk read's answer is not shared: its answer was read before its
        flight would begin, so a caller joining it after a write could get what the
        write replaced."""
        return self._operation(a.OP_GET, key, partial(self.get_flow, key, ahead), ahead is None)

    def load_op(self, key: Hashable, factory: Callable[[], Any], mode: str) -> Flow:
        """A loader's slow path: ``mode`` is ``PLAIN``, ``TRY`` or ``OPTIONAL``."""
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        self.check_reentrant(key)
        return self._operation(mode, key, partial(self.load_flow, key, factory, mode), True)

    def insert_op(self, key: Hashable, value: Any) -> Flow:
        return self._operation(a.OP_INSERT, key, partial(self.insert_flow, key, value), False)

    def invalidate_op(self, key: Hashable) -> Flow:
        return self._operation(a.OP_INVALIDATE, key, partial(self.invalidate_flow, key), True)

    def clear_op(self) -> Flow:
        return self._operation(a.OP_CLEAR, _ALL, self.clear_flow, False)

    def _operation(self, op: str, key: Hashable, make_flow: Callable[[], Flow], share: bool) -> Flow:
        """A user's call, whole: the key checked, telemetry's operation event, and with
        stampede protection (``share``) one execution for concurrent callers of ``op``
        on ``key`` (SPEC §3). A waiter waits on the leader's signal and takes its
        outcome, an error included; a waiter that is cancelled just stops waiting.

        Who runs a shared call's work: on a core that ``detaches`` loads (an entered aio
        cache), a loader's leader spawns it in the background (:meth:`_detached`) and
        waits like the others, so no caller's cancellation stops it. Otherwise the
        leader runs it; one that is cancelled (not failed) on a core that hands over
        (``handoff``: aio) abandons the call, and each waiter wakes and joins again, so
        that one of them leads a new run and none sees another's cancellation."""
        if key is not _ALL:
            try:
                hash(key)
            except TypeError:
                raise unhashable(key) from None
        started = self.begin_operation() if self.reporter is not None else None
        coalesced = False
        try:
            if not (share and self.stampede):
                return (yield from make_flow())
            detach = self.detach and op in LOAD_OPS
            while True:
                with self.mutex:
                    flight, leader = self.flights.join(op, key, self.make_signal)
                    if leader and detach:  # the leader waits like the others
                        flight.signal = self.make_signal()
                        flight.leader_waits = True
                    elif leader:
                        break
                    else:
                        self.coalesced_waits += 1
                        coalesced = True
                if leader:
                    try:
                        yield Spawn(self._detached(flight, make_flow), DETACHED)
                    except BaseException as exc:  # no task group to run it in
                        self._settle(flight, None, exc if isinstance(exc, Exception) else self._closed_error(key))
                        raise
                try:
                    yield Call(flight.signal.wait, ())
                except BaseException:
                    self.stop_waiting(flight, leader)
                    raise
                if not flight.abandoned:
                    return flight.result()
            # The leader: settle the flight whatever happens, then wake the waiters.
            try:
                value = yield from make_flow()
            except Exception as exc:
                self._settle(flight, None, exc)
                raise
            except BaseException as exc:  # cancelled, interrupted
                if self.handoff:
                    self._settle(flight, _ABANDONED, None)
                else:
                    self._settle(flight, None, self._interrupted(key, exc))
                raise
            self._settle(flight, value, None)
            return value
        finally:
            if started is not None:
                self.end_operation(started, op, coalesced)

    def _detached(self, flight: Flight, make_flow: Callable[[], Flow]) -> Flow:
        """A shared load run in the background: it settles its flight however it ends
        and never raises, except the cancellation of a cache that is closing (its
        waiters are told so). A failure nobody waits for any more is reported."""
        try:
            value = yield from make_flow()
        except Exception as exc:
            unseen = self._unwatched(flight)
            self._settle(flight, None, exc)
            if unseen:
                self.report_load_error(flight.key, exc)
            return
        except BaseException:
            self._settle(flight, None, self._closed_error(flight.key))
            raise
        self._settle(flight, value, None)

    def _unwatched(self, flight: Flight) -> bool:
        """Nobody waits for ``flight`` any more: its failure must be reported."""
        with self.mutex:
            return flight.waiters <= 0 and not flight.leader_waits

    def stop_waiting(self, flight: Flight, leader: bool) -> None:
        """A caller waiting for ``flight`` gave up (cancelled): one fewer to tell, so that
        a failure nobody is left to see is reported (:meth:`report_load_error`)."""
        with self.mutex:
            if leader:
                flight.leader_waits = False
            else:
                flight.waiters -= 1

    def _interrupted(self, key: Hashable, exc: BaseException) -> CacheError:
        """What the waiters of a shared call get when its leader's thread was interrupted
        (``KeyboardInterrupt``, ``SystemExit``): not the interrupt, which was not theirs."""
        error = CacheError(f"the call sharing its load of {key!r} with this one was interrupted "
                           f"({type(exc).__name__}); call again")
        error.__cause__ = exc
        return error

    def _closed_error(self, key: Hashable) -> CacheError:
        return CacheError(f"cache {self.name!r} was closed while loading {key!r}")

    def report_load_error(self, key: Hashable, exc: BaseException) -> None:
        """A load whose caller is gone failed (a detached load nobody waits for, a timed
        load that finished late): count it, and tell telemetry or, with telemetry off,
        the ``cachet`` logger, so that it is never lost silently."""
        self.load_errors += 1
        if self.reporter is not None:
            self.report(self.levels[0], a.LOAD_ERROR, request_id=0, count=False)
        else:
            _logger.error("cache %r: a load of %r nobody waited for failed: %r", self.name, key, exc,
                          exc_info=exc)

    def _settle(self, flight: Flight, value: Any, error: BaseException | None) -> None:
        """Record a shared call's outcome and wake its waiters (``set`` is a plain call
        for both kinds of event)."""
        with self.mutex:
            signal = self.flights.settle(flight, value, error)
        if signal is not None:
            signal.set()

    def _background(self, flow: Flow) -> Flow:
        """Work no caller waits for (a refresh, a load that outlived its timeout): its
        telemetry carries request id 0 and operation ``cache.refresh``."""
        started = self.begin_operation(background=True) if self.reporter is not None else None
        try:
            return (yield from flow)
        finally:
            if started is not None:
                self.end_operation(started, a.OP_REFRESH, False)

    # -- 2. flows ----------------------------------------------------------------------

    def get_flow(self, key: Hashable, ahead: ReadAhead | None = None) -> Flow:
        return self._walk(key, 0, False, ahead=ahead)

    def _walk(self, key: Hashable, start: int, with_source: bool,
              loader: tuple[Callable[[], Any], str] | None = None,
              expired_out: list[tuple[CacheEntry[Any], Level]] | None = None,
              ahead: ReadAhead | None = None) -> Flow:
        """Read tiers from ``start`` down until one has the key fresh, then store copies
        of it in the tiers above that one. Returns the entry as the serving tier holds it
        (and that tier, ``with_source``). A loop, not a recursion: each effect passes
        through one generator frame however deep the stack. A stale hit starts a
        refresh: from the tiers below, else through ``loader`` (factory, mode) if given.

        With fail-safe on, the first expired entry still within ``max_stale`` is kept:
        if the last tier then fails, it is served instead of the error; a loader gets it
        through ``expired_out`` for when its factory fails."""
        levels = self.levels
        fail_safe = self.fail_safe
        spare: tuple[CacheEntry[Any], Level] | None = None
        last = len(levels) - 1
        reporting = self.reporter is not None
        found = source = token = None
        i = start
        try:
            while True:
                level = levels[i]
                t0 = _ns() if reporting else 0
                try:
                    if ahead is not None and ahead.index == i and key in ahead.entries:
                        entry = ahead.entries.pop(key)
                    elif level.direct:
                        entry = level.get(key)
                    else:
                        entry = yield Call(level.get, (key,))
                except Exception as exc:
                    self.report(level, a.GET_ERROR, t0)
                    if i == last:
                        if spare is None:
                            if self.degraded and i > 0:  # reported above; a miss
                                break
                            raise self.tier_error(level, "get", exc)  # noqa: B904 (cause set there)
                        found = yield from self._serve_spare(key, spare)
                        source = spare[1]
                        break
                    entry = None
                else:
                    if entry is None:
                        if reporting:
                            self.report(level, a.MISS, t0)
                        else:  # report()'s counting, inlined on this common path
                            self.counts[i][_S_MISS] += 1
                    else:
                        now = self.now()
                        state = level.judge(entry, now)
                        if state is not EXPIRED:
                            if reporting:
                                self.report(level, a.HIT, t0)
                            else:
                                self.counts[i][_S_HIT] += 1
                            # A stale hit is served, and refreshed from below or reloaded.
                            if state is STALE and (i < last or loader is not None):
                                yield from self._start_refresh(key, i, loader)
                            found, source = entry, level
                            break
                        self.report(level, a.EXPIRED, t0)
                        usable = fail_safe is not None and fail_safe.usable(entry, level, now)
                        if usable and spare is None:
                            spare = (entry, level)
                            if expired_out is not None:
                                expired_out.append(spare)
                        if level.eager and not usable:
                            yield from self._evict(level, key)
                if i == last:
                    break
                if token is None:  # anything read below may be copied up: guard the key
                    token = ahead.take_token(key) if ahead is not None else None
                    if token is None:
                        token = self.guard.begin(key)
                i += 1
            if found is not None and token is not None and found is not (spare and spare[0]):
                assert source is not None
                for j in range(i - 1, start - 1, -1):
                    yield from self._store_copy(key, levels[j], found, source, token)
        finally:
            if token is not None:
                self.guard.end(token)
        return (found, source) if with_source else found

    def _serve_spare(self, key: Hashable, spare: tuple[CacheEntry[Any], Level]) -> Flow:
        """Fail-safe: serve an expired entry instead of an error, and keep a copy of it
        in the primary tier for ``backoff`` so the failing store is not asked on every
        call. Returns the entry as its tier held it."""
        entry, level = spare
        assert self.fail_safe is not None
        self.report(level, a.FAIL_SAFE)
        top = self.levels[0]
        held = CacheEntry(entry.value, self.now(), self.fail_safe.backoff)
        try:
            if top.direct:
                top.insert(key, held)
            else:
                yield Call(top.insert, (key, held))
        except Exception:
            self.report(top, a.INSERT_ERROR)
        return entry

    def _evict(self, level: Level, key: Hashable) -> Flow:
        """Remove ``key`` from one tier (an expired entry, or a copy that lost a race);
        a failure is reported, never raised."""
        try:
            if level.direct:
                level.invalidate(key)
            else:
                yield Call(level.invalidate, (key,))
        except Exception:
            self.report(level, a.INVALIDATE_ERROR)

    def _store_copy(
        self, key: Hashable, level: Level, found: CacheEntry[Any], source: Level, token: WriteToken
    ) -> Flow:
        """Promote or refresh: store a fresh-stamped copy; never raises (SPEC §2.3)."""
        copy = level.copy_of(found, source, self.now(), self.random)
        if copy is None or not self.guard.enter_write(token):
            return False
        try:
            if not level.policy.accepts(copy):
                self.report(level, a.INSERT_REJECTED)
                return False
            t0 = _ns() if self.reporter is not None else 0
            try:
                if level.direct:
                    outcome = level.insert(key, copy)
                else:
                    outcome = yield Call(level.insert, (key, copy))
            except Exception:
                self.report(level, a.INSERT_ERROR, t0)
                return False
            if token.stale:  # an invalidate overtook the write: undo it
                yield from self._evict(level, key)
                return False
            self.report(level, a.INSERTED if outcome is ACCEPTED else a.INSERT_REJECTED, t0)
            return outcome is ACCEPTED
        finally:
            self.guard.exit_write(token)

    # -- refresh -----------------------------------------------------------------------

    def _start_refresh(self, key: Hashable, i: int,
                       loader: tuple[Callable[[], Any], str] | None) -> Flow:
        with self.mutex:
            if (i, key) in self.refreshing:
                return
            until = self.refresh_backoff.get((i, key))
            if until is not None:
                if self.now() < until:
                    return
                del self.refresh_backoff[(i, key)]
            self.refreshing.add((i, key))
        token = self.begin_load(key)  # an invalidate from now on cancels the refresh's write
        try:
            yield Spawn(self._background(self._refresh_flow(key, i, loader, token)),
                        self.levels[i].spawner)
        except Exception:
            self.guard.end(token)
            with self.mutex:
                self.refreshing.discard((i, key))
            self.report(self.levels[i], a.REFRESH_MISS)

    def _refresh_flow(self, key: Hashable, i: int,
                      loader: tuple[Callable[[], Any], str] | None, token: WriteToken) -> Flow:
        """Refresh tier ``i``'s entry: from the tiers below if one has it fresh, else by
        loading it again with the caller's factory (stale-while-revalidate)."""
        level = self.levels[i]
        failed = True
        try:
            found = source = None
            if i < len(self.levels) - 1:
                try:
                    found, source = yield from self._walk(key, i + 1, True)
                except Exception:
                    found = None
            if found is not None and source is not None:
                yield from self._store_copy(key, level, found, source, token)
                self.report(level, a.REFRESH_HIT, request_id=0)
                failed = False
                return
            if loader is not None:
                factory, mode = loader
                try:
                    result = yield Load(factory)
                    if type(result) is CoroutineType:
                        refuse_coroutine(result)
                except Exception:
                    result = None
                    mode = OPTIONAL  # a failed reload changes nothing
                if not (result is None and mode is OPTIONAL):
                    entry = result if isinstance(result, CacheEntry) else CacheEntry(result)
                    if not token.stale:
                        yield from self._write_all(key, entry, token)
                    self.report(level, a.REFRESH_HIT, request_id=0)
                    failed = False
                    return
            self.report(level, a.REFRESH_MISS, request_id=0)
        finally:
            self.guard.end(token)
            with self.mutex:
                self.refreshing.discard((i, key))
                if failed:
                    self._back_off(i, key, level)

    def _back_off(self, i: int, key: Hashable, level: Level) -> None:
        """Remember a failed refresh (under the mutex); the map is pruned as it grows."""
        now = self.now()
        backoff = self.refresh_backoff
        if len(backoff) >= 1024:
            for k in [k for k, until in backoff.items() if until <= now]:
                del backoff[k]
        backoff[(i, key)] = now + (level.retry_after or 0.0)

    # -- loaders -----------------------------------------------------------------------

    def load_flow(self, key: Hashable, factory: Callable[[], Any], mode: str) -> Flow:
        """``get_or_insert`` and friends: read through the tiers, else load and insert."""
        spare: list[tuple[CacheEntry[Any], Level]] = []
        found = yield from self._walk(key, 0, False, (factory, mode), spare)
        if found is not None:
            return found
        timeout = self.soft_timeout if spare and self.soft_timeout else self.hard_timeout
        if timeout is not None:  # a load of the key that outlived its timeout: join it
            with self.mutex:
                running = self.flights.find(LATE_OF[mode], key)
                if running is not None:
                    self.coalesced_waits += 1
            if running is not None:
                return (yield from self._join_late(key, mode, running, timeout, spare))
        owner = self.owner
        token = self.begin_load(key, None if owner is None else owner())
        mark = _LOADING.set((self.ident, key, _LOADING.get())) if owner is None else None
        handed_over = False  # a timed-out load's late flow owns the token
        try:
            try:
                if timeout is None:
                    result = yield Load(factory)
                else:
                    flight = Flight(LATE_OF[mode], key, None)  # joinable if it overruns
                    late = partial(self._late, key, mode, token, flight)
                    result = yield Load(factory, timeout, late)
            except LoadTimedOut:
                handed_over = True
                token.owner = None  # it goes on without this caller, who may ask again
                with self.mutex:  # callers from now on join it (unless it just ended)
                    if not flight.settled:
                        flight.signal = self.make_signal()
                        self.flights.of(flight.op)[key] = flight
                if spare:  # soft timeout (or a hard one with fail-safe): serve the old value
                    return (yield from self._serve_spare(key, spare[0]))
                raise self._timed_out(key, timeout) from None
            except Exception as exc:
                if spare:  # fail-safe: an expired value beats an error
                    return (yield from self._serve_spare(key, spare[0]))
                error = self._load_error(key, mode, exc)
                if error is exc:
                    raise
                raise error from exc
            finally:
                if mark is not None:
                    _LOADING.reset(mark)
            return (yield from self._store_loaded(key, result, mode, token))
        finally:
            if not handed_over:
                self.guard.end(token)

    # -- a load as plain calls -----------------------------------------------------------

    def start_load(self, key: Hashable, factory: Callable[[], Any], mode: str) -> Flight | None:
        """:meth:`load_op` on a stack of one in-process tier (``direct_load``), as plain
        calls: the frontend calls this, then the factory, then :meth:`finish_load` with
        its result or :meth:`fail_load` with its exception. Returns the load's flight
        (with stampede protection, the one others join; always the load's write token),
        or ``None`` when there is more to do than one factory call (a load of the key in
        flight, an entry in the tier, a backplane to tell, a key or factory to refuse):
        then drive :meth:`load_op`. The rules are ``load_flow``'s."""
        if self.publish is not None or not callable(factory):
            return None
        owner = self.owner
        if owner is None:  # the context's chain of loads (aio)
            loading = _LOADING.get()
            if loading is not None:
                self.check_reentrant(key)
        flights = self.flights.by_op[mode]
        self.mutex.acquire()  # not ``with``: half its cost on CPython 3.11
        try:
            # A load of the key running or joinable: the flow's, unless it is our own.
            if key in flights or (owner is not None and key in self.guard.tokens):
                if owner is not None and self.guard.owned(key, owner()):
                    raise self._reentrant(key)
                return None
            flight = Flight(mode, key, None, None if owner is None else owner())
            if self.stampede:
                flights[key] = flight
            self._register_load(flight)
        except TypeError:  # unhashable: load_op says so
            return None
        finally:
            self.mutex.release()
        level = self.levels[0]
        try:
            entry = self.peek(key)
        except Exception as exc:
            self.report(level, a.GET_ERROR)
            error = self.tier_error(level, "get", exc)
            self._end_load(flight, None, error)
            raise error  # noqa: B904 (cause set there)
        if entry is not None:  # judged by the flow: give the key back to it
            self._end_load(flight, _ABANDONED, None)
            return None
        self.counts[0][_S_MISS] += 1
        if owner is None:
            flight.mark = _LOADING.set((self.ident, key, loading))
        return flight

    def finish_load(self, flight: Flight, result: Any) -> Any:
        """The factory of :meth:`start_load`'s load returned ``result``: store it as
        ``load_flow`` would, settle, and return the caller's entry."""
        if flight.mark is not None:  # None: detached, the caller reset it (detach_load)
            _LOADING.reset(flight.mark)
        level = self.levels[0]
        try:
            if (result is None or isinstance(result, CacheEntry) or type(result) is CoroutineType
                    or level.policy is not ALWAYS or level.jitter):
                entry = run_inline(self._store_loaded(flight.key, result, flight.op, flight))
            else:  # _store_loaded and _write_all for a plain value and one tier, written out
                flight.writing = True  # marked, then checked: see WriteGuard.enter_write
                entry = None
                if not flight.stale:
                    stamped = new_entry(result, self.now(), None)
                    outcome, _ = self.insert_direct(level, flight.key, stamped)
                    if flight.stale:  # an invalidate overtook the write: undo it
                        run_inline(self._remove([level], flight.key))
                    elif outcome is ACCEPTED:
                        entry = stamped
                if entry is None:
                    entry = CacheEntry(result)
        except BaseException as exc:
            self._end_load(flight, None, exc)
            raise
        self._end_load(flight, entry, None)
        return entry

    def fail_load(self, flight: Flight, exc: BaseException) -> BaseException:
        """The factory of :meth:`start_load`'s load raised ``exc``: settle, and return
        what the caller raises (see :meth:`_load_error`). A cancelled leader on a core
        that hands over leaves the call to its waiters, as in :meth:`_operation`."""
        if flight.mark is not None:
            _LOADING.reset(flight.mark)
        if not isinstance(exc, Exception):
            if self.handoff:
                self._end_load(flight, _ABANDONED, None)
            else:
                self._end_load(flight, None, self._interrupted(flight.key, exc))
            return exc
        error = self._load_error(flight.key, flight.op, exc)
        self._end_load(flight, None, error)
        return error

    def detach_load(self, flight: Flight, start: Callable[[], None]) -> None:
        """The load of :meth:`start_load` goes on in a task of its own (a core that
        ``detach``-es), which ``start()`` makes: its caller, who started it, now only
        waits for it, as a joiner does. The flight is marked detached first (an eagerly
        started task may finish it at once); the task is made while this context still
        holds the load's mark (its copy keeps it for the factory's re-entrancy check),
        which is then reset here, in the caller's context."""
        mark, flight.mark = flight.mark, None
        flight.leader_waits = True  # (a plain store: the loop thread owns this flight now)
        try:
            start()
        finally:
            _LOADING.reset(mark)

    def signal_for(self, flight: Flight) -> Any:
        """The signal to wait on for ``flight``, made now if no joiner made one; ``None``
        if it has settled (a quick load needs no signal at all)."""
        with self.mutex:
            if flight.settled:
                return None
            if flight.signal is None:
                flight.signal = self.make_signal()
            return flight.signal

    def end_detached(self, flight: Flight, result: Any, exc: BaseException | None) -> None:
        """A detached load of :meth:`start_load` ended with ``result`` or ``exc``: store
        and settle as :meth:`finish_load` or :meth:`fail_load` do; never raises. A
        cancellation (the cache is closing) reaches the waiters as a ``CacheError``; a
        failure nobody waits for any more is reported."""
        unseen = self._unwatched(flight)
        try:
            if exc is None:
                self.finish_load(flight, result)
                return
            raise self.fail_load(flight, exc if isinstance(exc, Exception) else self._closed_error(flight.key))
        except Exception as error:
            if unseen and isinstance(exc, Exception | None):
                self.report_load_error(flight.key, error)

    def _end_load(self, flight: Flight, value: Any, error: BaseException | None) -> None:
        """End a plain-call load in one section: its write over (``exit_write``), its
        token released, its flight settled; then wake whoever waits on either."""
        self.mutex.acquire()
        try:
            flight.writing = False
            done, flight.done = flight.done, None
            self.guard.discard(flight)
            signal = self.flights.settle(flight, value, error)
        finally:
            self.mutex.release()
        if signal is not None:
            signal.set()
        if done is not None:
            done.set()

    def _load_error(self, key: Hashable, mode: str, exc: BaseException) -> BaseException:
        """What a failed factory raises: for ``try_get_or_insert`` a ``LoaderError`` with
        the original as its cause, otherwise the original, unchanged."""
        if mode is TRY and isinstance(exc, Exception):
            error = LoaderError(f"factory for key {key!r} raised {exc!r}")
            error.__cause__ = exc
            return error
        return exc

    def _store_loaded(self, key: Hashable, result: Any, mode: str, token: WriteToken) -> Flow:
        """A factory's ``result``: ``None`` caches nothing for ``optionally_*``; a value is
        stamped now and written (not if an invalidate or insert came first). Returns the
        entry the caller gets: as stored, or unstamped if no tier stored it. A coroutine
        is refused (only a sync frontend lets one through: it does not await)."""
        if type(result) is CoroutineType:
            refuse_coroutine(result)
        if result is None and mode is OPTIONAL:
            return None
        if token.stale:  # an invalidate or insert came first: nothing is written
            return result if isinstance(result, CacheEntry) else CacheEntry(result)
        entry = result if isinstance(result, CacheEntry) else new_entry(result, self.now(), None)
        outcome, stamped, _ = yield from self._write_all(key, entry, token)
        if outcome is ACCEPTED:
            return stamped
        return entry if entry is result else CacheEntry(result)

    def begin_load(self, key: Hashable, owner: int | None = None) -> WriteToken:
        """The write token of a load (or reload) of ``key``, which starts now; ``owner``:
        the thread running a caller's load (see ``check_reentrant``)."""
        token = WriteToken(key, owner)
        with self.mutex:
            self._register_load(token)
        return token

    def _register_load(self, token: WriteToken) -> None:
        """Hold ``token`` for a load that starts now (the caller holds the mutex). An
        invalidate already in flight is detached: one called from now on must remove
        this load's value, so it may not share an invalidate that began before it."""
        self.guard.add(token)
        self.invalidates.pop(token.key, None)

    def _timed_out(self, key: Hashable, timeout: float | None) -> LoaderTimeout:
        return LoaderTimeout(f"loading {key!r} took longer than {timeout}s; it goes on in the "
                             f"background and its result will be cached")

    def _join_late(self, key: Hashable, mode: str, flight: Flight, timeout: float,
                   spare: list[tuple[CacheEntry[Any], Level]]) -> Flow:
        """A load of ``key`` outlived its timeout and still runs (``flight``): wait for
        it, at most ``timeout``, rather than ask the backend again. Its outcome is this
        call's; past the timeout, the fail-safe value or :class:`LoaderTimeout`, as for a
        load of one's own."""
        yield Wait(flight.signal, timeout)
        if not flight.settled:
            if spare:
                return (yield from self._serve_spare(key, spare[0]))
            raise self._timed_out(key, timeout)
        if flight.error is not None:
            error = self._load_error(key, mode, flight.error)
            if error is flight.error:
                raise error
            raise error from flight.error
        return flight.value

    def _late(self, key: Hashable, mode: str, token: WriteToken, flight: Flight, value: Any,
              error: BaseException | None) -> Flow:
        return self._background(self._late_flow(key, mode, token, flight, value, error))

    def _late_flow(self, key: Hashable, mode: str, token: WriteToken, flight: Flight, value: Any,
                   error: BaseException | None) -> Flow:
        """A load that outlived its timeout finished: cache its value (unless an
        invalidate came first), as the load itself would have, or report its error;
        then hand its outcome to the callers that joined it (``_join_late``)."""
        entry = None
        try:
            if error is None:
                entry = yield from self._store_loaded(key, value, mode, token)
            else:
                self.report_load_error(key, error)
        except Exception as exc:  # a tier failed storing it: tell the joiners, report it
            error = exc
            self.report_load_error(key, exc)
        except BaseException:  # cancelled: the cache is closing
            error = self._closed_error(key)
            raise
        finally:
            self.guard.end(token)
            self._settle(flight, entry, error)

    # -- writes ------------------------------------------------------------------------

    def insert_flow(self, key: Hashable, value: Any) -> Flow:
        entry = value if isinstance(value, CacheEntry) else CacheEntry(value)
        yield from self._wait(self.guard.supersede(key, self.make_signal))
        self._detach_writes(key)
        try:
            outcome, _, error = yield from self._write_all(key, entry, None)
        finally:  # and nothing begun while it was being written, either
            self._detach_writes(key)
        if error is not None:
            raise error
        return outcome

    def _write_all(self, key: Hashable, entry: CacheEntry[Any], token: WriteToken | None) -> Flow:
        """Stamp, ask each tier's policy, write to the accepting tiers; never raises. A
        write for a ``token`` (a load's or a refresh's) is a write section of the guard:
        skipped if an invalidate came first, undone if one overtook it.

        Returns ``(outcome, stamped entry, first error by tier order)``.
        """
        if token is not None and not self.guard.enter_write(token):
            return REJECTED, entry, None
        try:
            stamped = entry.ensure_cached_at(self.now())
            targets: list[Level] = []
            for level in self.levels:
                if level.policy is ALWAYS or level.policy.accepts(stamped):
                    targets.append(level)
                else:
                    self.report(level, a.INSERT_REJECTED)
            if not targets:
                return REJECTED, stamped, None
            if len(targets) == 1 and targets[0].direct and not self.jitter and self.reporter is None:
                outcome, error = self.insert_direct(targets[0], key, stamped)  # the common case
            else:
                if token is None and len(targets) > 1 and targets[0].index == 0:
                    # A user's insert, rule 4: below first; then mark the reads that may
                    # have found the old value there (and wait out their copies); the
                    # primary tier last, so no promotion of the old value lands after it.
                    low, low_took = yield from self._insert_each(targets[1:], key, stamped)
                    yield from self._wait(self.guard.supersede(key, self.make_signal))
                    top, top_took = yield from self._insert_each(targets[:1], key, stamped)
                    results, took = top + low, top_took + low_took
                else:
                    results, took = yield from self._insert_each(targets, key, stamped)
                outcome, error = REJECTED, None
                for level, result, ns in zip(targets, results, took, strict=True):
                    if isinstance(result, BaseException):
                        self.report(level, a.INSERT_ERROR, duration=ns)
                        error = error or self.tier_error(level, "insert", result)
                    elif result is ACCEPTED:
                        self.report(level, a.INSERTED, duration=ns)
                        outcome = ACCEPTED
                    else:
                        self.report(level, a.INSERT_REJECTED, duration=ns)
            if token is not None and token.stale:  # lost a race with an invalidate: undo
                yield from self._remove(targets, key)
                return REJECTED, entry, error
        finally:
            if token is not None:
                self.guard.exit_write(token)
        if outcome is ACCEPTED and self.publish is not None:
            yield from self._publish("insert", key)
        return outcome, stamped, error

    def _insert_each(self, targets: list[Level], key: Hashable, stamped: CacheEntry[Any]) -> Flow:
        """Insert ``stamped`` into each target (jittered per tier if configured); see :meth:`_each`."""
        if self.jitter:
            per_level = [(key, lv.jittered(stamped, self.random)) for lv in targets]
            return (yield from self._each(targets, "insert", (), per_level))
        return (yield from self._each(targets, "insert", (key, stamped)))

    def insert_direct(self, level: Level, key: Hashable, entry: CacheEntry[Any]) -> tuple[InsertOutcome, CacheError | None]:
        """Write to one in-process tier, telemetry off (so counted here); never raises."""
        counts = self.counts[level.index]
        try:
            outcome = level.insert(key, entry)
        except Exception as exc:
            counts[_S_INSERT_ERROR] += 1
            return REJECTED, self.tier_error(level, "insert", exc)
        counts[_S_INSERTED if outcome is ACCEPTED else _S_REJECTED] += 1
        return outcome, None

    # -- framework operations (atomic.py) ---------------------------------------------

    def add_op(self, key: Hashable, value: Any, ttl: float | None) -> Flow:
        return self.update_op(a.OP_ADD, key, atomic.adding(self.levels[-1], self.now(), value, ttl))

    def touch_op(self, key: Hashable, ttl: float | None) -> Flow:
        return self.update_op(a.OP_TOUCH, key, atomic.touching(self.levels[-1], self.now(), ttl))

    def delete_op(self, key: Hashable) -> Flow:
        return self.update_op(a.OP_DELETE, key, atomic.deleting(self.levels[-1], self.now()))

    def incr_op(self, key: Hashable, delta: int | float) -> Flow:
        atomic.check_delta(delta)
        return self._incr_flow(key, delta)

    def _incr_flow(self, key: Hashable, delta: int | float) -> Flow:
        change = atomic.incrementing(self.levels[-1], self.now(), delta)
        result = yield from self.update_op(a.OP_INCR, key, change)
        if result is atomic.MISSING:
            raise KeyError(key)
        if type(result) is atomic.NotANumber:
            raise TypeError(f"cannot add {delta!r} to the value of {key!r}, a {type(result.value).__name__}; "
                            f"incr and decr need an int or a float")
        return result

    def update_op(self, op: str, key: Hashable, change: Change) -> Flow:
        """``add``, ``touch``, ``incr``/``decr``, ``delete``: ``change`` (a rule of
        ``atomic.py``) applied by the bottom tier; returns the change's result."""
        return self._operation(op, key, partial(self.update_flow, op, key, change), False)

    def update_flow(self, op: str, key: Hashable, change: Change) -> Flow:
        """One atomic step on the bottom tier, the stack's authority (the one that other
        processes share); the tiers above it drop their copy, as an invalidate's do
        (rule 4), so the next read promotes what the step left. Like any write, it wins
        over the loads and promotions begun before it."""
        bottom = self.levels[-1]
        if bottom.update is None:
            raise UnsupportedError(
                f"{op} needs an atomic update, which tier {bottom.name!r} "
                f"({type(bottom.tier).__name__}) does not have")
        wrote = False

        def recorded(stored: CacheEntry[Any] | None) -> tuple[Any, Any]:
            nonlocal wrote
            new, result = change(stored)
            wrote = new is not KEEP  # the last call is the one a retrying tier kept
            return new, result

        yield from self._wait(self.guard.supersede(key, self.make_signal))
        self._detach_writes(key)
        try:
            t0 = _ns() if self.reporter is not None else 0
            try:
                if bottom.direct:
                    result = bottom.update(key, recorded)
                else:
                    result = yield Call(bottom.update, (key, recorded))
            except Exception as exc:
                self.report(bottom, a.INSERT_ERROR, t0)
                raise self.tier_error(bottom, op, exc)  # noqa: B904 (cause set there)
            if wrote:
                self.report(bottom, a.INSERTED, t0)
                if len(self.levels) > 1:
                    results, took = yield from self._remove(self.levels[:-1], key, wait=True)
                    for level, res, ns in zip(self.levels[:-1], results, took, strict=True):
                        if isinstance(res, BaseException):
                            self.report(level, a.INVALIDATE_ERROR, duration=ns)
                            raise self.tier_error(level, op, res)
        finally:
            self._detach_writes(key)
        if wrote and self.publish is not None:
            yield from self._publish("invalidate", key)
        return result

    def insert_ttl_op(self, key: Hashable, value: Any, ttl: float | None) -> Flow:
        """``insert`` with a per-call ttl (``atomic.per_call_ttl``): ``EXPIRE_NOW``
        removes the key, and the write counts as accepted."""
        if ttl is EXPIRE_NOW:
            yield from self.invalidate_op(key)
            return ACCEPTED
        return (yield from self.insert_op(key, entry_of(value, ttl)))

    # The bulk operations: each key's own operation in turn, as one flow (so one call
    # of the frontend's driver).

    def get_many_flow(self, keys: list[Hashable], hit: Callable[[Hashable], Any]) -> Flow:
        """``get`` of each key, by key (the keys found). The keys the hit path misses are
        read ahead from the first tier below the primary that reads many keys in one
        round trip (``get_many``: Redis's ``MGET``), then each takes its walk, which
        uses that answer instead of reading the tier again. If the bulk read fails, each
        key's walk reads (and reports) on its own."""
        for key in keys:
            try:
                hash(key)
            except TypeError:
                raise unhashable(key) from None
        found: dict[Hashable, CacheEntry[Any]] = {}
        missed = []
        for key in keys:
            entry = hit(key)
            if entry is None:
                missed.append(key)
            else:
                found[key] = entry
        ahead = yield from self._read_ahead(missed)
        try:
            for key in missed:
                entry = yield from self.get_op(key, ahead)
                if entry is not None:
                    found[key] = entry
        finally:
            if ahead is not None:
                ahead.release(self.guard)
        return {key: found[key] for key in keys if key in found}

    def _read_ahead(self, keys: list[Hashable]) -> Flow:
        """One ``get_many`` of ``keys`` from the first tier below the primary that has
        one, with a write token per key begun before it; ``None`` if there is no such
        tier, fewer than two keys, or the read failed."""
        found = next(((lv.index, lv.get_many) for lv in self.levels[1:] if lv.get_many is not None), None)
        distinct = list(dict.fromkeys(keys))
        if found is None or len(distinct) < 2:
            return None
        index, get_many = found
        ahead = ReadAhead(index, {key: self.guard.begin(key) for key in distinct})
        try:
            entries = yield Call(get_many, (distinct,))
        except Exception:
            ahead.release(self.guard)
            return None
        except BaseException:
            ahead.release(self.guard)
            raise
        ahead.entries.update(zip(distinct, entries, strict=True))
        return ahead

    def insert_many_flow(self, items: list[tuple[Hashable, Any]], ttl: float | None) -> Flow:
        outcomes: dict[Hashable, InsertOutcome] = {}
        for key, value in items:
            outcomes[key] = yield from self.insert_ttl_op(key, value, ttl)
        return outcomes

    def invalidate_many_flow(self, keys: list[Hashable]) -> Flow:
        for key in keys:
            yield from self.invalidate_op(key)

    def _detach_writes(self, key: Hashable) -> None:
        with self.mutex:  # calls from now on see this write: they join nothing older
            self.flights.detach(key, WRITE_DETACHES)

    # -- other processes (a backplane) ---------------------------------------------------

    def _publish(self, op: str, key: Hashable) -> Flow:
        """Tell the other processes sharing the lower tiers that ``key`` changed here, so
        they drop their in-process copies. A failed publish is reported, never raised:
        the write itself succeeded."""
        if self.publish is None:
            return
        try:
            yield Call(self.publish, (op, key))
        except Exception:
            self.report(self.levels[0], a.PUBLISH_ERROR)

    def evict_local(self, key: Hashable) -> None:
        """Another process changed ``key``: drop this process's in-process copy (the primary
        tier, when it is in-process) and keep in-flight loads from writing it back."""
        self.guard.supersede(key)
        self._detach(key)
        top = self.levels[0]
        if top.direct:
            top.invalidate(key)

    def clear_local(self) -> None:
        """Another process cleared the cache (or we lost track of what it did)."""
        self.guard.supersede_all()
        self._detach(_ALL)
        top = self.levels[0]
        if top.direct:
            top.clear()

    def _each(self, levels: list[Level], op: str, args: tuple[Any, ...],
              per_level: list[tuple[Any, ...]] | None = None) -> Flow:
        """Run tier operation ``op`` on each level (with ``args``, or ``per_level[n]``):
        in-process tiers directly, the others as one effect (concurrent in aio). Returns
        each result or the ``Exception`` it raised, in level order, and (telemetry on)
        each call's own duration in ns; never raises."""
        timed = self.reporter is not None
        results: list[Any] = [None] * len(levels)
        durations = [0] * len(levels)
        remote: list[tuple[int, Call]] = []
        for n, level in enumerate(levels):
            fn = getattr(level, op)
            if per_level is not None:
                args = per_level[n]
            if level.direct:
                t0 = _ns() if timed else 0
                try:
                    results[n] = fn(*args)
                except Exception as exc:
                    results[n] = exc
                if timed:
                    durations[n] = _ns() - t0
            else:
                remote.append((n, Call(fn, args)))
        if len(remote) == 1:
            n, call = remote[0]
            t0 = _ns() if timed else 0
            try:
                results[n] = yield call
            except Exception as exc:
                results[n] = exc
            if timed:
                durations[n] = _ns() - t0
        elif remote:
            answers = yield Fanout([call for _, call in remote], timed)
            for (n, _), answer in zip(remote, answers, strict=True):
                if timed:
                    results[n], durations[n] = answer
                else:
                    results[n] = answer
        return results, durations

    def invalidate_flow(self, key: Hashable) -> Flow:
        yield from self._fan(a.INVALIDATED, a.INVALIDATE_ERROR, "invalidate", key)
        if self.publish is not None:
            yield from self._publish("invalidate", key)

    def clear_flow(self) -> Flow:
        yield from self._fan(a.CLEARED, a.CLEAR_ERROR, "clear", _ALL)
        if self.publish is not None:
            yield from self._publish("clear", None)

    def _detach(self, key: Hashable) -> None:
        """Callers arriving from now on do not join reads begun before (they start afresh)."""
        with self.mutex:
            if key is _ALL:
                self.flights.detach_all(READ_OPS)
            else:
                self.flights.detach(key, READ_OPS)

    def _remove(self, levels: list[Level], key: Hashable, wait: bool = False) -> Flow:
        """Invalidate ``key`` (or clear, for ``_ALL``) in ``levels``, so that no read
        racing it can leave the old value behind: mark in-flight copies and loads stale,
        empty the lower tiers, mark again (a read that began meanwhile may have found
        the old value below), then empty the primary tier, last. A promotion into the
        primary either lands before that last step (and is removed) or sees its mark.
        With ``wait`` (an invalidate or clear of the user's), return only once every
        write that was under way has finished and undone itself, so that no older value
        is ever seen after it. Returns each level's result and duration, in ``levels``
        order."""
        signal = self.make_signal if wait else None
        if key is _ALL:
            supersede = partial(self.guard.supersede_all, signal)
        else:
            supersede = partial(self.guard.supersede, key, signal)
        op, args = ("clear", ()) if key is _ALL else ("invalidate", (key,))
        waits = supersede()
        lower = [lv for lv in levels if lv.index > 0]
        top = [lv for lv in levels if lv.index == 0]
        results, took = yield from self._each(lower, op, args)
        if top:
            waits += supersede()
            top_results, top_took = yield from self._each(top, op, args)
            results, took = top_results + results, top_took + took
        yield from self._wait(waits)
        return results, took

    def _wait(self, signals: list[Any]) -> Flow:
        """Wait for each signal (a write racing this one to finish)."""
        for signal in signals:
            yield Call(signal.wait, ())

    def _fan(self, ok: str, bad: str, op: str, key: Hashable) -> Flow:
        """The user's invalidate or clear. Reads in flight are detached at its start and
        again at its end: one that began meanwhile may have read the old value, and no
        call after the invalidate may join it."""
        self._detach(key)
        try:
            results, took = yield from self._remove(self.levels, key, wait=True)
        finally:
            self._detach(key)
        error = None
        for level, result, ns in zip(self.levels, results, took, strict=True):
            if isinstance(result, BaseException):
                self.report(level, bad, duration=ns)
                error = error or self.tier_error(level, op, result)
            else:
                self.report(level, ok, duration=ns)
        if error is not None:
            raise error

    def len_flow(self) -> Flow:
        level = self.levels[0]
        if level.length is None:
            raise UnsupportedError(f"tier {level.name!r} cannot count its entries")
        try:
            n = yield Call(level.length, ())
        except UnsupportedError:
            raise
        except Exception as exc:
            raise self.tier_error(level, "len", exc)  # noqa: B904 (cause set there)
        return int(n)
