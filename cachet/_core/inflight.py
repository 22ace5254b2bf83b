"""Bookkeeping for work in flight: coalesced calls, loads that may write back, refreshes.

Every record here is removed when its call ends, whatever happened, so the maps hold
only what is running now and never grow without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

# The loads the current context is inside, as a chain (cache id, key, outer chain): a
# tuple per load, no set to copy. Read by ``Core.check_reentrant`` on a core whose loads
# share threads (aio); a sync core asks the loads' tokens whose thread runs them instead
# (``WriteToken.owner``), which costs no context copy per load.
_Loading = tuple[int, Hashable, "_Loading | None"]
_LOADING: ContextVar[_Loading | None] = ContextVar("cachet_loading", default=None)

_PENDING: Any = object()
_ABANDONED: Any = object()


class WriteToken:
    """Held by a load or promotion while it runs; marked stale by a later write or invalidate.

    ``writing`` is set while its holder writes (between its last look at ``stale`` and
    the undo of a write that lost); an invalidate that finds it set waits on ``done``.
    ``owner`` is the thread running a caller's load (sync cores; ``None`` otherwise).
    """

    __slots__ = ("done", "key", "owner", "stale", "writing")

    def __init__(self, key: Hashable, owner: int | None = None) -> None:
        self.key = key
        self.stale = False
        self.writing = False
        self.done: Any = None
        self.owner = owner


class Flight(WriteToken):
    """One shared execution of ``(operation, key)`` and its outcome for every waiter.

    A load run as plain calls (``Core.start_load``) is also its own write token, and
    ``mark`` holds its place in the chain of loads this context is inside. ``waiters``
    counts the callers that joined it and still wait; ``leader_waits``, whether the
    caller that started a detached run (``Core._detached``) still waits too.
    """

    __slots__ = ("error", "leader_waits", "mark", "op", "signal", "value", "waiters")

    def __init__(self, op: str, key: Hashable, signal: Any, owner: int | None = None) -> None:
        self.key = key
        self.stale = False
        self.writing = False
        self.done = None
        self.owner = owner
        self.op = op
        # A threading.Event or anyio.Event, made by the first waiter (an uncontended call
        # never pays for one) and set by the leader when the call settles.
        self.signal = signal
        self.value: Any = _PENDING
        self.error: BaseException | None = None
        self.waiters = 0
        self.leader_waits = False
        self.mark: Any = None

    @property
    def settled(self) -> bool:
        """The call has an outcome (a value, an error, or it was abandoned)."""
        return self.value is not _PENDING

    @property
    def abandoned(self) -> bool:
        """The leader was cancelled before an outcome: a waiter should lead a new run."""
        return self.value is _ABANDONED

    def result(self) -> Any:
        """The shared outcome, raised as ``Future.result()`` does if it was an error."""
        if self.error is not None:
            raise self.error
        return self.value


class Flights:
    """The coalesced calls: one map per operation that can be shared, keyed by cache key
    (no tuple to build and hash per call)."""

    __slots__ = ("by_op",)

    def __init__(self, ops: tuple[str, ...]) -> None:
        self.by_op: dict[str, dict[Hashable, Flight]] = {op: {} for op in ops}

    def of(self, op: str) -> dict[Hashable, Flight]:
        """The map of ``op``'s flights."""
        return self.by_op[op]

    def find(self, op: str, key: Hashable) -> Flight | None:
        return self.by_op[op].get(key)

    def join(self, op: str, key: Hashable, make_signal: Callable[[], Any]) -> tuple[Flight, bool]:
        """The flight for ``(op, key)`` and whether the caller leads it."""
        flights = self.by_op[op]
        flight = flights.get(key)
        if flight is not None:
            if flight.signal is None:
                flight.signal = make_signal()
            flight.waiters += 1
            return flight, False
        flight = flights[key] = Flight(op, key, None)
        return flight, True

    def settle(self, flight: Flight, value: Any, error: BaseException | None) -> Any:
        """Record the outcome, forget the flight (unless a newer one replaced it), and
        return the signal to set (``None``: nobody waits)."""
        flight.value = value
        flight.error = error
        flights = self.by_op[flight.op]
        if flights.get(flight.key) is flight:
            del flights[flight.key]
        return flight.signal

    def detach(self, key: Hashable, ops: tuple[str, ...]) -> None:
        """Callers arriving from now on start afresh; current waiters keep their flight."""
        for op in ops:
            self.by_op[op].pop(key, None)

    def detach_all(self, ops: tuple[str, ...]) -> None:
        for op in ops:
            self.by_op[op].clear()

    def __len__(self) -> int:
        return sum(len(flights) for flights in self.by_op.values())


class WriteGuard:
    """Closes the invalidate-during-load race (no ABA): a value read or loaded before an
    invalidate, insert or clear of its key is never written after it.

    ``tokens`` maps a key to its one token, or to a list when several are held (rare):
    the common case then costs one dict store and one delete.
    """

    __slots__ = ("_mutex", "tokens")

    def __init__(self, mutex: AbstractContextManager[Any]) -> None:
        self._mutex = mutex
        self.tokens: dict[Hashable, WriteToken | list[WriteToken]] = {}

    def begin(self, key: Hashable) -> WriteToken:
        token = WriteToken(key)
        with self._mutex:
            self.add(token)
        return token

    def end(self, token: WriteToken) -> None:
        with self._mutex:
            self.discard(token)

    def add(self, token: WriteToken) -> None:
        """Register ``token`` (the caller holds the mutex)."""
        held = self.tokens.get(token.key)
        if held is None:
            self.tokens[token.key] = token
        elif type(held) is list:
            held.append(token)
        else:
            self.tokens[token.key] = [held, token]  # type: ignore[list-item]

    def discard(self, token: WriteToken) -> None:
        """Forget ``token`` (the caller holds the mutex)."""
        held = self.tokens.get(token.key)
        if held is token:
            del self.tokens[token.key]
        elif type(held) is list and token in held:
            held.remove(token)
            if len(held) == 1:
                self.tokens[token.key] = held[0]

    def enter_write(self, token: WriteToken) -> bool:
        """About to write for ``token``: ``False`` if it is already stale (do not write).
        Marked first, checked second: an invalidate either comes before the check (and
        nothing is written) or sees the mark (and waits, see :meth:`supersede`)."""
        token.writing = True
        if token.stale:
            self.exit_write(token)
            return False
        return True

    def exit_write(self, token: WriteToken) -> None:
        """The write (and its undo, if it lost) is over: wake the invalidates waiting."""
        with self._mutex:
            token.writing = False
            done, token.done = token.done, None
        if done is not None:
            done.set()

    def supersede(self, key: Hashable, make_signal: Callable[[], Any] | None = None) -> list[Any]:
        """Mark ``key``'s tokens stale. With ``make_signal``, also return a signal for each
        token in the middle of a write, set when that write (and its undo) is over: an
        invalidate waits on them so that no older value can land after it returns."""
        with self._mutex:
            held = self.tokens.get(key)
            return [] if held is None else _mark_stale(held, make_signal)

    def supersede_all(self, make_signal: Callable[[], Any] | None = None) -> list[Any]:
        with self._mutex:
            waits: list[Any] = []
            for held in self.tokens.values():
                waits += _mark_stale(held, make_signal)
            return waits

    def owned(self, key: Hashable, owner: int) -> bool:
        """Whether ``owner`` (a thread) runs a load of ``key`` now. Reads a snapshot of
        the key's tokens, without the mutex: only ``owner`` adds or ends its own."""
        held = self.tokens.get(key)
        if held is None:
            return False
        return any(token.owner == owner for token in (tuple(held) if isinstance(held, list) else (held,)))

    def __len__(self) -> int:
        return len(self.tokens)


def _mark_stale(held: WriteToken | list[WriteToken], make_signal: Callable[[], Any] | None) -> list[Any]:
    waits = []
    for token in held if isinstance(held, list) else (held,):
        token.stale = True
        if make_signal is not None and token.writing:
            if token.done is None:
                token.done = make_signal()
            waits.append(token.done)
    return waits
