"""What ``cachet.sync.Cache`` and ``cachet.aio.Cache`` share that is not I/O.

Both are thin drivers over one :class:`~cachet._core.stack.Core`: a public method tries
the core's hit (``self._hit``, one plain call) and otherwise drives the flow the core
returns for its slow path. What differs between them is only how an effect is carried
out (called or awaited), where background work runs (an executor or a task group) and
how the cache is opened and closed. The rest lives here, once.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from ._core.clock import Clock
from ._core.errors import CacheError
from ._core.hit import never_hit
from ._core.stack import Core

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CacheBase(Generic[K, V]):
    """The state both frontends hold: the core, the tiers the cache opened, open/closed."""

    def __init__(self, core: Core, owned: list[Any]) -> None:
        self._core = core
        self._owned = owned  # the tiers (and backplane) the cache opened, closed with it
        self._closed = False
        self._serving(True)

    def _serving(self, on: bool) -> None:
        """Open or shut the fast paths: the hit, and a load as plain calls
        (``Core.start_load``). A cache that cannot serve now (closed, or not entered)
        takes the slow path, which says why."""
        core = self._core
        self._hit = core.hit if on else never_hit
        self._start_load = core.start_load if on and core.direct_load else None

    @property
    def name(self) -> str:
        """The configured name (the top builder's ``.name()``), or a generated one."""
        return self._core.name

    @property
    def clock(self) -> Clock:
        """The clock every ttl, refresh and timestamp is read from."""
        return self._core.clock

    def stats(self) -> dict[str, Any]:
        """Counts per tier (hits, misses, expired, errors, inserts, ...) and coalesced waits."""
        return self._core.stats()

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"cache {self.name!r} is closed")

    def __repr__(self) -> str:
        kind = f"{type(self).__module__.rsplit('._', 1)[0]}.{type(self).__qualname__}"
        return f"<{kind} {self.name!r} tiers={[lv.name for lv in self._core.levels]}>"
