"""A custom middleware: log every request that reaches a tier, and its answer.

    python examples/logging_layer.py

A layer is a function from service to service. To serve both frontends, look at the
service you wrap: a coroutine function needs a coroutine function around it
(``is_async_service``); a plain function, a plain function. The same ``logged`` layer
wraps the L2 of a ``cachet.sync.Cache`` and of a ``cachet.aio.Cache`` below.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import anyio

from cachet import AsyncCache, Cache
from cachet.service import (
    CacheRequest,
    CacheResponse,
    GetResponse,
    InsertResponse,
    as_service,
    is_async_service,
    stack,
)
from cachet.tiers import MemoryTier

log = logging.getLogger("example.l2")


def logged(name: str, logger: logging.Logger = log) -> Any:
    """A layer that logs each request with its answer (or error) and how long it took."""

    def describe(request: CacheRequest) -> str:
        op = type(request).__name__.removesuffix("Request").lower()
        key = getattr(request, "key", None)
        return f"{name} {op}" + (f" {key!r}" if key is not None else "")

    def answer(response: CacheResponse) -> str:
        if isinstance(response, GetResponse):
            return "hit" if response.is_hit else "miss"
        if isinstance(response, InsertResponse):
            return response.outcome.value
        return "ok"

    def report(request: CacheRequest, t0: float, response: Any = None, error: Any = None) -> None:
        ms = (time.perf_counter() - t0) * 1000
        if error is None:
            logger.info("%s -> %s (%.2f ms)", describe(request), answer(response), ms)
        else:
            logger.warning("%s -> error %r (%.2f ms)", describe(request), error, ms)

    def layer(service: Any) -> Any:
        if is_async_service(service):
            async def logged_async(request: CacheRequest) -> CacheResponse:
                t0 = time.perf_counter()
                try:
                    response: CacheResponse = await service(request)
                except Exception as exc:
                    report(request, t0, error=exc)
                    raise
                report(request, t0, response)
                return response

            return logged_async

        def logged_sync(request: CacheRequest) -> CacheResponse:
            t0 = time.perf_counter()
            try:
                response: CacheResponse = service(request)
            except Exception as exc:
                report(request, t0, error=exc)
                raise
            report(request, t0, response)
            return response

        return logged_sync

    return layer


def run_sync() -> None:
    print("== sync: memory L1 over a logged MemoryTier L2")
    l2 = stack(as_service(MemoryTier(1000)), logged("sync-l2"))
    with Cache.builder().memory(100).fallback(Cache.builder().service(l2)).build() as cache:
        print("get user:1 ->", cache.get("user:1"))
        cache.insert("user:1", "Ada")
        hit = cache.get("user:1")
        assert hit is not None
        print("get user:1 ->", hit.value, "(an L1 hit: nothing logged)")
        cache.invalidate("user:1")
        cache.clear()


async def run_async() -> None:
    print("== aio: memory L1 over a logged aio Cache used as a service")
    inner = AsyncCache.builder().memory(1000).build()  # a cache is an (async) service
    async with inner:
        l2 = stack(inner, logged("aio-l2"))
        builder = AsyncCache.builder().memory(100).fallback(AsyncCache.builder().service(l2))
        async with builder.build() as cache:
            await inner.insert("user:2", "Grace")
            for note in ("(promoted from L2)", "(an L1 hit: nothing logged)"):
                got = await cache.get("user:2")
                assert got is not None
                print("get user:2 ->", got.value, note)
            await cache.invalidate("user:2")
            print("get user:2 ->", await cache.get("user:2"))


def main() -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="  log: %(message)s")
    run_sync()
    anyio.run(run_async)
    return 0


if __name__ == "__main__":
    sys.exit(main())
