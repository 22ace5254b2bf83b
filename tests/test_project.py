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
                              "serialize", "middleware", "annotations", "backplane"}]
