"""A Flask app cached through Flask-Caching with cachet's backend: memory over SQLite.

``CACHE_TYPE`` names ``cachet.integrations.flask.CachetCache``; ``@cache.cached`` and
``@cache.memoize`` work as with Flask-Caching's own backends, and the backend's ``inc``
is atomic. Run it to see two requests served, the second from the cache (the test suite
does).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Flask
from flask_caching import Cache

LOADS: list[int] = []


def create_app(folder: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="example only: use your app's secret",  # signs the pickles in SQLite
        CACHE_TYPE="cachet.integrations.flask.CachetCache",
        CACHE_CACHET_LOCATION=str(Path(folder) / "cache.sqlite3"),
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_THRESHOLD=10_000,
    )
    cache = Cache(app)

    @cache.memoize()
    def load_product(product_id: int) -> dict[str, object]:
        LOADS.append(product_id)  # the expensive part: runs once per product
        return {"id": product_id, "name": f"product {product_id}"}

    @app.get("/product/<int:product_id>")
    def product(product_id: int) -> dict[str, object]:
        return {**load_product(product_id), "views": cache.cache.inc("views")}

    return app


def main(folder: str) -> list[dict[str, object]]:
    client = create_app(folder).test_client()
    pages = [client.get("/product/7").get_json() for _ in range(2)]
    for page in pages:
        print(page)
    print(f"loads: {LOADS}")
    return pages


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        main(folder)
