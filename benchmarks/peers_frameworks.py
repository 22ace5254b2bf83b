"""The framework backends against the frameworks' own, for ``compare.py``: Django's
``cache.get`` and Flask-Caching's ``cache.get`` through cachet's backends, an in-process
hit (against ``LocMemCache`` / ``SimpleCache``) and a Redis hit with the in-process tier
missing (against Django's ``RedisCache``, django-redis and Flask-Caching's ``RedisCache``).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers_redis import VALUE, _interleave
from peers_sync import measure_hits

KEYS = ["user:42", "user:43"]  # the L2 rows alternate between two keys (see l2_hits)
OUR = "cachet.integrations.django.CachetCache"


def _django(caches: dict[str, Any]) -> Any:
    import django
    from django.conf import settings

    settings.configure(CACHES=caches, SECRET_KEY="benchmark", USE_TZ=True)
    django.setup()
    from django.core.cache import caches as handler

    return handler


def hit_cases(folder: str) -> dict[str, list[Any]]:
    """(name, kind, settings, setup) rows of the two in-process hit tables."""
    from flask_caching.backends import SimpleCache

    from cachet.integrations.flask import CachetCache as FlaskCachet

    handler = _django({
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "cachet_memory": {"BACKEND": OUR, "LOCATION": "memory"},
        "cachet_sqlite": {"BACKEND": OUR, "LOCATION": f"{folder}/django.db"},
    })

    def django_get(alias: str) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            c = handler[alias]
            c.set(KEYS[0], VALUE)
            assert c.get(KEYS[0]) == VALUE
            return lambda: c.get(KEYS[0])
        return setup

    def flask_get(make: Callable[[], Any]) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            c = make()
            c.set(KEYS[0], VALUE)
            assert c.get(KEYS[0]) == VALUE
            return lambda: c.get(KEYS[0])
        return setup

    return {
        "django_hit": [
            ("Django LocMemCache (reference)", "floor", "`django.core.cache.backends.locmem.LocMemCache`, `cache.get(k)`", django_get("default")),
            ("cachet backend, memory", "cachet", "`LOCATION: 'memory'`: a copying memory tier", django_get("cachet_memory")),
            ("cachet backend, memory over SQLite", "cachet", "the default stack, read from memory", django_get("cachet_sqlite")),
        ],
        "flask_hit": [
            ("Flask-Caching SimpleCache (reference)", "floor", "`flask_caching.backends.SimpleCache()`, `cache.get(k)`", flask_get(SimpleCache)),
            ("cachet backend, memory", "cachet", "`CachetCache('memory')`",
             flask_get(lambda: FlaskCachet("memory"))),
            ("cachet backend, memory over SQLite", "cachet", "`CachetCache(path)`, read from memory",
             flask_get(lambda: FlaskCachet(f"{folder}/flask.db"))),
        ],
    }


def hits(rounds: int, number: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        tables = hit_cases(folder)
        out = {}
        for table, cases in tables.items():
            med = measure_hits([(n, k, s, setup) for n, k, s, setup in cases], rounds, number)
            out[table] = {"rounds": rounds, "number": number,
                          "rows": [{"case": n, "ns": med[n], "kind": k, "settings": s} for n, k, s, _ in cases]}
        return out


L2_SETTINGS = {
    "Django RedisCache": "`django.core.cache.backends.redis.RedisCache` (redis-py, pickle)",
    "django-redis": "`django_redis.cache.RedisCache` (its default client, pickle)",
    "cachet Django backend (L1 miss)": "`LOCATION: redis://...`, `OPTIONS: {'L1_MAX_ENTRIES': 1}` and two keys read in turn, so every get misses memory, reads Redis, checks the HMAC, unpickles and promotes",
    "Flask-Caching RedisCache": "`flask_caching.backends.RedisCache` (pickle)",
    "cachet Flask backend (L1 miss)": "`CachetCache(url, options={'L1_MAX_ENTRIES': 1})`, the same two keys in turn",
}


def l2_hits(rounds: int, ops: int) -> dict[str, float]:
    """Median ns of a get served by Redis, each library reading what it stored."""
    from flask_caching.backends import RedisCache as FlaskRedis

    from cachet.integrations.flask import CachetCache as FlaskCachet
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        url = server.url
        host, port = url.split("//", 1)[1].split("/")[0].split(":")
        handler = _django({
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
            "django_redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                             "KEY_PREFIX": "dr"},
            "cachet": {"BACKEND": OUR, "LOCATION": url, "OPTIONS": {"L1_MAX_ENTRIES": 1}},
        })
        flask_redis = FlaskRedis(host=host, port=int(port), key_prefix="fr:")
        flask_cachet = FlaskCachet(url, options={"L1_MAX_ENTRIES": 1, "SECRET": b"benchmark"})
        def alternating(get: Callable[[str], Any]) -> Callable[[], Any]:
            turn = [0]  # each variant's own: its reads alternate between the two keys

            def read() -> Any:
                turn[0] ^= 1
                return get(KEYS[turn[0]])
            return read

        variants = []
        for name, c in [("Django RedisCache", handler["default"]), ("django-redis", handler["django_redis"]),
                        ("cachet Django backend (L1 miss)", handler["cachet"]),
                        ("Flask-Caching RedisCache", flask_redis), ("cachet Flask backend (L1 miss)", flask_cachet)]:
            for k in KEYS:
                c.set(k, VALUE)
                assert c.get(k) == VALUE, name
            variants.append((name, alternating(c.get)))
        samples: dict[str, list[int]] = {}

        def add(name: str, ns: int) -> None:
            samples.setdefault(name, []).append(ns)

        _interleave(variants, ops // 4, lambda n, ns: None)
        for _ in range(rounds):
            _interleave(variants, ops, add)
        return {k: statistics.median(v) for k, v in samples.items()}
