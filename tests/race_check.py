"""A randomized check that a completed write wins (SPEC §8): the history recorder and the
checker shared by ``tests/test_lost_writes.py`` and ``benchmarks/bench_races.py``.

Every operation takes a number from one global sequence when it starts and when it ends
(``next()`` on an ``itertools.count`` is atomic), so "ended before started" is exact.
Each value written is unique: an insert writes the sequence number it started at, a
loader returns the number of the moment it was called. A read of key ``k`` that returns
value ``n`` is a **lost write** when some insert or invalidate ``X`` of ``k`` ended before
the read started, and ``n`` was already old when ``X`` started: written by an insert that
had ended, or made by a loader called, before ``X`` started. (Writes that overlap may be
ordered either way and are never counted.)
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any

SEQ = itertools.count()


@dataclass
class History:
    """What the workers did: per key, the writes (start, end) and the reads."""

    # key -> [(end, start)] of each insert and invalidate
    writes: dict[Any, list[tuple[int, int]]] = field(default_factory=dict)
    # value -> the sequence number from which it counts as old (see the module docstring)
    old_from: dict[int, int] = field(default_factory=dict)
    # (key, start, value) of each read that returned a value
    reads: list[tuple[Any, int, int]] = field(default_factory=list)
    ops: int = 0

    def wrote(self, key: Any, start: int, end: int, value: int | None) -> None:
        self.writes.setdefault(key, []).append((end, start))
        if value is not None:
            self.old_from[value] = end
        self.ops += 1

    def loaded(self, value: int) -> None:
        self.old_from[value] = value  # a loader's value is old from when it was called

    def read(self, key: Any, start: int, value: int | None) -> None:
        if value is not None:
            self.reads.append((key, start, value))
        self.ops += 1

    def merge(self, other: History) -> None:
        for key, ws in other.writes.items():
            self.writes.setdefault(key, []).extend(ws)
        self.old_from.update(other.old_from)
        self.reads.extend(other.reads)
        self.ops += other.ops

    def lost_writes(self) -> list[tuple[Any, int, int, tuple[int, int]]]:
        """Each read that saw a value an already completed write had replaced: (key,
        read start, value, (write start, write end))."""
        index = {}
        for key, ws in self.writes.items():
            ws.sort()
            ends = [end for end, _ in ws]
            best: list[tuple[int, int]] = []  # prefix: the latest-starting write so far
            top = (-1, -1)
            for end, start in ws:
                if start > top[0]:
                    top = (start, end)
                best.append(top)
            index[key] = (ends, best)
        lost = []
        for key, start, value in self.reads:
            if key not in index:
                continue
            ends, best = index[key]
            i = bisect.bisect_left(ends, start)  # the writes that ended before the read
            if i == 0:
                continue
            w_start, w_end = best[i - 1]
            if value in self.old_from and self.old_from[value] < w_start:
                lost.append((key, start, value, (w_start, w_end)))
        return lost


KEYS = [f"k{i}" for i in range(20)]


def sync_worker(cache: Any, hist: History, rng: Any, until: float, clock: Any) -> None:
    """Random operations on ``cache`` (a ``cachet.sync.Cache``) until ``clock() >= until``."""

    def load() -> int:
        n = next(SEQ)
        hist.loaded(n)
        return n

    while clock() < until:
        key = rng.choice(KEYS)
        op = rng.random()
        start = next(SEQ)
        if op < 0.2:
            entry = cache.get(key)
            hist.read(key, start, None if entry is None else entry.value)
        elif op < 0.3:  # a bulk read (one round trip below the primary) of three keys
            keys = rng.sample(KEYS, 3)
            found = cache.get_many(keys)
            for k in keys:
                hist.read(k, start, found[k].value if k in found else None)
        elif op < 0.6:
            hist.read(key, start, cache.get_or_insert(key, load).value)
        elif op < 0.8:
            cache.insert(key, start)
            hist.wrote(key, start, next(SEQ), start)
        else:
            cache.invalidate(key)
            hist.wrote(key, start, next(SEQ), None)


async def async_worker(cache: Any, hist: History, rng: Any, until: float, clock: Any) -> None:
    """The same on a ``cachet.aio.Cache``; a quarter of the reads give up at once
    (cancelled at their first wait), as callers with deadlines do."""
    import anyio

    def load_now() -> int:
        n = next(SEQ)
        hist.loaded(n)
        return n

    async def load() -> int:
        if rng.random() < 0.5:
            await anyio.sleep(0)
        return load_now()

    while clock() < until:
        key = rng.choice(KEYS)
        op = rng.random()
        start = next(SEQ)
        if op < 0.2:
            entry = await cache.get(key)
            hist.read(key, start, None if entry is None else entry.value)
        elif op < 0.3:
            keys = rng.sample(KEYS, 3)
            found = await cache.get_many(keys)
            for k in keys:
                hist.read(k, start, found[k].value if k in found else None)
        elif op < 0.6:
            with anyio.CancelScope() as scope:
                if rng.random() < 0.25:
                    scope.cancel()
                hist.read(key, start, (await cache.get_or_insert(key, load)).value)
        elif op < 0.8:
            await cache.insert(key, start)
            hist.wrote(key, start, next(SEQ), start)
        else:
            await cache.invalidate(key)
            hist.wrote(key, start, next(SEQ), None)
        if rng.random() < 0.3:
            await anyio.sleep(0)
