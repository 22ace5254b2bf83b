"""Runs a core flow by awaiting: the whole aio I/O layer (asyncio and trio via anyio)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any

import anyio

from .._core.effects import Call, Fanout, Flow, Load, Spawn, Steps, Wait


class Driver:
    """Carries out the effects of a cache's flows, awaiting what can wait. ``spawn`` runs
    a :class:`Spawn` in the background; ``timed_load`` a :class:`Load` that has a timeout
    (see ``Cache._timed_load``). A cancellation is thrown into the flow like any error,
    so its ``finally`` blocks release what it holds, then it propagates."""

    __slots__ = ("_do", "_spawn", "_timed_load")

    def __init__(self, spawn: Callable[[Spawn], None],
                 timed_load: Callable[[Load], Awaitable[Any]]) -> None:
        self._spawn, self._timed_load = spawn, timed_load
        self._do: dict[type, Callable[[Any], Awaitable[Any]]] = {
            Call: _call, Fanout: _fanout, Load: self._load, Wait: _wait, Spawn: self._start}

    async def run(self, flow: Flow) -> Any:
        """Carry out each effect ``flow`` yields; return what it returns."""
        steps = Steps(flow)
        do = self._do
        for effect in steps:
            try:
                steps.reply(await do[type(effect)](effect))
            except BaseException as exc:
                steps.fail(exc)
        return steps.value

    async def _load(self, effect: Load) -> Any:
        if effect.timeout is not None:
            return await self._timed_load(effect)
        value = effect.factory()
        if hasattr(value, "__await__"):  # a coroutine function's (or any awaitable)
            value = await value
        return value

    async def _start(self, effect: Spawn) -> None:
        self._spawn(effect)


async def _call(effect: Call) -> Any:
    result = effect.fn(*effect.args)
    if type(result) is CoroutineType:  # an async tier (or one run in a thread)
        result = await result
    return result


async def _wait(effect: Wait) -> None:
    with anyio.move_on_after(effect.timeout):
        await effect.signal.wait()


async def _fanout(effect: Fanout) -> list[Any]:
    """Run every call concurrently; each slot gets its result or its ``Exception``.

    Inline tiers answer at once; only the coroutines of async tiers are awaited, in a
    task group when there are several.
    """
    calls = effect.calls
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
    return list(zip(results, took, strict=True)) if effect.timed else results
