"""Operations as values (SPEC §5): requests, responses, adapters both ways, middleware.

Every cache operation has a value:

==========================  ==============================  ==============================
request                     response                        what it carries
==========================  ==============================  ==============================
``GetRequest(key)``         ``GetResponse(entry)``          ``entry`` or ``None``;
                                                            ``is_hit`` / ``is_miss``
``InsertRequest(key, e)``   ``InsertResponse(outcome)``     an ``InsertOutcome``
``InvalidateRequest(key)``  ``InvalidateResponse()``
``ClearRequest()``          ``ClearResponse()``
``UpdateRequest(key, ch)``  ``UpdateResponse(result)``      what ``ch`` returned (a tier's
                                                            atomic ``update``)
==========================  ==============================  ==============================

A *service* is a callable from request to response; an async service is a coroutine
function (or an object whose ``__call__`` is one). Adapters go both ways:

- a **cache is a service**: ``cache(GetRequest("k"))`` (``await`` it on an aio cache);
  :func:`as_service` makes any tier one as well;
- a **service is a tier**: :class:`ServiceAdapter` (what ``builder.service(svc)`` uses).

Between the two sit layers (``cachet.middleware``, re-exported here): :func:`timeout`,
:func:`retry`, :func:`circuit_breaker`, composed with :func:`stack`::

    l2 = stack(as_service(redis_tier), timeout(0.2), retry(3), circuit_breaker())
    cache = Cache.builder().memory(10_000).fallback(Cache.builder().service(l2)).build()

See ``docs/service.md``.
"""

from __future__ import annotations

import inspect
from typing import Any

from ._cache_base import CacheBase
from ._core.errors import CacheError, UnsupportedError
from ._core.policy import InsertOutcome
from ._core.requests import CacheRequest as CacheRequest
from ._core.requests import CacheResponse as CacheResponse
from ._core.requests import ClearRequest as ClearRequest
from ._core.requests import ClearResponse as ClearResponse
from ._core.requests import GetRequest as GetRequest
from ._core.requests import GetResponse as GetResponse
from ._core.requests import InsertRequest as InsertRequest
from ._core.requests import InsertResponse as InsertResponse
from ._core.requests import InvalidateRequest as InvalidateRequest
from ._core.requests import InvalidateResponse as InvalidateResponse
from ._core.requests import UpdateRequest as UpdateRequest
from ._core.requests import UpdateResponse as UpdateResponse
from .middleware import AsyncService as AsyncService
from .middleware import BreakerState as BreakerState
from .middleware import CircuitBreaker as CircuitBreaker
from .middleware import CircuitOpenError as CircuitOpenError
from .middleware import Layer as Layer
from .middleware import Service as Service
from .middleware import ServiceTimeoutError as ServiceTimeoutError
from .middleware import SyncService as SyncService
from .middleware import circuit_breaker as circuit_breaker
from .middleware import is_async_service as is_async_service
from .middleware import retry as retry
from .middleware import stack as stack
from .middleware import timeout as timeout

__all__ = [
    # operations as values
    "CacheRequest", "CacheResponse", "ClearRequest", "ClearResponse", "GetRequest",
    "GetResponse", "InsertRequest", "InsertResponse", "InvalidateRequest",
    "InvalidateResponse", "UpdateRequest", "UpdateResponse",
    # services and adapters
    "AsyncService", "Service", "SyncService", "ServiceAdapter", "UnexpectedResponseError",
    "as_service", "is_async_service", "serve_async", "serve_sync",
    # middleware
    "BreakerState", "CircuitBreaker", "CircuitOpenError", "Layer", "ServiceTimeoutError",
    "circuit_breaker", "retry", "stack", "timeout",
]


class UnexpectedResponseError(CacheError):
    """A service answered a request with a response of the wrong kind (a bug in the
    service or a layer): ``request`` and ``response`` are attached."""

    def __init__(self, request: Any, response: Any, expected: type) -> None:
        self.request = request
        self.response = response
        super().__init__(
            f"service answered {request!r} with {response!r}; expected a {expected.__name__}"
        )


def serve_sync(cache: Any, request: Any) -> CacheResponse:
    """Answer ``request`` with a sync cache or tier (anything with the four methods).

    This is what ``cachet.sync.Cache.__call__`` does. A value that is not a request
    raises :class:`~cachet.CacheError`.
    """
    if isinstance(request, GetRequest):
        return GetResponse(cache.get(request.key))
    if isinstance(request, InsertRequest):
        return InsertResponse(cache.insert(request.key, request.entry))
    if isinstance(request, InvalidateRequest):
        cache.invalidate(request.key)
        return InvalidateResponse()
    if isinstance(request, ClearRequest):
        cache.clear()
        return ClearResponse()
    if isinstance(request, UpdateRequest):
        return UpdateResponse(_updater(cache, request)(request.key, request.change))
    raise CacheError(f"not a cache request: {request!r}")


async def serve_async(cache: Any, request: Any) -> CacheResponse:
    """Answer ``request`` with an aio cache or async tier (``cachet.aio.Cache.__call__``)."""
    if isinstance(request, GetRequest):
        return GetResponse(await cache.get(request.key))
    if isinstance(request, InsertRequest):
        return InsertResponse(await cache.insert(request.key, request.entry))
    if isinstance(request, InvalidateRequest):
        await cache.invalidate(request.key)
        return InvalidateResponse()
    if isinstance(request, ClearRequest):
        await cache.clear()
        return ClearResponse()
    if isinstance(request, UpdateRequest):
        return UpdateResponse(await _updater(cache, request)(request.key, request.change))
    raise CacheError(f"not a cache request: {request!r}")


def _updater(tier: Any, request: UpdateRequest[Any]) -> Any:
    update = getattr(tier, "update", None)
    if update is None:
        raise UnsupportedError(f"{type(tier).__name__} has no atomic update to answer {request!r}")
    return update


def as_service(tier: Any) -> Any:
    """The service that answers requests with ``tier`` (the other adapter direction).

    A tier whose ``get`` is a coroutine function gives an async service; any other tier
    a sync one. Use it to put layers around a storage tier::

        l2 = stack(as_service(SQLiteTier("cache.db")), timeout(0.5), circuit_breaker())

    A ``Cache`` is a service already; ``as_service(cache)`` returns it unchanged.

    >>> from cachet.testing import MockTier
    >>> svc = as_service(MockTier.with_data({"k": 1}))
    >>> svc(GetRequest("k")).entry.value
    1
    """
    if isinstance(tier, CacheBase):  # a cache of either frontend answers requests itself
        return tier
    missing = [m for m in ("get", "insert", "invalidate", "clear") if not callable(getattr(tier, m, None))]
    if missing:
        raise TypeError(f"{type(tier).__name__} is not a tier: it lacks {', '.join(missing)}()")

    if inspect.iscoroutinefunction(tier.get):
        async def serve_tier_async(request: CacheRequest) -> CacheResponse:
            return await serve_async(tier, request)

        serve_tier_async.__qualname__ = f"as_service({tier!r})"
        return serve_tier_async

    def serve_tier(request: CacheRequest) -> CacheResponse:
        return serve_sync(tier, request)

    serve_tier.__qualname__ = f"as_service({tier!r})"
    return serve_tier


def _expect(response: Any, kind: type, request: Any) -> Any:
    if not isinstance(response, kind):
        raise UnexpectedResponseError(request, response, kind)
    return response


class ServiceAdapter:
    """Makes a service (a callable from request to response) a tier.

    The adapter is sync (plain methods) for a sync service and async (coroutine
    methods, for ``cachet.aio``) for an async one, as :func:`is_async_service` tells;
    pass ``is_async=`` when it cannot tell (a plain function returning a coroutine).
    A response of the wrong kind raises :class:`UnexpectedResponseError` (a
    ``CacheError``). The adapter has no ``len``: a service cannot count.

    >>> from cachet import CacheEntry
    >>> from cachet.testing import MockTier
    >>> tier = ServiceAdapter(as_service(MockTier()))
    >>> tier.insert("k", CacheEntry(1))
    <InsertOutcome.ACCEPTED: 'accepted'>
    >>> tier.get("k").value
    1
    """

    def __init__(self, service: Any, *, is_async: bool | None = None) -> None:
        if not callable(service):
            raise TypeError(f"a service must be callable, not {type(service).__name__}")
        self.service = service
        self.is_async = is_async_service(service) if is_async is None else bool(is_async)
        if self.is_async:
            self.get, self.insert = self._aget, self._ainsert  # type: ignore[method-assign, assignment]
            self.invalidate, self.clear = self._ainvalidate, self._aclear  # type: ignore[method-assign, assignment]
            self.update = self._aupdate  # type: ignore[method-assign, assignment]

    def get(self, key: Any) -> Any:
        """Send ``GetRequest(key)``; the entry, or ``None`` on a miss."""
        req = GetRequest(key)
        return _expect(self.service(req), GetResponse, req).entry

    def insert(self, key: Any, entry: Any) -> InsertOutcome:
        """Send ``InsertRequest(key, entry)``; the outcome."""
        req = InsertRequest(key, entry)
        return _expect(self.service(req), InsertResponse, req).outcome  # type: ignore[no-any-return]

    def invalidate(self, key: Any) -> None:
        """Send ``InvalidateRequest(key)``."""
        req = InvalidateRequest(key)
        _expect(self.service(req), InvalidateResponse, req)

    def clear(self) -> None:
        """Send ``ClearRequest()``."""
        req = ClearRequest()
        _expect(self.service(req), ClearResponse, req)

    def update(self, key: Any, change: Any) -> Any:
        """Send ``UpdateRequest(key, change)``; the change's result."""
        req = UpdateRequest(key, change)
        return _expect(self.service(req), UpdateResponse, req).result

    async def _aupdate(self, key: Any, change: Any) -> Any:
        req = UpdateRequest(key, change)
        return _expect(await self.service(req), UpdateResponse, req).result

    async def _aget(self, key: Any) -> Any:
        req = GetRequest(key)
        return _expect(await self.service(req), GetResponse, req).entry

    async def _ainsert(self, key: Any, entry: Any) -> InsertOutcome:
        req = InsertRequest(key, entry)
        return _expect(await self.service(req), InsertResponse, req).outcome  # type: ignore[no-any-return]

    async def _ainvalidate(self, key: Any) -> None:
        req = InvalidateRequest(key)
        _expect(await self.service(req), InvalidateResponse, req)

    async def _aclear(self) -> None:
        req = ClearRequest()
        _expect(await self.service(req), ClearResponse, req)

    def __repr__(self) -> str:
        return f"ServiceAdapter({self.service!r})"
