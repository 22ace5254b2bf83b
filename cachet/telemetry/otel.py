"""OpenTelemetry metrics for cachet (install with ``pip install 'cachet[otel]'``).

:class:`OpenTelemetryHandler` is an event handler (SPEC §6) that records:

- ``{prefix}.tier.events``: a counter, +1 per tier event, with the attributes
  ``cache.name``, ``cache.tier`` and ``cache.event`` (``cache.hit``, ``cache.miss``, ...);
- ``{prefix}.operation.duration``: a histogram of completed operations in seconds, with
  the attributes ``cache.name``, ``cache.operation`` and ``cache.coalesced``.

>>> from cachet import Cache
>>> from cachet.telemetry.otel import OpenTelemetryHandler
>>> cache = Cache.builder().memory(100).event_handler(OpenTelemetryHandler()).build()

With ``meter_provider=None`` the global provider (``opentelemetry.metrics``) is used, so
configure it (an SDK ``MeterProvider`` with a reader or exporter) before building.
"""

from __future__ import annotations

from typing import Any

try:
    from opentelemetry import metrics as _metrics
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "cachet.telemetry.otel needs OpenTelemetry; install it with: pip install 'cachet[otel]'"
    ) from exc

from . import attributes as a
from ._events import CacheOperationEvent, CacheTierEvent

__all__ = ["DURATION_BUCKETS", "OpenTelemetryHandler"]

DURATION_BUCKETS: tuple[float, ...] = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
    1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Histogram bucket bounds (seconds) advised to the SDK: a memory hit takes about a
microsecond, a network tier milliseconds, a slow loader seconds."""


class OpenTelemetryHandler:
    """Records cachet's events as OpenTelemetry metrics; pass it to ``.event_handler()``.

    One handler may serve several caches: ``cache.name`` tells them apart. Recording is
    an attribute-dict build and an ``add`` / ``record`` call per event, so it is cheap,
    but remember that with a handler on, every hit takes the slow path (see
    docs/telemetry.md, "Costs").
    """

    __slots__ = ("_durations", "_events")

    def __init__(self, meter_provider: Any = None, prefix: str = "cachet") -> None:
        provider = meter_provider if meter_provider is not None else _metrics.get_meter_provider()
        from .._core.version import __version__

        meter = provider.get_meter("cachet", __version__)
        self._events = meter.create_counter(
            f"{prefix}.tier.events", unit="{event}",
            description="Cache tier events (hits, misses, inserts, evictions, ...) per tier",
        )
        kwargs: dict[str, Any] = {"explicit_bucket_boundaries_advisory": DURATION_BUCKETS}
        try:
            self._durations = meter.create_histogram(
                f"{prefix}.operation.duration", unit="s",
                description="Duration of completed cache operations", **kwargs)
        except TypeError:  # opentelemetry-api < 1.23 has no bucket advice
            self._durations = meter.create_histogram(
                f"{prefix}.operation.duration", unit="s",
                description="Duration of completed cache operations")

    def on_tier_event(self, event: CacheTierEvent) -> None:
        """Count the event under its cache, tier and event name."""
        self._events.add(1, {a.CACHE_NAME: event.cache_name, a.CACHE_TIER: event.tier_name,
                             a.CACHE_EVENT: event.event})

    def on_operation_complete(self, event: CacheOperationEvent) -> None:
        """Record the operation's duration (seconds) under its cache, operation and coalesced flag."""
        self._durations.record(event.duration_ns / 1e9, {
            a.CACHE_NAME: event.cache_name, a.CACHE_OPERATION: event.operation,
            a.CACHE_COALESCED: event.coalesced,
        })
