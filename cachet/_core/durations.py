"""Durations: float seconds or ``timedelta``, validated where they enter."""

from __future__ import annotations

import math
from datetime import timedelta

Duration = float | int | timedelta


def to_seconds(d: Duration, what: str, *, allow_zero: bool = False) -> float:
    """Convert ``d`` to float seconds, raising ``ValueError`` that names ``what`` if invalid."""
    if isinstance(d, timedelta):
        s = d.total_seconds()
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        s = float(d)
    else:
        raise TypeError(f"{what} must be seconds (float) or a timedelta, not {type(d).__name__}")
    if math.isnan(s) or s < 0 or (s == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be {bound} seconds, got {d!r}")
    return s


def optional_seconds(d: Duration | None, what: str) -> float | None:
    return None if d is None else to_seconds(d, what)
