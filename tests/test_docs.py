"""The docs site: every public name is in the API reference, every page is in the nav,
and (when mkdocs is installed) the site builds with ``--strict``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

PUBLIC_MODULES = [
    "cachet",
    "cachet.sync",
    "cachet.aio",
    "cachet.tiers",
    "cachet.service",
    "cachet.middleware",
    "cachet.serialize",
    "cachet.backplane",
    "cachet.telemetry",
    "cachet.testing",
    "cachet.testing.conformance",
    "cachet.testing.strategies",
]

DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def resolve(path: str) -> Any:
    """The object a ``::: dotted.path`` directive documents."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def directives() -> list[str]:
    found: list[str] = []
    for page in sorted(REFERENCE.glob("*.md")):
        found += DIRECTIVE.findall(page.read_text())
    return found


def test_every_directive_resolves() -> None:
    for path in directives():
        resolve(path)  # a stale directive would also fail the build, with a vaguer message


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module: str) -> None:
    paths = directives()
    documented_objects = {id(resolve(p)) for p in paths}
    mod = importlib.import_module(module)
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if f"{module}.{name}" in paths:
            continue
        # A re-export counts when its object is documented under its home module
        # (identity only for classes, functions and modules: constants need their own entry).
        if (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)) \
                and id(obj) in documented_objects:
            continue
        missing.append(name)
    assert not missing, f"{module}: {missing} are public (__all__) but not in docs/reference/*.md"


def test_the_reference_has_a_page_per_public_module() -> None:
    for module in PUBLIC_MODULES:
        assert module in directives(), f"no `::: {module}` in docs/reference"


def nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    return set(re.findall(r":\s*([\w./-]+\.md)\s*$", text, re.MULTILINE))


def test_every_page_is_in_the_nav() -> None:
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav_pages() == set(), "pages missing from mkdocs.yml nav"
    assert nav_pages() - pages == set(), "nav entries without a page"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install 'cachet[docs]')")
def test_site_builds_strict(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, warnings
