"""Flask-Caching's own ``GenericCacheTests`` against ``cachet.integrations.flask.CachetCache``.

As ``test_django_suite.py`` does for Django: the sdist of the installed Flask-Caching is
fetched once (under ``~/.cache/cachet-tests``), ``tests/flask_suite/test_cachet.py`` is
added beside its ``test_backend_cache.py``, and its own pytest run (its ``conftest.py``)
runs the generic tests on memory, memory over SQLite and memory over Redis.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from .helpers import sdist_tests
from .redis_server import RedisServer
from .test_django_suite import ROOT

HERE = Path(__file__).resolve().parent / "flask_suite"


def test_flask_caching_generic_tests_pass(tmp_path: Path, server: RedisServer) -> None:
    tests = sdist_tests("flask-caching", version("flask-caching"), "test_backend_cache.py")
    shutil.copy(HERE / "test_cachet.py", tests / "test_cachet.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CACHET_REDIS_URL": server.url}
    run = subprocess.run([sys.executable, "-m", "pytest", "test_cachet.py", "-v", "-p", "no:cacheprovider",
                          "--basetemp", str(tmp_path / "t")], cwd=tests, env=env,
                         capture_output=True, text=True, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    passed = re.findall(r"^test_cachet\.py::TestCachetCache::(test_\w+)\[(\w+)\] PASSED", out, re.M)
    generic = {name for name, _ in passed}
    assert len(generic) >= 12, out[-3000:]  # every generic test ...
    assert len(passed) == 3 * len(generic), out[-3000:]  # ... on each of the three stacks
    assert "skipped" not in out.splitlines()[-1], out[-2000:]
    assert re.search(rf"\b{len(passed) + 1} passed\b", out), out[-2000:]
