"""A Django view cached through cachet's Django backend: memory over a SQLite file.

``CACHES`` names ``cachet.integrations.django.CachetCache``; the view uses Django's own
``cache`` API (``get_or_set``, ``incr``, ``add``), which this backend makes atomic. Run
it to see two requests served, the second from the cache (the test suite does).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import django
from django.conf import settings


def configure(folder: str) -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="example only: use your project's secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        CACHES={"default": {
            "BACKEND": "cachet.integrations.django.CachetCache",
            "LOCATION": str(Path(folder) / "cache.sqlite3"),  # memory over this SQLite file
            "TIMEOUT": 300,
            "OPTIONS": {"MAX_ENTRIES": 10_000, "L1_MAX_ENTRIES": 1_000},
        }},
    )
    django.setup()


LOADS: list[int] = []


def product(request: object, product_id: int) -> object:
    from django.core.cache import cache
    from django.http import JsonResponse

    def load() -> dict[str, object]:
        LOADS.append(product_id)  # the expensive part: runs once per product
        return {"id": product_id, "name": f"product {product_id}"}

    data = cache.get_or_set(f"product:{product_id}", load)
    cache.add("views", 0)  # atomic: counts from 0 once, whoever comes first
    return JsonResponse({**data, "views": cache.incr("views")})


def main() -> list[dict[str, object]]:
    from django.test import Client

    client = Client()
    pages = [client.get("/product/7").json() for _ in range(2)]
    for page in pages:
        print(page)
    print(f"loads: {LOADS}")
    return pages


urlpatterns: list[object] = []

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        configure(folder)
        from django.urls import path

        urlpatterns.append(path("product/<int:product_id>", product))
        main()
