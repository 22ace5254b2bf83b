"""Built-in storage tiers."""

from ._memory import MemoryTier as MemoryTier

__all__ = ["MemoryTier"]
