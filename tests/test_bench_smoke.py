"""Smoke test: ``benchmarks/compare.py --quick`` runs (no timing is asserted: benchmarks are not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_compare_quick_runs() -> None:
    for peer in ("dogpile.cache", "theine", "cachebox", "diskcache", "cashews", "aiocache", "async_lru"):
        pytest.importorskip(peer)
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--no-write",
         "--only", "sync_hit,trio_hit,asyncio_decorator,stampede_trio"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "## Sync L1 hit" in p.stdout and "cachet Cache.get" in p.stdout
    assert "## Stampede: 200 trio tasks" in p.stdout
