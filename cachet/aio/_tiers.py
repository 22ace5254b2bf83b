"""How the aio frontend reaches each kind of tier.

- an async tier (coroutine methods) is awaited as it is;
- a sync tier marked ``nonblocking = True`` (memory, ``MockTier``) is called inline (the
  driver awaits only what returns a coroutine);
- any other sync tier (SQLite, a sync Redis client, your own) runs in worker threads
  through ``anyio.to_thread.run_sync``, at most ``limiter`` calls at once per cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from .._core.tier import Ops, tier_ops

AsyncFn = Callable[..., Awaitable[Any]]


def is_async_tier(tier: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(tier, "get", None))


def adapt(tier: Any, limiter: anyio.CapacityLimiter) -> tuple[Ops, AsyncFn | None]:
    """The tier's operations (``tier_ops``: ``None`` where it has none) and ``len``, as
    coroutine functions."""
    ops = tier_ops(tier)
    length = getattr(tier, "len", None)
    if is_async_tier(tier) or getattr(tier, "nonblocking", False):
        return ops, length
    wrap = partial(_threaded, limiter=limiter)
    get, insert, invalidate, clear, update, get_many = ops
    return ((wrap(get), wrap(insert), wrap(invalidate), wrap(clear), update and wrap(update),
             get_many and wrap(get_many)), (wrap(length) if length else None))


def _threaded(fn: Callable[..., Any], limiter: anyio.CapacityLimiter) -> AsyncFn:
    async def call(*args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    return call
