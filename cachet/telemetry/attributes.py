"""Names of the logger, record fields and events (SPEC §6), as constants.

They are defined in the core (``cachet._core.attributes``), which decides when each
event happens; this is their public home.
"""

from __future__ import annotations

from .._core.attributes import *  # noqa: F403  (the public face of the core's names)
from .._core.attributes import __all__ as __all__
