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
    # The suite checks what creates the database file, so it is not prepared in advance.
    home = tmp_path / "millstream-home"
    with millstream_test_harness(home=home, prepare_database=False) as harness:
        yield harness.home


@pytest.fixture
def db_path(millstream_home: Path) -> Path:
    return millstream_home / "millstream.db"
