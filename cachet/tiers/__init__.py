"""Built-in storage tiers, and the protocols a tier of your own implements."""

from typing import TYPE_CHECKING, Any

from .._core.tier import AsyncTier as AsyncTier
from .._core.tier import Tier as Tier
from ._memory import CopyingMemoryTier as CopyingMemoryTier
from ._memory import MemoryTier as MemoryTier
from ._sqlite import SQLiteTier as SQLiteTier

if TYPE_CHECKING:
    from ._redis import RedisTier as RedisTier

__all__ = ["AsyncTier", "CopyingMemoryTier", "MemoryTier", "RedisTier", "SQLiteTier", "Tier"]


def __getattr__(name: str) -> Any:
    # RedisTier is imported on first use: redis-py is optional and slow to import.
    if name == "RedisTier":
        from ._redis import RedisTier

        return RedisTier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
