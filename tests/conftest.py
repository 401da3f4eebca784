"""Every test gets its own Millstream home (and so its own SQLite file), from the test harness
that users get (``millstream.testing``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from millstream.testing import millstream_test_harness


@pytest.fixture(autouse=True)
def millstream_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A database_path from the developer's own environment must not leak into a test.
    monkeypatch.delenv("MILLSTREAM_DATABASE_PATH", raising=False)
    with millstream_test_harness(home=tmp_path / "millstream-home") as harness:
        yield harness.home


@pytest.fixture
def db_path(millstream_home: Path) -> Path:
    return millstream_home / "millstream.db"
