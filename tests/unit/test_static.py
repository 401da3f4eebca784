"""Static checks run as tests: mypy strict on engine, sdk and the typing cases; ruff."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def _tool(name: str) -> None:
    # The checking tools are in the dev extra (pinned); the test extra only runs the suite.
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[dev]'")


def test_mypy_strict_on_the_package_and_typing_cases():
    _tool("mypy")
    # warn_unused_ignores makes the `type: ignore` lines in tests/typing assertions that those
    # calls are rejected; assert_type checks the accepted ones.
    result = run("mypy", "millstream", "tests/typing")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean():
    _tool("ruff")
    result = run("ruff", "check", "engine", "sdk", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("ruff", "format", "--check", "engine", "sdk", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr
