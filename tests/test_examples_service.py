"""The service examples run and print what their docstrings promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .redis_server import RedisServer, free_port, require_redis_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, **env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_logging_layer_logs_each_request_on_both_frontends() -> None:
    lines = [re.sub(r"\(\d+\.\d\d ms\)", "(T ms)", line) for line in run_example("logging_layer.py")]
    assert lines == [
        "== sync: memory L1 over a logged MemoryTier L2",
        "  log: sync-l2 get 'user:1' -> miss (T ms)",
        "get user:1 -> None",
        "  log: sync-l2 insert 'user:1' -> accepted (T ms)",
        "get user:1 -> Ada (an L1 hit: nothing logged)",
        "  log: sync-l2 invalidate 'user:1' -> ok (T ms)",
        "  log: sync-l2 clear -> ok (T ms)",
        "== aio: memory L1 over a logged aio Cache used as a service",
        "  log: aio-l2 get 'user:2' -> hit (T ms)",
        "get user:2 -> Grace (promoted from L2)",
        "get user:2 -> Grace (an L1 hit: nothing logged)",
        "  log: aio-l2 invalidate 'user:2' -> ok (T ms)",
        "  log: aio-l2 get 'user:2' -> miss (T ms)",
        "get user:2 -> None",
    ]


@pytest.mark.redis
def test_redis_resilient_reads_through_redis() -> None:
    with RedisServer(require_redis_server()) as server:
        lines = run_example("redis_resilient.py", CACHET_REDIS_URL=server.url)
    assert lines[1:13] == [
        "web-1:",
        *(f"  user {i} (user-{i}) from database (cache miss)" for i in (1, 2, 3)),
        "web-2:",
        *(f"  user {i} (user-{i}) from L2 redis" for i in (1, 2, 3)),
        "web-2:",
        *(f"  user {i} (user-{i}) from L1 memory" for i in (1, 2, 3)),
    ]
    assert lines[13].endswith("breaker closed")
    assert not any("breaker closed -> open" in line for line in lines)


@pytest.mark.redis
def test_redis_resilient_opens_the_breaker_when_redis_is_down() -> None:
    pytest.importorskip("redis")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens here
    lines = run_example("redis_resilient.py", CACHET_REDIS_URL=url)
    assert "    [web-1] breaker closed -> open" in lines
    assert "    [web-2] breaker closed -> open" in lines
    # web-2's second pass never reaches Redis: every read is refused by its breaker.
    second_pass = lines[lines.index("web-2:", lines.index("web-2:") + 1) + 1:][:3]
    assert second_pass == [
        f"  user {i} (user-{i}) from database, L2 unavailable (CircuitOpenError)" for i in (1, 2, 3)
    ]
    assert lines[-1].endswith("breaker open")
