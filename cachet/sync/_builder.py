"""The sync builder: the shared configuration, with sync tiers and a ``cachet.sync.Cache``."""

from __future__ import annotations

import inspect
import threading
from typing import Any, Generic, TypeVar

from .._builder import BuilderBase, TierSpec
from ._cache import Cache

K = TypeVar("K")
V = TypeVar("V")


class CacheBuilder(BuilderBase[K, V], Generic[K, V]):
    """Configures a :class:`cachet.sync.Cache` (``Cache.builder()``); every method returns
    the builder, and :meth:`build` validates the whole configuration at once."""

    def build(self) -> Cache[K, V]:
        """Validate the configuration and return the cache (``ValueError`` says what to change)."""
        core, owned, _ = self._assemble(_adapt, handoff=False, make_signal=threading.Event)
        return Cache(core, owned)


def _adapt(tier: Any, spec: TierSpec) -> tuple[tuple[Any, Any, Any, Any], Any]:
    if inspect.iscoroutinefunction(getattr(tier, "get", None)):
        raise ValueError(
            f"tier {spec.name!r} is async ({type(tier).__name__}); use it with cachet.aio.Cache"
        )
    ops = (tier.get, tier.insert, tier.invalidate, tier.clear)
    return ops, getattr(tier, "len", None)
