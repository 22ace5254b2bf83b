"""What a core flow asks its frontend to do. Each frontend's driver carries these out.

A flow is a generator that yields one of these and receives the result (or has the
exception thrown in). The sync driver calls; the aio driver awaits.
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
