"""Fault injection for tiers: random errors, delays and hangs, reproducible from a seed.

Wrap any tier to see how a cache (and the code around it) behaves when its storage
misbehaves::

    from cachet.testing import ChaosTier, MockTier

    l2 = ChaosTier(MockTier(), error_rate=0.1, delay=(0.0, 0.002), hang_rate=0.01, seed=7)
    cache = Cache.builder().memory(100).fallback(Cache.builder().storage(l2)).build()
    ...
    l2.release()   # let every hung operation go on
    l2.close()     # and stop hanging from now on

:class:`ChaosTier` wraps a sync tier and is itself a sync tier (the aio frontend runs it
in worker threads: it blocks). :class:`AsyncChaosTier` is a coroutine tier: it wraps an
async tier, or a sync one that never blocks (memory, ``MockTier``), and sleeps and hangs
with anyio, so it works on asyncio and trio without threads.

Each operation draws, in this order: a hang (probability ``hang_rate``), a delay
(probability ``delay_rate``, a duration uniform in ``delay``), an error (probability
``error_rate``, raised *instead of* calling the inner tier). A hang waits until
:meth:`~ChaosTier.release` or :meth:`~ChaosTier.close`, then the operation goes on
(a late write landing after the caller moved on is the nastiest thing a network store
does). Only the operations named in ``ops`` are disturbed.

**Determinism.** The draws come from ``random.Random(seed)``, one batch per operation
in the order the operations reach the wrapper. A sequential run with the same seed
meets the same faults at the same calls; under concurrency the sequence of faults is
the same but which concurrent call meets which depends on scheduling.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from .._core.entry import CacheEntry
from .._core.policy import InsertOutcome

__all__ = ["AsyncChaosTier", "ChaosError", "ChaosStats", "ChaosTier"]

OPERATIONS = frozenset({"get", "insert", "invalidate", "clear", "len"})


class ChaosError(Exception):
    """The error a chaos tier injects (the cache reports it as a ``TierError``)."""


@dataclass
class ChaosStats:
    """What a chaos tier did so far: operations seen, and faults injected by kind."""

    calls: int = 0
    errors: int = 0
    delays: int = 0
    hangs: int = 0


@dataclass(frozen=True, slots=True)
class _Fault:
    hang: bool
    delay: float
    error: bool


class _Chaos:
    """The dice and the counters, shared by the sync and the async wrapper.

    Nothing of the inner tier shows through (reach it as ``.inner``): an attribute such
    as ``nonblocking`` or a memory tier's inline hit path would let the cache go around
    the faults.
    """

    nonblocking = False  # it sleeps and hangs: never call it inline on an event loop

    def __init__(
        self,
        inner: Any,
        *,
        error_rate: float = 0.0,
        delay: float | tuple[float, float] = 0.0,
        delay_rate: float = 1.0,
        hang_rate: float = 0.0,
        seed: int | None = None,
        ops: Iterable[str] = OPERATIONS,
    ) -> None:
        for name, rate in (("error_rate", error_rate), ("delay_rate", delay_rate), ("hang_rate", hang_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1; got {rate!r}")
        low, high = (0.0, float(delay)) if isinstance(delay, (int, float)) else (float(delay[0]), float(delay[1]))
        if not 0.0 <= low <= high:
            raise ValueError(f"delay must be seconds >= 0, or a (low, high) range; got {delay!r}")
        selected = frozenset(ops)
        if not selected <= OPERATIONS:
            raise ValueError(f"unknown operations {sorted(selected - OPERATIONS)}; choose from {sorted(OPERATIONS)}")
        self.inner = inner
        self.error_rate = error_rate
        self.delay = (low, high)
        self.delay_rate = delay_rate if high > 0.0 else 0.0
        self.hang_rate = hang_rate
        self.ops = selected
        self.stats = ChaosStats()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = False
        self.enabled = True

    def _draw(self, op: str) -> _Fault | None:
        with self._lock:
            self.stats.calls += 1
            if not self.enabled or op not in self.ops:
                return None
            r = self._random
            # Always draw all three, so one rate does not shift the others' sequence.
            hang_roll, delay_roll, delay_len, error_roll = r.random(), r.random(), r.random(), r.random()
            hang = hang_roll < self.hang_rate and not self._closed
            low, high = self.delay
            delay = low + (high - low) * delay_len if delay_roll < self.delay_rate else 0.0
            error = error_roll < self.error_rate
            self.stats.hangs += hang
            self.stats.delays += delay > 0.0
            self.stats.errors += error
        if not (hang or delay or error):
            return None
        return _Fault(hang, delay, error)

    def pause(self) -> None:
        """Stop injecting faults (operations pass straight through) until :meth:`resume`."""
        self.enabled = False

    def resume(self) -> None:
        self.enabled = True



class ChaosTier(_Chaos):
    """A sync tier that disturbs ``inner`` (a sync tier) at random.

    ``error_rate``, ``delay_rate`` and ``hang_rate`` are probabilities per operation;
    ``delay`` is the longest delay in seconds, or a ``(low, high)`` range (keep it in
    milliseconds in tests); ``ops`` limits the faults to some of ``get``, ``insert``,
    ``invalidate``, ``clear`` and ``len``. A hung operation waits in its calling thread
    until :meth:`release` or :meth:`close` (so no thread is left behind), then goes on.

    >>> from cachet.testing import MockTier
    >>> chaos = ChaosTier(MockTier(), error_rate=1.0, seed=1)
    >>> chaos.get("k")
    Traceback (most recent call last):
    ...
    cachet.testing.chaos.ChaosError: injected get failure
    """

    def __init__(
        self,
        inner: Any,
        *,
        error_rate: float = 0.0,
        delay: float | tuple[float, float] = 0.0,
        delay_rate: float = 1.0,
        hang_rate: float = 0.0,
        seed: int | None = None,
        ops: Iterable[str] = OPERATIONS,
    ) -> None:
        if _is_async(inner):
            raise TypeError("ChaosTier wraps a sync tier; use AsyncChaosTier for an async one")
        super().__init__(inner, error_rate=error_rate, delay=delay, delay_rate=delay_rate,
                         hang_rate=hang_rate, seed=seed, ops=ops)
        self._gate = threading.Event()

    def release(self) -> None:
        """Let every operation hung so far go on (later hangs wait for the next release)."""
        with self._lock:
            gate, self._gate = self._gate, threading.Event()
        gate.set()

    def close(self) -> None:
        """Release every hang and never hang again; closes the inner tier if it can."""
        with self._lock:
            self._closed = True
        self.release()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def _disturb(self, op: str) -> None:
        fault = self._draw(op)
        if fault is None:
            return
        if fault.hang:
            with self._lock:
                gate = self._gate
                closed = self._closed
            if not closed:
                gate.wait()
        if fault.delay:
            time.sleep(fault.delay)
        if fault.error:
            raise ChaosError(f"injected {op} failure")

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        self._disturb("get")
        result: CacheEntry[Any] | None = self.inner.get(key)
        return result

    def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        self._disturb("insert")
        outcome: InsertOutcome = self.inner.insert(key, entry)
        return outcome

    def invalidate(self, key: Hashable) -> None:
        self._disturb("invalidate")
        self.inner.invalidate(key)

    def clear(self) -> None:
        self._disturb("clear")
        self.inner.clear()

    def len(self) -> int:
        self._disturb("len")
        return int(self.inner.len())

    def __repr__(self) -> str:
        return f"ChaosTier({self.inner!r}, {self.stats})"


class AsyncChaosTier(_Chaos):
    """The async twin of :class:`ChaosTier`: coroutine methods, anyio sleeps and events.

    ``inner`` is an async tier, or a sync tier that never blocks (it is called inline).
    :meth:`release` must be called from the event loop's thread (the hung operations wait
    on an ``anyio.Event``). A hung operation can also end by being cancelled.

    >>> import anyio
    >>> from cachet.testing import MockTier
    >>> async def demo():
    ...     chaos = AsyncChaosTier(MockTier(), delay=0.001, seed=1)
    ...     await chaos.insert("k", CacheEntry("v"))
    ...     return (await chaos.get("k")).value
    >>> anyio.run(demo)
    'v'
    """

    def __init__(
        self,
        inner: Any,
        *,
        error_rate: float = 0.0,
        delay: float | tuple[float, float] = 0.0,
        delay_rate: float = 1.0,
        hang_rate: float = 0.0,
        seed: int | None = None,
        ops: Iterable[str] = OPERATIONS,
    ) -> None:
        super().__init__(inner, error_rate=error_rate, delay=delay, delay_rate=delay_rate,
                         hang_rate=hang_rate, seed=seed, ops=ops)
        self._inner_async = _is_async(inner)
        self._gate: anyio.Event | None = None  # made inside the loop, on the first hang

    def release(self) -> None:
        """Let every operation hung so far go on (call it from the event loop's thread)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    def close(self) -> None:
        """Release every hang and never hang again (the inner tier is left open)."""
        self._closed = True
        self.release()

    async def _disturb(self, op: str) -> None:
        fault = self._draw(op)
        if fault is None:
            return
        if fault.hang and not self._closed:
            if self._gate is None:
                self._gate = anyio.Event()
            await self._gate.wait()
        if fault.delay:
            await anyio.sleep(fault.delay)
        if fault.error:
            raise ChaosError(f"injected {op} failure")

    async def _call(self, op: str, *args: Any) -> Any:
        await self._disturb(op)
        result = getattr(self.inner, op)(*args)
        if self._inner_async:
            result = await result
        return result

    async def get(self, key: Hashable) -> CacheEntry[Any] | None:
        result: CacheEntry[Any] | None = await self._call("get", key)
        return result

    async def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        outcome: InsertOutcome = await self._call("insert", key, entry)
        return outcome

    async def invalidate(self, key: Hashable) -> None:
        await self._call("invalidate", key)

    async def clear(self) -> None:
        await self._call("clear")

    async def len(self) -> int:
        return int(await self._call("len"))

    def __repr__(self) -> str:
        return f"AsyncChaosTier({self.inner!r}, {self.stats})"


def _is_async(tier: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(tier, "get", None))
