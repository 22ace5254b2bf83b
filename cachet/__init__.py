"""cachet: a multi-tier cache with one set of semantics for blocking code, asyncio and trio.

>>> from cachet import Cache
>>> cache = Cache.builder().memory(1000).ttl(60).build()
>>> cache.insert("k", 1)
<InsertOutcome.ACCEPTED: 'accepted'>
>>> cache.get("k").value
1
"""

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
from ._core.version import __version__ as __version__
from .aio import AsyncCacheBuilder as AsyncCacheBuilder
from .aio import Cache as AsyncCache
from .aio._cache import AsyncCachedCallable as AsyncCachedCallable
from .aio._cache import AsyncCacheDecorator as AsyncCacheDecorator
from .aio._cache import AsyncCachedFunction as AsyncCachedFunction
from .aio._cache import BoundAsyncCachedFunction as BoundAsyncCachedFunction
from .sync import Cache as Cache
from .sync import CacheBuilder as CacheBuilder
from .sync._cache import BoundCachedFunction as BoundCachedFunction
from .sync._cache import CachedCallable as CachedCallable
from .sync._cache import CacheDecorator as CacheDecorator
from .sync._cache import CachedFunction as CachedFunction

__all__ = [
    "AsyncCache",
    "AsyncCacheBuilder",
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
