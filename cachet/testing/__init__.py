"""Test utilities for code that uses cachet, and for tiers written for it.

- :class:`MockTier`: an in-memory tier that records every operation and fails on demand;
- :class:`ChaosTier` / :class:`AsyncChaosTier`: wrappers that inject random errors, delays
  and hangs into a tier (:mod:`cachet.testing.chaos`);
- :class:`ManualClock`: cache time that moves only when the test says so;
- :mod:`cachet.testing.conformance`: the tier contract as a test suite
  (:class:`TierContract`, :func:`check_tier`);
- :mod:`cachet.testing.strategies`: hypothesis strategies for keys, values, entries and
  operation sequences (import it explicitly; it needs ``hypothesis``).
"""

from .._core.clock import ManualClock as ManualClock
from ._mock import MockTier as MockTier
from ._mock import MockTierError as MockTierError
from .chaos import AsyncChaosTier as AsyncChaosTier
from .chaos import ChaosError as ChaosError
from .chaos import ChaosTier as ChaosTier
from .conformance import ConformanceError as ConformanceError
from .conformance import TierContract as TierContract
from .conformance import check_tier as check_tier

__all__ = ["AsyncChaosTier", "ChaosError", "ChaosTier", "ConformanceError", "ManualClock", "MockTier", "MockTierError", "TierContract", "check_tier"]
