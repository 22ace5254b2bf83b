"""A Django cache backend over cachet: ``CACHES = {"default": {"BACKEND":
"cachet.integrations.django.CachetCache", ...}}``.

Django makes one backend object per thread and calls ``close()`` after every request, so
the cachet cache behind it is shared: one per configuration in the process (LOCATION,
OPTIONS, MAX_ENTRIES, CULL_FREQUENCY), opened on first use and closed at exit. Django's
rules are kept: its timeouts (``None`` forever, ``0`` or less expire now), key
prefixes, versions and ``KEY_FUNCTION``, values copied (pickled) on the way in, and
``MAX_ENTRIES`` with ``CULL_FREQUENCY`` (drop that fraction of the oldest entries when
full; 0: all of them).

``LOCATION`` picks the tier below memory (see ``docs/guides/django.md``):

- a file path, or empty: memory over SQLite (empty: a file in a folder of the system's
  temporary directory that only this user can write);
- ``redis://...`` / ``rediss://...`` / ``unix://...``: memory over Redis;
- ``memory``: memory alone.

Pickles below memory are signed (HMAC) with a key derived from ``SECRET_KEY`` unless
``OPTIONS["SECRET"]`` gives one.

``OPTIONS`` also takes ``SECRET``, ``STAMPEDE_PROTECTION`` (default ``True``),
``L1_MAX_ENTRIES`` (memory over another tier; default ``MAX_ENTRIES``), ``BACKPLANE``
(``True``: a :class:`~cachet.backplane.RedisBackplane` on the Redis URL, so the
in-process copies of every process stay coherent) and ``NAMESPACE``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from ..sync import Cache
from ._shared import OPTION_NAMES, pickle_errors, shared_cache

__all__ = ["CachetCache"]


class CachetCache(BaseCache):
    """A Django cache backend: memory over SQLite (or Redis, or memory alone) through a
    :class:`cachet.sync.Cache`; ``a``-prefixed methods are Django's async path."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        super().__init__({**params, "OPTIONS": options})
        unknown = set(options) - OPTION_NAMES - {"MAX_ENTRIES", "CULL_FREQUENCY"}
        if unknown:
            raise ValueError(f"CachetCache: unknown OPTIONS {sorted(unknown)}; known: "
                             f"{sorted(OPTION_NAMES | {'MAX_ENTRIES', 'CULL_FREQUENCY'})}")
        self._location = location or ""
        self._options = {k: options[k] for k in OPTION_NAMES if k in options}
        self._cache: Cache[str, Any] | None = None

    @property
    def cache(self) -> Cache[str, Any]:
        """The :class:`cachet.sync.Cache` behind this backend, shared by every backend
        object of the same configuration in the process."""
        cache = self._cache
        if cache is None:
            freq = self._cull_frequency
            options = {"SECRET": _secret(), **self._options}
            cache = self._cache = shared_cache(self._location, options, self._max_entries,
                                               1.0 if freq == 0 else 1.0 / freq)
        return cache

    def _ttl(self, timeout: Any) -> float | None:
        """Django's timeout as a per-call ttl: ``None`` forever, 0 or less expire now."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else float(timeout) if timeout > 0 else 0.0

    # -- the operations ----------------------------------------------------------------

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        with pickle_errors():
            return self.cache.add(key, value, ttl=self._ttl(timeout))

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        entry = self.cache.get(self.make_and_validate_key(key, version=version))
        return default if entry is None else entry.value

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        with pickle_errors():
            self.cache.insert(key, value, ttl=self._ttl(timeout))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self.cache.touch(self.make_and_validate_key(key, version=version), self._ttl(timeout))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self.cache.delete(self.make_and_validate_key(key, version=version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self.cache.contains(self.make_and_validate_key(key, version=version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        try:
            return self.cache.incr(self.make_and_validate_key(key, version=version), delta)
        except KeyError:
            raise ValueError(f"Key '{key}' not found") from None

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(k, version=version): k for k in keys}
        return {made[k]: e.value for k, e in self.cache.get_many(made).items()}

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[Any]:
        made = {self.make_and_validate_key(k, version=version): k for k in data}
        with pickle_errors():
            outcomes = self.cache.insert_many({k: data[made[k]] for k in made}, ttl=self._ttl(timeout))
        return [made[k] for k, outcome in outcomes.items() if outcome is not outcome.ACCEPTED]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self.cache.invalidate_many([self.make_and_validate_key(k, version=version) for k in keys])

    def clear(self) -> None:
        self.cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Django calls this after every request: the shared cache stays open (it is
        closed at exit)."""

    # -- the async path: an in-process hit answers on the event loop -------------------

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        entry = self.cache._hit(self.make_and_validate_key(key, version=version))
        if entry is not None:
            return entry.value
        return await super().aget(key, default, version)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        if self.cache._hit(self.make_and_validate_key(key, version=version)) is not None:
            return True
        return bool(await super().ahas_key(key, version))


def _secret() -> bytes:
    """What signs the pickles in a tier below memory unless ``OPTIONS["SECRET"]`` says
    otherwise: a key derived from ``SECRET_KEY``, which every process of the project shares."""
    return hashlib.sha256(b"cachet.integrations.django:" + settings.SECRET_KEY.encode()).digest()
