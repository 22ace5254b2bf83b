"""What telemetry costs on the sync L1 hit (issue 5), in one interleaved run.

Cases, each a ``functools.partial`` of a one-argument callable (the same call overhead
for every row, as in ``bench_hit.py``):

- the floor: ``dict[k]`` under a ``threading.Lock``;
- ``Cache.get`` on a warm key, telemetry off (the inline hit path);
- with a no-op event handler (every hit takes the slow path and builds two events);
- with ``.enable_logs()`` and the ``cachet`` logger at WARNING (records are not built);
- with ``.enable_logs()`` at DEBUG into a ``NullHandler`` (two records built and handled
  per hit).

The ``cachet`` logger's level is process-wide, so each case sets the level it needs
before its timed loop (outside the timing).

    python benchmarks/bench_telemetry.py
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, per_call_ns, table

import cachet
from cachet.telemetry import CacheOperationEvent, CacheTierEvent
from cachet.telemetry import attributes as a


class NoOpHandler:
    def on_tier_event(self, event: CacheTierEvent) -> None:
        pass

    def on_operation_complete(self, event: CacheOperationEvent) -> None:
        pass


def build(**telemetry: Any) -> cachet.Cache[Any, Any]:
    b = cachet.Cache.builder().memory(10_000).ttl(600)
    if "handler" in telemetry:
        b = b.event_handler(telemetry["handler"])
    if telemetry.get("logs"):
        b = b.enable_logs()
    cache = b.build()
    for i in range(1000):
        cache.insert(f"k{i}", i)
    assert cache.get("k5") is not None
    return cache


def sync_rows(rounds: int = 15, number: int = 50_000) -> str:
    log = logging.getLogger(a.TARGET)
    log.propagate = False
    log.handlers[:] = [logging.NullHandler()]

    lock = threading.Lock()
    d = {f"k{i}": i for i in range(1000)}

    def locked_dict(k: str) -> object:
        with lock:
            return d[k]

    off = build()
    noop = build(handler=NoOpHandler())
    logs = build(logs=True)
    floor = "locked dict[k] (floor)"
    cases: dict[str, Callable[[], Any]] = {
        floor: partial(locked_dict, "k5"),
        "Cache.get, telemetry off": partial(off.get, "k5"),
        "Cache.get, no-op handler": partial(noop.get, "k5"),
        "Cache.get, logs on, logger at WARNING": partial(logs.get, "k5"),
        "Cache.get, logs on, DEBUG to NullHandler": partial(logs.get, "k5"),
    }
    levels = {id(fn): logging.WARNING for fn in cases.values()}
    levels[id(cases["Cache.get, logs on, DEBUG to NullHandler"])] = logging.DEBUG

    def measure(fn: Callable[[], Any], n: int) -> float:
        log.setLevel(levels[id(fn)])
        return per_call_ns(fn, n)

    medians = interleaved(cases, rounds=rounds, number=number, measure=measure)
    log.setLevel(logging.NOTSET)
    return table("sync L1 hit: telemetry costs", medians, floor,
                 {"Cache.get, telemetry off": 2.0})


if __name__ == "__main__":
    print(f"Python {sys.version.split()[0]}, cachet {cachet.__version__}\n")
    print(sync_rows())
