"""The telemetry examples run and print what their docstrings promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> list[str]:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


def test_jsonlines_example_prints_one_json_object_per_record() -> None:
    lines = run_example("telemetry_jsonlines.py")
    marker = lines.index(
        "-- the cachet logger at INFO: hits are not logged (their records are never built)")
    before = [json.loads(line) for line in lines[:marker]]
    after = [json.loads(line) for line in lines[marker + 1:]]
    for rec in before + after:
        assert rec["logger"] == "cachet" and rec["cache.name"] == "users"
        assert isinstance(rec["cache.duration_ns"], int) and rec["cache.duration_ns"] >= 0

    def row(rec: dict[str, object]) -> tuple[object, ...]:
        if "cache.operation" in rec:
            return (rec["level"], rec["cache.request_id"], rec["cache.operation"], rec["cache.coalesced"])
        return (rec["level"], rec["cache.request_id"], rec["cache.tier"], rec["cache.event"])

    assert [row(r) for r in before] == [
        ("DEBUG", 1, "users", "cache.miss"), ("DEBUG", 1, "l2", "cache.miss"),
        ("INFO", 1, "users", "cache.inserted"), ("INFO", 1, "l2", "cache.inserted"),
        ("DEBUG", 1, "cache.get_or_insert", False),
        ("DEBUG", 2, "users", "cache.hit"), ("DEBUG", 2, "cache.get", False),
        ("INFO", 3, "users", "cache.inserted"), ("INFO", 3, "l2", "cache.inserted"),
        ("DEBUG", 3, "cache.insert", False),
        ("INFO", 4, "users", "cache.eviction"), ("INFO", 4, "users", "cache.inserted"),
        ("INFO", 4, "l2", "cache.inserted"), ("DEBUG", 4, "cache.insert", False),
        ("DEBUG", 5, "users", "cache.miss"), ("DEBUG", 5, "l2", "cache.hit"),
        ("INFO", 5, "users", "cache.eviction"), ("INFO", 5, "users", "cache.inserted"),
        ("DEBUG", 5, "cache.get", False),
    ]
    assert before[0]["message"] == "cache.miss tier=users cache=users"
    assert before[4]["message"] == "cache.get_or_insert complete cache=users"
    # At INFO the hit (request 6) and every DEBUG record are gone; the insert's INFO stay.
    assert [row(r) for r in after] == [
        ("INFO", 7, "users", "cache.eviction"), ("INFO", 7, "users", "cache.inserted"),
        ("INFO", 7, "l2", "cache.inserted"),
    ]


def test_accumulator_example_summarises_each_operation() -> None:
    lines = run_example("telemetry_accumulator.py")
    refresh = "#0 cache.refresh: l2:hit -> l1:inserted -> l1:refresh_hit"
    # The refresh runs on its own thread: its line may come before or after request 6's.
    assert refresh in lines
    lines.remove(refresh)
    assert lines[:-1] == [
        "#1 cache.get_or_insert: l1:miss -> l2:miss -> l1:inserted -> l2:inserted",
        "#2 cache.get: l1:hit",
        "#3 cache.insert: l1:inserted -> l2:inserted",
        "#4 cache.insert: l1:eviction -> l1:inserted -> l2:inserted",
        "#5 cache.get: l1:miss -> l2:hit -> l1:eviction -> l1:inserted",
        "#6 cache.get: l1:hit",
        "#7 cache.insert: l1:eviction -> l1:inserted -> l2:inserted",
        "#8 cache.invalidate: l1:invalidated -> l2:invalidated",
    ]
    assert lines[-1].startswith("9 operations; l1 stats: {'hits': 2, 'misses': 2,")


def test_accumulator_groups_interleaved_operations_by_request_id() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from telemetry_accumulator import Accumulator
    finally:
        sys.path.remove(str(EXAMPLES))
    from cachet.telemetry import CacheOperationEvent, CacheTierEvent

    acc = Accumulator(durations=True)
    acc.on_tier_event(CacheTierEvent(1, "c", "l1", "cache.miss", 10, False))
    acc.on_tier_event(CacheTierEvent(2, "c", "l1", "cache.hit", 10, False))
    acc.on_operation_complete(CacheOperationEvent(3, "c", "cache.get", 1500, True))
    acc.on_tier_event(CacheTierEvent(1, "c", "l2", "cache.miss", 10, True))
    acc.on_operation_complete(CacheOperationEvent(2, "c", "cache.get", 2000, False))
    acc.on_operation_complete(CacheOperationEvent(1, "c", "cache.get", 3000, False))
    assert acc.lines == [
        "#3 cache.get 1.5us (waited on another call): no tier touched",
        "#2 cache.get 2.0us: l1:hit",
        "#1 cache.get 3.0us: l1:miss -> l2:miss",
    ]
