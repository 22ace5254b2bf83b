from __future__ import annotations

from collections.abc import Iterator

import pytest

from cachet.testing import ManualClock

from .frontends import Frontend
from .redis_server import RedisServer, running_server

# Run inside Django's and Flask-Caching's own test trees (test_django_suite.py,
# test_flask_suite.py), not collected here.
collect_ignore = ["django_suite", "flask_suite"]


@pytest.fixture(params=["sync", "asyncio", "trio"])
def frontend(request: pytest.FixtureRequest) -> Frontend:
    return Frontend(request.param)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: follows ``frontend`` when a test uses it (sync runs on asyncio)."""
    if "frontend" in request.fixturenames:
        name = request.getfixturevalue("frontend").name
        return "asyncio" if name == "sync" else name
    return getattr(request, "param", "asyncio")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Async tests that do not use `frontend` still run on both backends.
    if "anyio_backend" in metafunc.fixturenames and "frontend" not in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000.0)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A private redis-server shared by one test module."""
    with running_server() as s:
        yield s


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server only this test uses (it may be killed and restarted)."""
    with running_server() as s:
        yield s
