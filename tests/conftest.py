"""Every test gets its own Millstream home (and so its own SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import millstream._engine.store as store_module


@pytest.fixture(autouse=True)
def millstream_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "millstream-home"
    home.mkdir()
    monkeypatch.setenv("MILLSTREAM_HOME", str(home))
    monkeypatch.delenv("MILLSTREAM_DATABASE_PATH", raising=False)
    yield home
    store_module.close_all()


@pytest.fixture
def db_path(millstream_home: Path) -> Path:
    return millstream_home / "millstream.db"
