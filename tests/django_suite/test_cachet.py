"""Django's own cache tests against cachet's backend: copied into Django's test tree
(``tests/cache/``) by ``tests/test_django_suite.py`` and run with its ``runtests.py``, as
Django runs them against ``LocMemCache``. Nothing of ``BaseCacheTests`` is edited or
skipped."""

import os
import uuid

from cache.tests import BaseCacheTests, caches_setting_for_tests
from django.test import TestCase, override_settings

BACKEND = "cachet.integrations.django.CachetCache"
RUN = uuid.uuid4().hex[:8]  # each run its own SQLite file and Redis namespace
SQLITE = os.path.join(os.environ.get("CACHET_DJANGO_TMP", "/tmp"), f"cachet-django-{RUN}.sqlite3")


@override_settings(CACHES=caches_setting_for_tests(BACKEND=BACKEND, LOCATION=SQLITE))
class CachetMemoryOverSQLiteTests(BaseCacheTests, TestCase):
    """The default stack: memory over a SQLite file."""


@override_settings(CACHES=caches_setting_for_tests(BACKEND=BACKEND, LOCATION="memory"))
class CachetMemoryTests(BaseCacheTests, TestCase):
    """Memory alone."""


if os.environ.get("CACHET_REDIS_URL"):

    @override_settings(CACHES=caches_setting_for_tests(
        BACKEND=BACKEND, LOCATION=os.environ["CACHET_REDIS_URL"], OPTIONS={"NAMESPACE": f"dj-{RUN}"},
        # As Django's own RedisCacheTests: Redis has no MAX_ENTRIES to cull by.
        exclude={"cull", "zero_cull"}))
    class CachetMemoryOverRedisTests(BaseCacheTests, TestCase):
        """Memory over Redis (pickles signed with a key derived from SECRET_KEY)."""
