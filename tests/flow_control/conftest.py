"""Fixtures of the flow-control tests: limits made through the client, child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from millstream import get_client
from millstream.client.schemas.actions import GlobalConcurrencyLimitCreate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_limit() -> Callable[..., None]:
    """Create a global limit: ``make_limit("db", 3, slot_decay_per_second=0)``."""

    def make(name: str, limit: int, **fields: object) -> None:
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, **fields)  # type: ignore[arg-type]
            )

    return make


@pytest.fixture
def spawn(millstream_home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -c CODE`` in a child sharing this test's home; all are killed at the end."""
    children: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str, **env: str) -> subprocess.Popen[str]:
        environ = {**os.environ, "MILLSTREAM_HOME": str(millstream_home), **env}
        environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
        child = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
