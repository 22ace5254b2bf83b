"""Test helpers shared by the suites."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class ManualExecutor(Executor):
    """An executor that runs submitted work only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self.pending.append((future, lambda: fn(*args, **kwargs), ()))
        return future

    def run_pending(self) -> int:
        ran = 0
        while True:
            with self._lock:
                if not self.pending:
                    return ran
                future, fn, _ = self.pending.pop(0)
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            ran += 1


def wait_until(predicate: Callable[[], Any], what: str, limit: float = 10.0) -> None:
    """Poll a condition another thread will make true (bounded; never used to pass time)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)
