"""The examples in examples/ run, and do what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("name", "label"), [("asyncio_service.py", "asyncio"), ("trio_program.py", "trio")])
def test_same_configuration_serves_asyncio_and_trio(name: str, label: str) -> None:
    out = run_example(name)
    assert out.startswith(f"{label}: 100 requests, 1 load")


@pytest.mark.parametrize("name", ["django_app.py", "flask_caching_app.py"])
def test_framework_apps_load_once_and_count_atomically(name: str) -> None:
    out = run_example(name)
    assert out.splitlines() == [
        "{'id': 7, 'name': 'product 7', 'views': 1}",
        "{'id': 7, 'name': 'product 7', 'views': 2}",
        "loads: [7]",
    ]
