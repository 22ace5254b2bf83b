"""Fans tier and operation events out to the event handler and the logging channel."""

from __future__ import annotations

import logging
from typing import Any

from . import attributes as a
from ._events import CacheOperationEvent, CacheTierEvent

_logger = logging.getLogger(a.TARGET)

LEVELS: dict[str, int] = {
    **{e: logging.ERROR for e in a.ERROR_EVENTS},
    **{e: logging.INFO for e in a.INFO_EVENTS},
    **{e: logging.DEBUG for e in a.DEBUG_EVENTS},
}
"""The ``logging`` level of each tier event (operations log at DEBUG)."""


class Reporter:
    """Built only when telemetry is on; with it off the core holds ``None`` and pays nothing.

    Rules:

    1. A record is built only if the ``cachet`` logger is enabled for its level
       (``isEnabledFor`` first), so logs on with the logger at WARNING cost two level
       checks per operation, no record.
    2. The handler's methods are looked up once, here; a missing one is skipped.
    3. A handler exception is logged once per cache (with its traceback, at ERROR, even
       with logs off) and never reaches the cache operation.
    """

    __slots__ = ("_handler_failed", "_on_op", "_on_tier", "cache_name", "handler", "logs")

    def __init__(self, cache_name: str, handler: Any, logs: bool) -> None:
        self.cache_name = cache_name
        self.handler = handler
        self.logs = logs
        self._on_tier = getattr(handler, "on_tier_event", None)
        self._on_op = getattr(handler, "on_operation_complete", None)
        self._handler_failed = False

    def tier(self, request_id: int, tier: str, fallback: bool, event: str, duration_ns: int) -> None:
        """Report one tier event."""
        if self.logs:
            level = LEVELS.get(event, logging.DEBUG)
            if _logger.isEnabledFor(level):
                _logger.log(
                    level,
                    "%s tier=%s cache=%s",
                    event,
                    tier,
                    self.cache_name,
                    extra={
                        a.CACHE_NAME: self.cache_name,
                        a.CACHE_TIER: tier,
                        a.CACHE_EVENT: event,
                        a.CACHE_DURATION_NS: duration_ns,
                        a.CACHE_REQUEST_ID: request_id,
                    },
                )
        on_tier = self._on_tier
        if on_tier is not None:
            try:
                on_tier(CacheTierEvent(request_id, self.cache_name, tier, event, duration_ns, fallback))
            except Exception:
                self._handler_raised()

    def operation(self, request_id: int, op: str, duration_ns: int, coalesced: bool) -> None:
        """Report a completed operation."""
        if self.logs and _logger.isEnabledFor(logging.DEBUG):
            _logger.debug(
                "%s complete cache=%s",
                op,
                self.cache_name,
                extra={
                    a.CACHE_NAME: self.cache_name,
                    a.CACHE_EVENT: a.OPERATION_COMPLETE,
                    a.CACHE_OPERATION: op,
                    a.CACHE_DURATION_NS: duration_ns,
                    a.CACHE_COALESCED: coalesced,
                    a.CACHE_REQUEST_ID: request_id,
                },
            )
        on_op = self._on_op
        if on_op is not None:
            try:
                on_op(CacheOperationEvent(request_id, self.cache_name, op, duration_ns, coalesced))
            except Exception:
                self._handler_raised()

    def _handler_raised(self) -> None:
        # Called from an ``except`` block: ``exception`` logs the handler's traceback.
        if not self._handler_failed:
            self._handler_failed = True
            _logger.exception("cachet event handler %r raised; further errors are not logged",
                              self.handler)
