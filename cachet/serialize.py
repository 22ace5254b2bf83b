"""The byte boundary (SPEC §4). Filled in by the serialization work; see docs."""

from __future__ import annotations

from typing import Any


def encoded_tier(tier: Any, spec: Any) -> Any:
    raise NotImplementedError("serialization boundary is not built yet")
