"""An event handler that groups tier events by request id: one summary line per operation.

    python examples/telemetry_accumulator.py

Each operation gets a request id; every tier event it causes carries that id, in threads
and in tasks alike, and its ``CacheOperationEvent`` comes last. So a handler can buffer
tier events per id and, when the operation completes, print what that one call did:
which tiers it read, what it wrote, whether it waited on another caller (``coalesced``).
Background refreshes carry id 0 and complete as ``cache.refresh`` operations.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from cachet import Cache, CacheEntry, ManualClock, TimeToRefresh
from cachet.telemetry import CacheOperationEvent, CacheTierEvent


class Accumulator:
    """Buffers tier events per request id; prints a summary when the operation completes.

    ``durations=False`` leaves timings out (this example's output is then the same on
    every run). Thread-safe: a sync cache calls handlers from the caller's thread and
    from its refresh threads. Concurrent background refreshes all carry id 0; this
    handler keys them by thread as well so they never mix.
    """

    def __init__(self, durations: bool = True) -> None:
        self.durations = durations
        self.pending: dict[tuple[int, int], list[str]] = defaultdict(list)
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def _key(self, request_id: int) -> tuple[int, int]:
        return request_id, threading.get_ident() if request_id == 0 else 0

    def on_tier_event(self, event: CacheTierEvent) -> None:
        outcome = event.event.removeprefix("cache.")
        with self._lock:
            self.pending[self._key(event.request_id)].append(f"{event.tier_name}:{outcome}")

    def on_operation_complete(self, event: CacheOperationEvent) -> None:
        with self._lock:
            steps = self.pending.pop(self._key(event.request_id), [])
        took = f" {event.duration_ns / 1000:.1f}us" if self.durations else ""
        waited = " (waited on another call)" if event.coalesced else ""
        line = (f"#{event.request_id} {event.operation}{took}{waited}: "
                f"{' -> '.join(steps) or 'no tier touched'}")
        with self._lock:  # print under the lock too: threads' lines never interleave
            self.lines.append(line)
            print(line, flush=True)


def main() -> None:
    from concurrent.futures import ThreadPoolExecutor

    clock = ManualClock(0.0)
    acc = Accumulator(durations=False)
    refresher = ThreadPoolExecutor(1)
    cache = (Cache.builder(clock).name("l1").memory(2).ttl(60)
             .time_to_refresh(TimeToRefresh(30, refresher))
             .fallback(Cache.builder(clock).name("l2").memory(100).ttl(600))
             .event_handler(acc).build())
    with cache:
        cache.get_or_insert("user:1", lambda: "Ada")
        cache.get("user:1")
        cache.insert("user:2", "Grace")
        cache.insert("user:3", "Edsger")  # l1 holds 2 entries: user:1 goes
        cache.get("user:1")  # back from l2
        clock.advance(31)
        cache.get("user:1")  # stale: served, and refreshed from l2 in the background
        refresher.shutdown(wait=True)
        cache.insert("user:4", CacheEntry("Barbara", ttl=5.0))
        cache.invalidate("user:2")
    print(f"{len(acc.lines)} operations; l1 stats: {cache.stats()['tiers']['l1']}")


if __name__ == "__main__":
    main()
