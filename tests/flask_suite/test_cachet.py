"""Flask-Caching's own backend tests against cachet's backend: copied into Flask-Caching's
test tree by ``tests/test_flask_suite.py`` and run there with its ``conftest.py``, as it
tests its own backends. Nothing of ``GenericCacheTests`` is edited or skipped."""

import os
import uuid

import pytest
from test_backend_cache import GenericCacheTests

from cachet.integrations.flask import CachetCache

RUN = uuid.uuid4().hex[:8]


class TestCachetCache(GenericCacheTests):
    _can_use_fast_sleep = False  # cachet reads its own clock, not cachelib's (as RedisCache)

    @pytest.fixture(params=["sqlite", "memory", "redis"])
    def make_cache(self, request, tmp_path):
        location = {"sqlite": str(tmp_path / "cache.db"), "memory": "memory",
                    "redis": os.environ["CACHET_REDIS_URL"]}[request.param]
        options = {"NAMESPACE": f"flask-{RUN}-{uuid.uuid4().hex[:6]}", "SECRET": b"flask suite"}
        c = CachetCache(location, options=options)
        yield lambda: c
        c.clear()


def test_the_app_factory_builds_it(tmp_path):
    from flask import Flask
    from flask_caching import Cache

    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", CACHE_TYPE="cachet.integrations.flask.CachetCache",
                      CACHE_CACHET_LOCATION=str(tmp_path / "app.db"), CACHE_KEY_PREFIX="app:")
    cache = Cache(app)
    with app.app_context():
        assert cache.set("k", [1]) and cache.get("k") == [1]
        assert cache.cache.inc("n") == 1 and cache.cache.inc("n", 5) == 6  # the backend itself
