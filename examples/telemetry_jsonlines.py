"""Cache logs as JSON lines: ``.enable_logs()`` plus a ``logging`` formatter.

    python examples/telemetry_jsonlines.py

Every record cachet logs carries its fields as record attributes (``cache.name``,
``cache.tier``, ``cache.event``, ``cache.duration_ns``, ``cache.request_id``; operations
add ``cache.operation`` and ``cache.coalesced``), so a formatter can lift them into a
JSON object without parsing messages. The ``cachet`` logger is set to DEBUG here to see
hits and misses too; at INFO (typical in production) only writes, evictions, expiries
and errors are logged, and records below the level are never built.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from cachet import Cache, ManualClock
from cachet.telemetry import attributes as a

FIELDS = (a.CACHE_NAME, a.CACHE_TIER, a.CACHE_EVENT, a.CACHE_OPERATION, a.CACHE_COALESCED,
          a.CACHE_REQUEST_ID, a.CACHE_DURATION_NS)


class JsonLines(logging.Formatter):
    """One JSON object per record: level, logger, message and every ``cache.*`` field present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for field in FIELDS:
            if hasattr(record, field):
                out[field] = getattr(record, field)
        return json.dumps(out)


def main() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines())
    log = logging.getLogger(a.TARGET)  # "cachet"
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False

    clock = ManualClock(0.0)  # fixed cache time: the output is the same on every run
    cache = (Cache.builder(clock).name("users").memory(2).ttl(60).enable_logs()
             .fallback(Cache.builder(clock).name("l2").memory(100).ttl(3600))
             .build())
    with cache:
        cache.get_or_insert("user:1", lambda: "Ada")  # miss, miss, load, insert x2
        cache.get("user:1")  # an L1 hit
        cache.insert("user:2", "Grace")
        cache.insert("user:3", "Edsger")  # L1 holds 2: user:1 is evicted
        cache.get("user:1")  # L1 miss, L2 hit, promoted back into L1
        print("-- the cachet logger at INFO: hits are not logged (their records are never built)")
        log.setLevel(logging.INFO)
        cache.get("user:1")
        cache.insert("user:4", "Barbara")

if __name__ == "__main__":
    main()
