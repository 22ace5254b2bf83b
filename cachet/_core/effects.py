"""What a core flow asks its frontend to do. Each frontend's driver carries these out.

A flow is a generator that yields one of these and receives the result (or has the
exception thrown in). The sync driver calls; the aio driver awaits. How a flow is
stepped (send the last result or throw the last error, until it returns) is
:class:`Steps`, here once: each driver only carries out the effects.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any


class Call:
    """Call a tier operation: ``fn(*args)`` (sync) or ``await fn(*args)`` (aio)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args


class Fanout:
    """Run every call (in order for sync, concurrently for aio); receive a list with each
    result or the ``Exception`` it raised, in the same order (``timed``: as pairs with
    each call's own duration in ns)."""

    __slots__ = ("calls", "timed")

    def __init__(self, calls: list[Call], timed: bool = False) -> None:
        self.calls = calls
        self.timed = timed


class Load:
    """Call the user's factory (for aio: awaited if it returns an awaitable).

    With a ``timeout``, the factory runs where it can outlive the wait (a worker thread,
    the cache's task group); if it has not finished in time the driver throws
    :class:`LoadTimedOut` into the flow and, when the factory does finish, runs the flow
    ``late(value, error)`` in the background.
    """

    __slots__ = ("factory", "late", "timeout")

    def __init__(self, factory: Callable[[], Any], timeout: float | None = None,
                 late: Callable[[Any, BaseException | None], Flow] | None = None) -> None:
        self.factory = factory
        self.timeout = timeout
        self.late = late


class Wait:
    """Wait for ``signal`` (a ``threading.Event`` or ``anyio.Event``) to be set, at most
    ``timeout`` seconds; receive nothing (the flow looks at what the wait was for)."""

    __slots__ = ("signal", "timeout")

    def __init__(self, signal: Any, timeout: float) -> None:
        self.signal = signal
        self.timeout = timeout


class LoadTimedOut(Exception):
    """Thrown into a flow by a driver: a timed :class:`Load` did not finish in time."""


DETACHED: Any = object()
"""A :class:`Spawn`'s spawner for a detached shared load: the aio cache's group of
detached loads, which closing the cache cancels."""


class Spawn:
    """Run ``flow`` in the background on ``spawner`` (``None``: the cache's own executor or
    task group; :data:`DETACHED`: its group of detached loads)."""

    __slots__ = ("flow", "spawner")

    def __init__(self, flow: Flow, spawner: Any) -> None:
        self.flow = flow
        self.spawner = spawner


Effect = Call | Fanout | Load | Spawn | Wait
Flow = Generator[Effect, Any, Any]


class Steps:
    """A flow as its driver sees it: iterate to get each effect it yields; after each,
    :meth:`reply` with what carrying it out gave or :meth:`fail` with what it raised
    (thrown into the flow, whose ``finally`` blocks clean up and which re-raises). When
    the iteration ends, :attr:`value` is what the flow returned."""

    __slots__ = ("_error", "_flow", "_reply", "value")

    def __init__(self, flow: Flow) -> None:
        self._flow = flow
        self._reply: Any = None
        self._error: BaseException | None = None
        self.value: Any = None

    def __iter__(self) -> Steps:
        return self

    def __next__(self) -> Effect:
        error, self._error = self._error, None
        try:
            return self._flow.send(self._reply) if error is None else self._flow.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            raise

    def reply(self, result: Any) -> None:
        self._reply = result

    def fail(self, error: BaseException) -> None:
        self._reply, self._error = None, error
