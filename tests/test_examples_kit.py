"""The examples of issue 7 run and do what they say: the Flask app (through its test
client, on a real SQLite file), the custom tier (the conformance suite on it), the
decorator (sync, and async on asyncio and trio)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cachet.testing import ConformanceError, TierContract, check_tier

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    """Import examples/<name>.py as a fresh module (its module-level state is its own)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- Flask ------------------------------------------------------------------------------


def test_flask_app_serves_from_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    app = load("flask_app").create_app(str(tmp_path / "cache.db"))
    client = app.test_client()
    first = client.get("/products/3")
    assert first.status_code == 200
    assert first.get_json() == {"id": 3, "name": "product 3", "price_cents": 300}
    assert client.get("/products/3").get_json() == first.get_json()
    assert client.get("/stats").get_json()["db_queries"] == 1
    client.get("/products/4")
    assert client.get("/stats").get_json()["db_queries"] == 2
    assert client.post("/products/3/invalidate").get_json() == {"invalidated": 3}
    client.get("/products/3")
    assert client.get("/stats").get_json()["db_queries"] == 3
    app.extensions["cachet"].close()


def test_flask_workers_share_the_sqlite_tier(tmp_path: Path) -> None:
    """Two apps (two workers' worth of memory L1) on one file: the second is served from L2."""
    pytest.importorskip("flask")
    module = load("flask_app")
    path = str(tmp_path / "shared.db")
    worker1, worker2 = module.create_app(path), module.create_app(path)
    assert worker1.test_client().get("/products/9").status_code == 200
    assert worker2.test_client().get("/products/9").get_json()["price_cents"] == 900
    assert worker1.config["DB_QUERIES"] == 1
    assert worker2.config["DB_QUERIES"] == 0  # found in the shared SQLite tier
    stats = worker2.test_client().get("/stats").get_json()["cache"]
    assert stats["tiers"]["products-l2"]["hits"] == 1
    for app in (worker1, worker2):
        app.extensions["cachet"].close()


def test_flask_app_runs_as_a_script_module(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import flask_app; "
            "app = flask_app.create_app(sys.argv[2]); "
            "print(app.test_client().get('/products/1').get_json()['name'])")
    done = subprocess.run([sys.executable, "-c", code, str(EXAMPLES), str(tmp_path / "c.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "product 1"


# -- the custom tier -------------------------------------------------------------------


def test_custom_tier_example_passes_the_conformance_suite() -> None:
    ran = load("custom_tier").main()
    assert "round_trip_keeps_the_entry" in ran and "len_counts_entries" in ran


class TestDictTierContract(TierContract):
    """The way the example's docstring says to run the suite in pytest."""

    def make_tier(self) -> Any:
        return load("custom_tier").DictTier()


def test_a_broken_variant_of_the_custom_tier_fails() -> None:
    dict_tier = load("custom_tier").DictTier

    class Stamping(dict_tier):  # type: ignore[misc, valid-type]
        def insert(self, key: Any, entry: Any) -> Any:
            from cachet import CacheEntry

            return super().insert(key, CacheEntry(entry.value, cached_at=0.0, ttl=entry.ttl))

    with pytest.raises(ConformanceError, match="round_trip_keeps_the_entry"):
        check_tier(Stamping)


# -- the decorator -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_decorator_example(backend: str) -> None:
    calls = load("decorator").main(backend)
    assert calls.count("rate USD ecb") == 2
    assert calls.count("price a sku-1") == 2 and calls.count("price b sku-1") == 1
    assert calls.count("profile 7") == 2


@pytest.mark.parametrize("name", ["custom_tier.py", "decorator.py"])
def test_examples_run_as_scripts(name: str) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout
