"""The blocking frontend: ``from cachet.sync import Cache``."""

from ._builder import CacheBuilder as CacheBuilder
from ._cache import Cache as Cache

__all__ = ["Cache", "CacheBuilder"]
