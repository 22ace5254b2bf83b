"""Built-in storage tiers."""

from typing import TYPE_CHECKING, Any

from ._memory import MemoryTier as MemoryTier
from ._sqlite import SQLiteTier as SQLiteTier

if TYPE_CHECKING:
    from ._redis import RedisTier as RedisTier

__all__ = ["MemoryTier", "SQLiteTier", "RedisTier"]


def __getattr__(name: str) -> Any:
    # RedisTier is imported on first use: redis-py is optional and slow to import.
    if name == "RedisTier":
        from ._redis import RedisTier

        return RedisTier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
