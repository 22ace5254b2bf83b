"""Runs a core flow by calling: the whole sync I/O layer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._core.effects import Call, Fanout, Flow, Load, Spawn, Steps, Wait


class Driver:
    """Carries out the effects of a cache's flows: each is a plain call here. ``spawn``
    runs a :class:`Spawn` in the background; ``timed_load`` a :class:`Load` that has a
    timeout (see ``Cache._timed_load``)."""

    __slots__ = ("_do", "_timed_load")

    def __init__(self, spawn: Callable[[Spawn], None], timed_load: Callable[[Load], Any]) -> None:
        self._timed_load = timed_load
        self._do: dict[type, Callable[[Any], Any]] = {
            Call: _call, Fanout: _fanout, Load: self._load, Wait: _wait, Spawn: spawn}

    def run(self, flow: Flow) -> Any:
        """Carry out each effect ``flow`` yields; return what it returns."""
        steps = Steps(flow)
        do = self._do
        for effect in steps:
            try:
                steps.reply(do[type(effect)](effect))
            except BaseException as exc:
                steps.fail(exc)
        return steps.value

    def _load(self, effect: Load) -> Any:
        return effect.factory() if effect.timeout is None else self._timed_load(effect)


def _call(effect: Call) -> Any:
    return effect.fn(*effect.args)


def _wait(effect: Wait) -> None:
    effect.signal.wait(effect.timeout)


def _fanout(effect: Fanout) -> list[Any]:
    attempt = _timed if effect.timed else _attempt
    return [attempt(call) for call in effect.calls]


def _attempt(call: Call) -> Any:
    try:
        return call.fn(*call.args)
    except Exception as exc:
        return exc


def _timed(call: Call) -> tuple[Any, int]:
    t0 = time.perf_counter_ns()
    result = _attempt(call)
    return result, time.perf_counter_ns() - t0
