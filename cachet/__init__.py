"""cachet: a multi-tier cache with one set of semantics for blocking code, asyncio and trio.

>>> from cachet import Cache
>>> cache = Cache.builder().memory(1000).ttl(60).build()
>>> cache.insert("k", 1)
<InsertOutcome.ACCEPTED: 'accepted'>
>>> cache.get("k").value
1
"""

from ._builder import BuilderBase as CacheBuilder
from ._core.clock import Clock as Clock
from ._core.clock import ManualClock as ManualClock
from ._core.clock import SystemClock as SystemClock
from ._core.entry import CacheEntry as CacheEntry
from ._core.errors import CacheError as CacheError
from ._core.errors import LoaderError as LoaderError
from ._core.errors import LoaderTimeout as LoaderTimeout
from ._core.errors import ReentrantLoadError as ReentrantLoadError
from ._core.errors import SerializationError as SerializationError
from ._core.errors import TierError as TierError
from ._core.errors import UnsupportedError as UnsupportedError
from ._core.policy import ExpirationPolicy as ExpirationPolicy
from ._core.policy import InsertOutcome as InsertOutcome
from ._core.policy import InsertPolicy as InsertPolicy
from ._core.policy import TimeToRefresh as TimeToRefresh
from ._decorator import AsyncCachedCallable as AsyncCachedCallable
from ._decorator import AsyncCacheDecorator as AsyncCacheDecorator
from ._decorator import AsyncCachedFunction as AsyncCachedFunction
from ._decorator import BoundAsyncCachedFunction as BoundAsyncCachedFunction
from ._decorator import BoundCachedFunction as BoundCachedFunction
from ._decorator import CachedCallable as CachedCallable
from ._decorator import CacheDecorator as CacheDecorator
from ._decorator import CachedFunction as CachedFunction
from .aio import Cache as AsyncCache
from .sync import Cache as Cache

__version__ = "0.1.0"

__all__ = [
    "AsyncCache",
    "AsyncCacheDecorator",
    "AsyncCachedCallable",
    "AsyncCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheDecorator",
    "CachedCallable",
    "CachedFunction",
    "Cache",
    "CacheBuilder",
    "CacheEntry",
    "CacheError",
    "Clock",
    "ExpirationPolicy",
    "InsertOutcome",
    "InsertPolicy",
    "LoaderError",
    "LoaderTimeout",
    "ManualClock",
    "ReentrantLoadError",
    "SerializationError",
    "SystemClock",
    "TierError",
    "TimeToRefresh",
    "UnsupportedError",
]
