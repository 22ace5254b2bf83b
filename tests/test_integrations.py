"""The framework backends' own configuration, beyond what the frameworks' suites check:
options refused or honoured, the shared cache, the backplane, timeouts, errors."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

from .redis_server import RedisServer


@pytest.fixture(scope="module")
def django_caches() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="integration tests", CACHES={})
        django.setup()
    from cachet.integrations.django import CachetCache

    return CachetCache


def test_unknown_options_are_refused_with_the_known_ones(django_caches: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown OPTIONS \['SECERT'\].*'SECRET'"):
        django_caches("memory", {"OPTIONS": {"SECERT": "x"}})
    from cachet.integrations.flask import CachetCache

    with pytest.raises(ValueError, match=r"unknown \['TTL'\]"):
        CachetCache("memory", options={"TTL": 5})


def test_backends_of_one_configuration_share_one_cache(django_caches: Any, tmp_path: Path) -> None:
    params = {"OPTIONS": {"NAMESPACE": uuid.uuid4().hex}}
    a, b = django_caches(str(tmp_path / "c.db"), params), django_caches(str(tmp_path / "c.db"), params)
    assert a.cache is b.cache  # Django makes one backend per thread: they share the L1
    a.set("k", [1])
    a.close()  # after every request: the cache stays open
    assert b.get("k") == [1]
    other = django_caches(str(tmp_path / "c.db"), {"OPTIONS": {"MAX_ENTRIES": 5, **params["OPTIONS"]}})
    assert other.cache is not a.cache


def test_pickles_below_memory_are_signed_with_a_key_from_secret_key(django_caches: Any, tmp_path: Path) -> None:
    backend = django_caches(str(tmp_path / "s.db"), {"OPTIONS": {"NAMESPACE": uuid.uuid4().hex}})
    backend.set("k", 1)
    boundary = backend.cache._core.levels[1].tier
    assert boundary.serializer.signed  # HMAC, not a bare checksum


def test_an_unpicklable_value_raises_pickle_error_on_both_backends(django_caches: Any) -> None:
    from cachet.integrations.flask import CachetCache

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise pickle.PickleError("no")

    with pytest.raises(pickle.PickleError):
        django_caches("memory", {}).set("u", Unpicklable())
    with pytest.raises(pickle.PickleError):
        CachetCache("memory").add("u", Unpicklable())


def test_flask_timeouts_zero_is_forever_and_negative_expires(tmp_path: Path) -> None:
    from cachet.integrations.flask import CachetCache

    c = CachetCache(str(tmp_path / "f.db"), options={"NAMESPACE": uuid.uuid4().hex})
    assert c.set("forever", 1, timeout=0) and c.cache.get("forever").ttl is None
    assert c.set("gone", 1, timeout=-1) and c.get("gone") is None
    assert c.inc("n") == 1 and c.dec("n", 3) == -2


def test_redis_with_a_backplane(django_caches: Any, server: RedisServer) -> None:
    namespace = uuid.uuid4().hex
    backend = django_caches(server.url, {"OPTIONS": {"BACKPLANE": True, "NAMESPACE": namespace}})
    backend.set("k", "v")
    core = backend.cache._core
    assert core.publish is not None  # local writes are published to the other processes
    assert backend.get("k") == "v"
    assert [lv.name for lv in core.levels] == [f"{namespace}:l1", f"{namespace}:redis"]
