"""The asyncio and trio frontend: ``from cachet.aio import Cache``."""

from ._cache import AsyncCacheBuilder as AsyncCacheBuilder
from ._cache import Cache as Cache

__all__ = ["AsyncCache", "AsyncCacheBuilder", "Cache"]

AsyncCache = Cache
