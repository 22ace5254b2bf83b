"""The blocking frontend: ``from cachet.sync import Cache``."""

from ._cache import Cache as Cache
from ._cache import CacheBuilder as CacheBuilder

__all__ = ["Cache", "CacheBuilder"]
