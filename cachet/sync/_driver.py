"""Runs a core flow by calling: the whole sync I/O layer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._core.effects import Call, Fanout, Flow, Load, Wait


def drive(flow: Flow, spawn: Callable[[Any], None],
          timed_load: Callable[[Load], Any] | None = None) -> Any:
    """Carry out each effect ``flow`` yields; return what it returns. ``timed_load`` runs a
    :class:`Load` that has a timeout (see ``Cache._timed_load``)."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        send = error = None
        try:
            kind = type(effect)
            if kind is Call:
                send = effect.fn(*effect.args)  # type: ignore[union-attr]
            elif kind is Fanout:
                attempt = _timed if effect.timed else _attempt  # type: ignore[union-attr]
                send = [attempt(call) for call in effect.calls]  # type: ignore[union-attr]
            elif kind is Load:
                if effect.timeout is None or timed_load is None:  # type: ignore[union-attr]
                    send = effect.factory()  # type: ignore[union-attr]
                else:
                    send = timed_load(effect)  # type: ignore[arg-type]
            elif kind is Wait:
                effect.signal.wait(effect.timeout)  # type: ignore[union-attr]
            else:
                spawn(effect)
        except BaseException as exc:  # thrown into the flow, which cleans up and re-raises
            error = exc


def _attempt(call: Call) -> Any:
    try:
        return call.fn(*call.args)
    except Exception as exc:
        return exc


def _timed(call: Call) -> tuple[Any, int]:
    t0 = time.perf_counter_ns()
    result = _attempt(call)
    return result, time.perf_counter_ns() - t0
