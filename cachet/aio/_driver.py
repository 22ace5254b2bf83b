"""Runs a core flow by awaiting: the whole aio I/O layer (asyncio and trio via anyio)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio

from .._core.effects import Call, Fanout, Flow, Load


async def drive(flow: Flow, spawn: Callable[[Any], None]) -> Any:
    """Carry out each effect ``flow`` yields; return what it returns.

    A cancellation is thrown into the flow like any error, so its ``finally`` blocks
    release what it holds, then it propagates.
    """
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
                send = await effect.fn(*effect.args)  # type: ignore[union-attr]
            elif kind is Fanout:
                send = await _fanout(effect.calls)  # type: ignore[union-attr]
            elif kind is Load:
                send = effect.factory()  # type: ignore[union-attr]
                if inspect.isawaitable(send):
                    send = await send
            else:
                spawn(effect)
        except BaseException as exc:
            error = exc


async def _fanout(calls: list[Call]) -> list[Any]:
    """Run every call concurrently; each slot gets its result or its ``Exception``."""
    results: list[Any] = [None] * len(calls)

    async def one(i: int, call: Call) -> None:
        try:
            results[i] = await call.fn(*call.args)
        except Exception as exc:
            results[i] = exc

    if len(calls) == 1:
        await one(0, calls[0])
        return results
    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(one, i, call)
    return results
