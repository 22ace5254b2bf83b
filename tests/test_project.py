"""The two set-up commands of the README stay true: CI runs exactly the test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_opens_with_demo_and_test_commands() -> None:
    demo, tests = readme_commands()[:2]
    assert "python -m cachet demo" in demo and demo.startswith("pip install")
    assert "pytest" in tests and tests.startswith("pip install")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    tests = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    assert any("CACHET_REQUIRE_REDIS=1" in line for line in ci)


def test_public_names_are_exported() -> None:
    import cachet

    for name in cachet.__all__:
        assert getattr(cachet, name) is not None
    assert not [n for n in dir(cachet) if not n.startswith("_") and n not in cachet.__all__
                and n not in {"aio", "sync", "tiers", "testing", "telemetry", "service",
                              "serialize", "middleware", "annotations", "backplane", "integrations"}]


def test_import_layers_hold() -> None:
    """import-linter's contracts in pyproject.toml: imports only go down the layers, the
    frontends never import each other, no package has an import cycle (function-level and
    TYPE_CHECKING imports included)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports())"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_no_code_is_generated_at_runtime() -> None:
    """No exec, eval or compile in the package: every rule is code a reader, ruff, mypy
    and coverage can see."""
    import ast

    found = []
    for path in (ROOT / "cachet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("exec", "eval", "compile")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert not found


def test_public_methods_are_the_classes_own() -> None:
    """A cache's public methods are its class's, with real names, docstrings and source:
    nothing is installed per instance, and keywords work."""
    import inspect

    import cachet

    for cache in (cachet.Cache.builder().memory(10).build(), cachet.AsyncCache.builder().memory(10).build()):
        for name in ("get", "insert", "invalidate", "clear", "contains", "len", "get_or_insert",
                     "try_get_or_insert", "optionally_get_or_insert", "cached", "close", "stats",
                     "add", "touch", "incr", "decr", "delete", "get_many", "insert_many",
                     "invalidate_many"):
            assert name not in vars(cache), name
            method = getattr(type(cache), name)
            assert method.__doc__, name
            assert inspect.getsource(method)
        assert list(inspect.signature(type(cache).get_or_insert).parameters) == ["self", "key", "factory"]
        assert list(inspect.signature(type(cache).add).parameters) == ["self", "key", "value", "ttl"]
        assert list(inspect.signature(type(cache).incr).parameters) == ["self", "key", "delta"]
