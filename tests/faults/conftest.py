"""Fixtures of the fault-injection suite (helpers in fault_tools.py: a module of its own, since
every test folder's conftest would be imported under the one name ``conftest``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_tools import Processes


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def procs(tmp_path: Path, millstream_home: Path, ledger: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(millstream_home),
        "LEDGER": str(ledger),
        "PYTHONPATH": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MILLSTREAM_DATABASE_PATH", None)
    processes = Processes(tmp_path, env)
    yield processes
    processes.close()
