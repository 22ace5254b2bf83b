"""Runs a core flow by awaiting: the whole aio I/O layer (asyncio and trio via anyio)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any

import anyio

from .._core.effects import Call, Fanout, Flow, Load, Wait


async def drive(flow: Flow, spawn: Callable[[Any], None],
                timed_load: Callable[[Load], Awaitable[Any]] | None = None) -> Any:
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
                send = effect.fn(*effect.args)  # type: ignore[union-attr]
                if type(send) is CoroutineType:  # an async tier (or one run in a thread)
                    send = await send
            elif kind is Fanout:
                send = await _fanout(effect.calls, effect.timed)  # type: ignore[union-attr]
            elif kind is Load:
                if effect.timeout is not None and timed_load is not None:  # type: ignore[union-attr]
                    send = await timed_load(effect)  # type: ignore[arg-type]
                else:
                    send = effect.factory()  # type: ignore[union-attr]
                    if hasattr(send, "__await__"):  # a coroutine function's (or any awaitable)
                        send = await send
            elif kind is Wait:
                with anyio.move_on_after(effect.timeout):  # type: ignore[union-attr]
                    await effect.signal.wait()  # type: ignore[union-attr]
            else:
                spawn(effect)
        except BaseException as exc:
            error = exc


async def _fanout(calls: list[Call], timed: bool) -> list[Any]:
    """Run every call concurrently; each slot gets its result or its ``Exception``.

    Inline tiers answer at once; only the coroutines of async tiers are awaited, in a
    task group when there are several.
    """
    results: list[Any] = []
    took = [0] * len(calls)
    pending: list[tuple[int, Any]] = []
    for i, call in enumerate(calls):
        t0 = time.perf_counter_ns()
        try:
            result = call.fn(*call.args)
        except Exception as exc:
            result = exc
        if type(result) is CoroutineType:
            pending.append((i, result))
        else:
            took[i] = time.perf_counter_ns() - t0
        results.append(result)

    async def one(i: int, coro: Any) -> None:
        t0 = time.perf_counter_ns()
        try:
            results[i] = await coro
        except Exception as exc:
            results[i] = exc
        took[i] = time.perf_counter_ns() - t0

    if len(pending) == 1:
        await one(*pending[0])
    elif pending:
        async with anyio.create_task_group() as tg:
            for i, coro in pending:
                tg.start_soon(one, i, coro)
    return list(zip(results, took, strict=True)) if timed else results
