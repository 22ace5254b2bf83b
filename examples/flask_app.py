"""A Flask (WSGI) app: a memory L1 per worker over a SQLite L2 shared by every worker.

Run it with any WSGI server (``flask --app examples/flask_app run``, gunicorn with
several workers): each worker process has its own memory tier, and all of them share
the SQLite file, so a value computed by one worker is served by the others from L2.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify

from cachet import Cache

Response = Any  # flask's response type, kept loose so this file needs no flask stubs


def build_cache(path: str) -> Cache[Any, Any]:
    """L1: 1000 entries for 30 s, refreshed from L2 after 20 s. L2: SQLite, 10 minutes."""
    return (
        Cache.builder()
        .name("products")
        .memory(1000).ttl(30).time_to_refresh(20)
        .fallback(Cache.builder().name("products-l2").sqlite(path).ttl(600))
        .stampede_protection()
        .build()
    )


def create_app(cache_path: str | None = None) -> Flask:
    app = Flask(__name__)
    cache = build_cache(cache_path or os.environ.get("PRODUCT_CACHE", "products-cache.db"))
    app.extensions["cachet"] = cache
    app.config["DB_QUERIES"] = 0

    @cache.cached(ttl=60)
    def load_product(product_id: int) -> dict[str, Any]:
        """The slow part: a database query (counted, so the tests can see the cache work)."""
        app.config["DB_QUERIES"] += 1
        return {"id": product_id, "name": f"product {product_id}", "price_cents": 100 * product_id}

    @app.get("/products/<int:product_id>")
    def product(product_id: int) -> Response:
        return jsonify(load_product(product_id))

    @app.post("/products/<int:product_id>/invalidate")
    def invalidate(product_id: int) -> Response:
        load_product.invalidate(product_id)
        return jsonify({"invalidated": product_id})

    @app.get("/stats")
    def stats() -> Response:
        return jsonify({"db_queries": app.config["DB_QUERIES"], "cache": cache.stats()})

    return app


if __name__ == "__main__":
    create_app().run()
