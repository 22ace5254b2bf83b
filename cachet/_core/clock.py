"""Clocks: every TTL, TTR and timestamp decision reads time through one of these."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Protocol, runtime_checkable

from .durations import to_seconds


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float``: wall-clock seconds, like ``time.time()``."""

    def now(self) -> float: ...


class SystemClock:
    """The real wall clock (``time.time()``)."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to, so tests never sleep.

    >>> clock = ManualClock(100.0)
    >>> clock.advance(5); clock.now()
    105.0
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, duration: float | timedelta) -> None:
        """Move forward by ``duration`` (seconds or ``timedelta``; may be zero, never negative)."""
        self._now += to_seconds(duration, "advance", allow_zero=True)

    def set(self, t: float) -> None:
        """Jump to ``t``; going backwards is allowed (to test clock skew)."""
        self._now = float(t)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
