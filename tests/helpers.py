"""Test helpers shared by the suites."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
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


SDIST_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cachet-tests"


def sdist_tests(dist: str, version: str, marker: str) -> Path:
    """The ``tests/`` folder of ``dist``'s sdist at ``version`` (a framework's own test
    suite, which its wheel does not ship), fetched from the package index once per
    machine; ``marker`` is a file in it that says the unpacking finished."""
    target = SDIST_CACHE / f"{dist}-{version}"
    if not (target / "tests" / marker).exists():
        download = SDIST_CACHE / "downloads"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                        ":all:", "--dest", str(download), f"{dist}=={version}"], check=True, timeout=300)
        stem = "[-_]".join(re.escape(part) for part in dist.split("-"))
        name = re.compile(rf"{stem}-{re.escape(version)}\.tar\.gz", re.I)
        (sdist,) = [p for p in download.glob("*.tar.gz") if name.fullmatch(p.name)]
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            top = tar.getnames()[0].split("/")[0]
            members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"]]
            tar.extractall(SDIST_CACHE / "unpack", members=members, filter="data")
        (SDIST_CACHE / "unpack" / top).rename(target)
    return target / "tests"
