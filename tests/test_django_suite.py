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
import tarfile
from pathlib import Path

import django

from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "django_suite"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cachet-tests"


def django_tests() -> Path:
    """Django's ``tests/`` folder for the installed version, fetched once."""
    version = django.__version__
    target = CACHE / f"django-{version}"
    if not (target / "tests" / "runtests.py").exists():
        download = CACHE / "downloads"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "--dest", str(download), f"django=={version}"],
                       check=True, timeout=300)
        (sdist,) = download.glob(f"[dD]jango-{version}.tar.gz")
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"]]
            tar.extractall(target.parent / "unpack", members=members, filter="data")
        (target.parent / "unpack" / f"django-{version}").rename(target)
    return target / "tests"


def test_django_base_cache_tests_pass(tmp_path: Path, server: RedisServer) -> None:
    tests = django_tests()
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
    per_class = len(re.findall(r"\(cache\.test_cachet\.CachetMemoryTests\.", out))
    assert per_class >= 50, out[-3000:]  # every test of BaseCacheTests ran on each stack
    assert int(ran.group(1)) == 3 * per_class, out[-3000:]
    # Skipped: only the three culling tests on Redis, which Django skips for its own
    # RedisCache (Redis has no MAX_ENTRIES): memory and memory over SQLite skip none.
    skipped = re.findall(r"^(test_\w+) \(cache\.test_cachet\.(\w+)\.\w+\) \.\.\. skipped", out, re.M)
    assert {(cls, name) for name, cls in skipped} == {
        ("CachetMemoryOverRedisTests", t) for t in ("test_cull", "test_zero_cull", "test_cull_delete_when_store_empty")}
    assert "FAILED" not in out and "ERROR" not in out and "OK (skipped=3)" in out
