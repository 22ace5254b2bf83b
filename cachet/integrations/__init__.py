"""Framework backends: ``cachet.integrations.django.CachetCache`` (Django's ``CACHES``) and
``cachet.integrations.flask.CachetCache`` (Flask-Caching's ``CACHE_TYPE``). Each needs its
framework installed (the ``django`` and ``flask`` extras); importing this package does not."""
