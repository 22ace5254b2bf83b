"""What the framework backends share: one cachet cache per configuration in the process,
built from the options both take, and what both frameworks expect of errors."""

from __future__ import annotations

import atexit
import getpass
import hashlib
import os
import pickle
import tempfile
import threading
from typing import Any

from .._core.errors import SerializationError
from ..sync import Cache

OPTION_NAMES = frozenset({"SECRET", "STAMPEDE_PROTECTION", "L1_MAX_ENTRIES", "BACKPLANE", "NAMESPACE"})
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

_shared: dict[tuple[Any, ...], Cache[str, Any]] = {}
_shared_lock = threading.Lock()


def shared_cache(location: str, options: dict[str, Any], max_entries: int | None,
                 cull: float | None) -> Cache[str, Any]:
    """The process's cache for this configuration, built on first use.

    ``location``: a SQLite file path (empty: a default file in a folder only this user
    can write), a Redis URL, or ``"memory"``. ``max_entries`` bounds memory and SQLite
    (Redis keeps its own bound); ``cull`` is the fraction of it evicted at once when full.
    """
    key = (location, tuple(sorted((k, repr(v)) for k, v in options.items())), max_entries, cull)
    with _shared_lock:
        cache = _shared.get(key)
        if cache is None:
            cache = _shared[key] = _build(location, options, max_entries, cull, key)
        return cache


def _build(location: str, options: dict[str, Any], max_entries: int | None, cull: float | None,
           identity: tuple[Any, ...]) -> Cache[str, Any]:
    namespace = options.get("NAMESPACE") or "cachet-" + hashlib.sha256(repr(identity).encode()).hexdigest()[:12]
    top = Cache.builder().name(f"{namespace}:l1")
    if options.get("STAMPEDE_PROTECTION", True):
        top = top.stampede_protection()
    culled = cull if max_entries is not None else None
    if location == "memory":
        return top.memory(max_entries, cull=culled, copy=True).build()
    top = top.memory(options.get("L1_MAX_ENTRIES", max_entries), cull=culled, copy=True)
    secret = options.get("SECRET")
    if secret is not None:
        top = top.serialize(secret=secret)
    if location.startswith(REDIS_SCHEMES):
        below = Cache.builder().name(f"{namespace}:redis").redis(location, namespace=namespace)
        if options.get("BACKPLANE"):
            from ..backplane import RedisBackplane

            top = top.backplane(RedisBackplane(location, namespace=namespace))
    else:
        below = Cache.builder().name(f"{namespace}:sqlite").sqlite(
            location or _default_path(), namespace=namespace, max_entries=max_entries, cull=culled)
    return top.fallback(below).build()


def _default_path() -> str:
    """A SQLite file in a folder of the system's temporary directory that only this user
    can write (a folder others can write would let them plant pickles)."""
    folder = os.path.join(tempfile.gettempdir(), f"cachet-{getpass.getuser()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, "framework-cache.sqlite3")


class pickle_errors:
    """Both frameworks expect ``pickle.PickleError`` for a value that cannot be pickled."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, SerializationError) and isinstance(exc.__cause__, pickle.PickleError):
            raise exc.__cause__ from exc


@atexit.register
def _close_all() -> None:
    with _shared_lock:
        caches = list(_shared.values())
        _shared.clear()
    for cache in caches:
        cache.close()
