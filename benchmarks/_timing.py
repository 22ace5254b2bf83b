"""Shared timing helpers: interleaved rounds, medians, ratios against a floor."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def per_call_ns(fn: Callable[[], Any], number: int) -> float:
    """ns per call of ``fn`` over ``number`` calls (loop overhead included, as for every row)."""
    t0 = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - t0) / number


def interleaved(cases: dict[str, Callable[[], Any]], *, rounds: int = 15, number: int = 50_000,
                measure: Callable[[Callable[[], Any], int], float] = per_call_ns) -> dict[str, float]:
    """Median ns per call of each case, measured in interleaved rounds (noise hits all alike)."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm up
        measure(fn, number // 10)
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(measure(fn, number))
    return {name: statistics.median(s) for name, s in samples.items()}


def table(title: str, medians: dict[str, float], floor: str,
          targets: dict[str, float] | None = None) -> str:
    base = medians[floor]
    lines = [f"## {title}", "", "| case | median ns | x floor | target |", "|---|---:|---:|---:|"]
    for name, ns in medians.items():
        target = (targets or {}).get(name)
        mark = "" if target is None else (f"<= {target}x " + ("ok" if ns / base <= target else "MISSED"))
        lines.append(f"| {name} | {ns:.0f} | {ns / base:.2f} | {mark} |")
    return "\n".join(lines)
