"""``MockTier``: an in-memory tier that records every operation and fails on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from .._core.entry import CacheEntry
from .._core.policy import InsertOutcome
from .._core.requests import (
    CacheRequest,
    ClearRequest,
    GetRequest,
    InsertRequest,
    InvalidateRequest,
    UpdateRequest,
)
from .._core.tier import Change


class MockTierError(Exception):
    """Raised by a ``MockTier`` operation that matched ``fail_when``."""


class MockTier:
    """A dict-backed tier for tests.

    Every operation is recorded (as the request values of ``cachet.service``) before it
    acts, so a test can assert exactly what reached storage::

        tier = MockTier()
        tier.fail_when(lambda req: isinstance(req, InsertRequest))
    """

    nonblocking = True

    def __init__(self) -> None:
        self.data: dict[Hashable, CacheEntry[Any]] = {}
        self._operations: list[CacheRequest] = []
        self._failures: list[Callable[[CacheRequest], bool]] = []
        self._lock = threading.Lock()

    @classmethod
    def with_data(cls, data: Mapping[Hashable, CacheEntry[Any] | Any]) -> MockTier:
        """A tier pre-filled with ``data`` (bare values are wrapped in unstamped entries)."""
        tier = cls()
        for key, value in data.items():
            tier.data[key] = value if isinstance(value, CacheEntry) else CacheEntry(value)
        return tier

    # -- recording and faults ----------------------------------------------------------

    @property
    def operations(self) -> list[CacheRequest]:
        """A copy of the requests seen so far, oldest first."""
        with self._lock:
            return list(self._operations)

    def clear_operations(self) -> None:
        with self._lock:
            self._operations.clear()

    def fail_when(self, predicate: Callable[[CacheRequest], bool]) -> None:
        """Make every operation whose request matches ``predicate`` raise ``MockTierError``."""
        with self._lock:
            self._failures.append(predicate)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _record(self, request: CacheRequest) -> None:
        with self._lock:
            self._operations.append(request)
            failures = list(self._failures)
        for predicate in failures:
            if predicate(request):
                raise MockTierError(f"injected failure for {request!r}")

    # -- inspection --------------------------------------------------------------------

    @property
    def entry_count(self) -> int:
        return len(self.data)

    def contains_key(self, key: Hashable) -> bool:
        return key in self.data

    # -- the tier protocol -------------------------------------------------------------

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        self._record(GetRequest(key))
        return self.data.get(key)

    def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        self._record(InsertRequest(key, entry))
        with self._lock:
            self.data[key] = entry
        return InsertOutcome.ACCEPTED

    def invalidate(self, key: Hashable) -> None:
        self._record(InvalidateRequest(key))
        with self._lock:
            self.data.pop(key, None)

    def clear(self) -> None:
        self._record(ClearRequest())
        with self._lock:
            self.data.clear()

    def update(self, key: Hashable, change: Change) -> Any:
        """The atomic step of ``cachet._core.tier`` (recorded as an ``UpdateRequest``)."""
        self._record(UpdateRequest(key, change))
        with self._lock:
            new, result = change(self.data.get(key))
            if new is None:
                self.data.pop(key, None)
            elif isinstance(new, CacheEntry):  # else KEEP
                self.data[key] = new
        return result

    def len(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"MockTier({len(self.data)} entries)"
