"""Operations as values (SPEC §5): requests, responses, adapters both ways."""

from __future__ import annotations

import inspect
from typing import Any

from ._core.errors import CacheError
from ._core.policy import InsertOutcome
from ._core.requests import (
    CacheRequest as CacheRequest,
)
from ._core.requests import (
    CacheResponse as CacheResponse,
)
from ._core.requests import (
    ClearRequest as ClearRequest,
)
from ._core.requests import (
    ClearResponse as ClearResponse,
)
from ._core.requests import (
    GetRequest as GetRequest,
)
from ._core.requests import (
    GetResponse as GetResponse,
)
from ._core.requests import (
    InsertRequest as InsertRequest,
)
from ._core.requests import (
    InsertResponse as InsertResponse,
)
from ._core.requests import (
    InvalidateRequest as InvalidateRequest,
)
from ._core.requests import (
    InvalidateResponse as InvalidateResponse,
)

__all__ = [
    "CacheRequest", "CacheResponse", "ClearRequest", "ClearResponse", "GetRequest",
    "GetResponse", "InsertRequest", "InsertResponse", "InvalidateRequest",
    "InvalidateResponse", "ServiceAdapter",
]


def serve_sync(cache: Any, request: Any) -> Any:
    """Answer ``request`` with a sync cache (or tier)."""
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
    raise CacheError(f"not a cache request: {request!r}")


async def serve_async(cache: Any, request: Any) -> Any:
    """Answer ``request`` with an aio cache (or async tier)."""
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
    raise CacheError(f"not a cache request: {request!r}")


def _expect(response: Any, kind: type, request: Any) -> Any:
    if not isinstance(response, kind):
        raise CacheError(
            f"service answered {request!r} with {response!r}; expected a {kind.__name__}"
        )
    return response


class ServiceAdapter:
    """Makes a service (a callable from request to response) a tier.

    A coroutine-function service gives an async tier (for ``cachet.aio``); a plain
    callable gives a sync tier.
    """

    def __init__(self, service: Any) -> None:
        if not callable(service):
            raise TypeError(f"a service must be callable, not {type(service).__name__}")
        self.service = service
        call = getattr(service, "__call__", service)  # noqa: B004
        self.is_async = inspect.iscoroutinefunction(service) or inspect.iscoroutinefunction(call)
        if self.is_async:
            self.get, self.insert = self._aget, self._ainsert  # type: ignore[method-assign]
            self.invalidate, self.clear = self._ainvalidate, self._aclear  # type: ignore[method-assign]

    def get(self, key: Any) -> Any:
        req = GetRequest(key)
        return _expect(self.service(req), GetResponse, req).entry

    def insert(self, key: Any, entry: Any) -> InsertOutcome:
        req = InsertRequest(key, entry)
        return _expect(self.service(req), InsertResponse, req).outcome  # type: ignore[no-any-return]

    def invalidate(self, key: Any) -> None:
        req = InvalidateRequest(key)
        _expect(self.service(req), InvalidateResponse, req)

    def clear(self) -> None:
        req = ClearRequest()
        _expect(self.service(req), ClearResponse, req)

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
