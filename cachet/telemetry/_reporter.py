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


class Reporter:
    """Built only when telemetry is on; with it off the core holds ``None`` and pays nothing."""

    __slots__ = ("_handler_failed", "cache_name", "handler", "logs")

    def __init__(self, cache_name: str, handler: Any, logs: bool) -> None:
        self.cache_name = cache_name
        self.handler = handler
        self.logs = logs
        self._handler_failed = False

    def tier(self, request_id: int, tier: str, fallback: bool, event: str, duration_ns: int) -> None:
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
        handler = self.handler
        if handler is not None and hasattr(handler, "on_tier_event"):
            ev = CacheTierEvent(request_id, self.cache_name, tier, event, duration_ns, fallback)
            self._call(handler.on_tier_event, ev)

    def operation(self, request_id: int, op: str, duration_ns: int, coalesced: bool) -> None:
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
        handler = self.handler
        if handler is not None and hasattr(handler, "on_operation_complete"):
            ev = CacheOperationEvent(request_id, self.cache_name, op, duration_ns, coalesced)
            self._call(handler.on_operation_complete, ev)

    def _call(self, method: Any, event: Any) -> None:
        try:
            method(event)
        except Exception:
            if not self._handler_failed:  # report once, never break the cache operation
                self._handler_failed = True
                _logger.exception("cachet event handler %r raised; further errors are not logged",
                                  self.handler)
