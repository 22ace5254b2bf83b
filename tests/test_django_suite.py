"""Django's own ``BaseCacheTests`` against ``cachet.integrations.django.CachetCache``.

Django's test suite is not installed with Django: this fetches the sdist of the
installed version from the package index (once per machine, under
``~/.cache/cachet-tests``), adds ``tests/django_suite/test_cachet.py`` to its
``tests/cache/`` as Django's own backends are tested there, and runs ``runtests.py``.
Nothing of Django's tests is edited.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import django

from .helpers import sdist_tests
from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "django_suite"


def test_django_base_cache_tests_pass(tmp_path: Path, server: RedisServer) -> None:
    tests = sdist_tests("django", django.__version__, "runtests.py")
    shutil.copy(HERE / "test_cachet.py", tests / "cache" / "test_cachet.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CACHET_DJANGO_TMP": str(tmp_path), "CACHET_REDIS_URL": server.url}
    run = subprocess.run([sys.executable, "runtests.py", "cache.test_cachet", "--settings=test_sqlite",
                          "--parallel=1", "-v", "2"], cwd=tests, env=env, capture_output=True,
                         text=True, timeout=900)
    out = run.stderr + run.stdout
    assert run.returncode == 0, out[-5000:]
    ran = re.search(r"Ran (\d+) tests", out)
    assert ran is not None, out[-3000:]
    # unittest names a test "name (module.Class.name)" on Python 3.11+, "name (module.Class)" before.
    per_class = len(re.findall(r"\(cache\.test_cachet\.CachetMemoryTests[.)]", out))
    assert per_class >= 50, out[-3000:]  # every test of BaseCacheTests ran on each stack
    assert int(ran.group(1)) == 3 * per_class, out[-3000:]
    # Skipped: only the three culling tests on Redis, which Django skips for its own
    # RedisCache (Redis has no MAX_ENTRIES): memory and memory over SQLite skip none.
    skipped = re.findall(r"^(test_\w+) \(cache\.test_cachet\.(\w+)(?:\.\w+)?\) \.\.\. skipped", out, re.M)
    assert {(cls, name) for name, cls in skipped} == {
        ("CachetMemoryOverRedisTests", t) for t in ("test_cull", "test_zero_cull", "test_cull_delete_when_store_empty")}
    assert "FAILED" not in out and "ERROR" not in out and "OK (skipped=3)" in out
