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
import tarfile
from importlib.metadata import version
from pathlib import Path

from .redis_server import RedisServer
from .test_django_suite import CACHE, ROOT

HERE = Path(__file__).resolve().parent / "flask_suite"


def flask_caching_tests() -> Path:
    """Flask-Caching's ``tests/`` folder for the installed version, fetched once."""
    v = version("flask-caching")
    target = CACHE / f"flask-caching-{v}"
    if not (target / "tests" / "test_backend_cache.py").exists():
        download = CACHE / "downloads"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "--dest", str(download), f"flask-caching=={v}"],
                       check=True, timeout=300)
        (sdist,) = [p for p in download.glob("*.tar.gz") if re.fullmatch(rf"flask[-_]caching-{re.escape(v)}\.tar\.gz", p.name, re.I)]
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            top = tar.getnames()[0].split("/")[0]
            members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"]]
            tar.extractall(target.parent / "unpack", members=members, filter="data")
        (target.parent / "unpack" / top).rename(target)
    return target / "tests"


def test_flask_caching_generic_tests_pass(tmp_path: Path, server: RedisServer) -> None:
    tests = flask_caching_tests()
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
