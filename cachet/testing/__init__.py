"""Test utilities for code that uses cachet: ``MockTier``, ``ManualClock``."""

from .._core.clock import ManualClock as ManualClock
from ._mock import MockTier as MockTier
from ._mock import MockTierError as MockTierError

__all__ = ["ManualClock", "MockTier", "MockTierError"]
