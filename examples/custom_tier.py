"""A custom tier: a dict with a size bound, and the conformance suite run against it.

A tier is four methods (``get``, ``insert``, ``invalidate``, ``clear``) plus an optional
``len``, and an optional ``update``, which the atomic operations (``add``, ``incr``, ...)
need of the bottom tier. ``check_tier`` runs cachet's tier contract against fresh instances and raises
``ConformanceError`` listing whatever is wrong; in pytest, subclass ``TierContract``::

    class TestDictTier(TierContract):
        def make_tier(self) -> DictTier:
            return DictTier()
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from cachet import Cache, CacheEntry, InsertOutcome
from cachet.testing import check_tier


class DictTier:
    """A thread-safe dict that keeps the ``max_entries`` most recently written entries."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, CacheEntry[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        with self._lock:
            return self._data.get(key)

    def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        with self._lock:
            self._store(key, entry)
        return InsertOutcome.ACCEPTED

    def _store(self, key: Hashable, entry: CacheEntry[Any]) -> None:
        self._data[key] = entry  # stored as given: the cache stamps, not the tier
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def update(self, key: Hashable, change: Callable[[CacheEntry[Any] | None], tuple[Any, Any]]) -> Any:
        """Read, change and write under one lock: no other write comes in between."""
        with self._lock:
            new, result = change(self._data.get(key))
            if new is None:
                self._data.pop(key, None)
            elif isinstance(new, CacheEntry):  # anything else: leave the key as it is
                self._store(key, new)
        return result

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def len(self) -> int:
        with self._lock:
            return len(self._data)


def main() -> list[str]:
    ran = check_tier(DictTier)  # raises ConformanceError if DictTier breaks the contract
    print(f"DictTier passed {len(ran)} conformance checks: {', '.join(ran)}")

    # ... and it works in a cache, as a primary or below one.
    with Cache.builder().memory(100).fallback(Cache.builder().storage(DictTier())).build() as cache:
        cache.insert("k", "v")
        entry = cache.get("k")
        assert entry is not None and entry.value == "v"
        assert cache.add("visits", 0) and cache.incr("visits") == 1  # atomic, through update
    return ran


if __name__ == "__main__":
    main()
