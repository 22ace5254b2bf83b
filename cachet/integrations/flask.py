"""A Flask-Caching backend over cachet: ``CACHE_TYPE = "cachet.integrations.flask.CachetCache"``.

The configuration keys, beside Flask-Caching's ``CACHE_DEFAULT_TIMEOUT``,
``CACHE_KEY_PREFIX`` and ``CACHE_THRESHOLD`` (the entries memory and SQLite keep):

- ``CACHE_CACHET_LOCATION``: a SQLite file path (empty, the default: a file in a folder
  of the temporary directory only this user can write), a Redis URL, or ``"memory"``;
- ``CACHE_CACHET_OPTIONS``: a dict of the Django backend's ``OPTIONS`` (``SECRET``,
  ``STAMPEDE_PROTECTION``, ``L1_MAX_ENTRIES``, ``BACKPLANE``, ``NAMESPACE``). Pickles
  below memory are signed with a key derived from the app's ``SECRET_KEY`` unless
  ``SECRET`` gives one.

Flask-Caching's rules are kept: a timeout of ``None`` is the default timeout, ``0`` is
"never expires" (unlike Django), a negative one expires now; ``inc`` of a missing key
counts from 0; values are copied (pickled) on the way in. As with the Django backend,
every backend of one configuration in the process shares one cachet cache.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from flask import Flask
from flask_caching.backends.base import BaseCache

from .._core.policy import InsertOutcome
from ..sync import Cache
from ._shared import OPTION_NAMES, pickle_errors, shared_cache

__all__ = ["CachetCache"]


class CachetCache(BaseCache):
    """A Flask-Caching backend: memory over SQLite (or Redis, or memory alone) through a
    :class:`cachet.sync.Cache`."""

    def __init__(self, location: str = "", *, default_timeout: int = 300, key_prefix: str = "",
                 threshold: int | None = 500, options: dict[str, Any] | None = None,
                 ignore_delete_many_errors: bool = False) -> None:
        super().__init__(default_timeout=default_timeout)
        # Flask-Caching 2.5 hands this to cachelib, as ignore_delete_many_errors; 2.4 has
        # no such argument and reads ignore_errors: set both, so that either version works.
        self.ignore_delete_many_errors = self.ignore_errors = ignore_delete_many_errors
        options = dict(options or {})
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise ValueError(f"CACHE_CACHET_OPTIONS: unknown {sorted(unknown)}; known: {sorted(OPTION_NAMES)}")
        self.key_prefix = key_prefix
        self.cache: Cache[str, Any] = shared_cache(location, options, threshold or None, None)

    @classmethod
    def factory(cls, app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]) -> CachetCache:
        options = dict(config.get("CACHE_CACHET_OPTIONS") or {})
        secret = app.config.get("SECRET_KEY")
        if "SECRET" not in options and secret:
            key = secret if isinstance(secret, bytes) else str(secret).encode()
            options["SECRET"] = hashlib.sha256(b"cachet.integrations.flask:" + key).digest()
        kwargs.setdefault("location", config.get("CACHE_CACHET_LOCATION", ""))
        kwargs.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX") or "")
        kwargs.setdefault("threshold", config.get("CACHE_THRESHOLD", 500))
        kwargs.setdefault("default_timeout", config.get("CACHE_DEFAULT_TIMEOUT", 300))
        return cls(*args, options=options, **kwargs)

    def _ttl(self, timeout: int | dt.timedelta | None) -> float | None:
        """Flask-Caching's timeout as a per-call ttl: 0 never expires, below 0 expire now."""
        seconds = self._normalize_timeout(timeout)
        return None if seconds == 0 else float(seconds) if seconds > 0 else 0.0

    # -- the operations ----------------------------------------------------------------

    def get(self, key: str) -> Any:
        entry = self.cache.get(self.key_prefix + key)
        return None if entry is None else entry.value

    def set(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        with pickle_errors():
            self.cache.insert(self.key_prefix + key, value, ttl=self._ttl(timeout))
        return True

    def add(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        with pickle_errors():
            return self.cache.add(self.key_prefix + key, value, ttl=self._ttl(timeout))

    def delete(self, key: str) -> bool:
        return self.cache.delete(self.key_prefix + key)

    def has(self, key: str) -> bool:
        return self.cache.contains(self.key_prefix + key)

    def get_many(self, *keys: str) -> list[Any]:
        found = self.cache.get_many([self.key_prefix + k for k in keys])
        return [e.value if (e := found.get(self.key_prefix + k)) is not None else None for k in keys]

    def get_dict(self, *keys: str) -> dict[str, Any]:
        return dict(zip(keys, self.get_many(*keys), strict=True))

    def set_many(self, mapping: dict[str, Any], timeout: int | dt.timedelta | None = None) -> list[Any]:
        with pickle_errors():
            outcomes = self.cache.insert_many({self.key_prefix + k: v for k, v in mapping.items()},
                                              ttl=self._ttl(timeout))
        return [k for k in mapping if outcomes[self.key_prefix + k] is InsertOutcome.ACCEPTED]

    def clear(self) -> bool:
        self.cache.clear()
        return True

    def inc(self, key: str, delta: int = 1) -> Any:
        """Atomic; a missing key counts from 0 (as Flask-Caching's other backends)."""
        full = self.key_prefix + key
        while True:
            try:
                return self.cache.incr(full, delta)
            except KeyError:
                if self.cache.add(full, delta, ttl=self._ttl(None)):
                    return delta

    def dec(self, key: str, delta: int = 1) -> Any:
        return self.inc(key, -delta)
