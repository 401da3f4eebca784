"""Fixtures that run a test against SQLite and against PostgreSQL (``backend``), and a
backend-neutral way for tests to look at the database's rows."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_server
import pytest

NO_SERVER = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"


@pytest.fixture(scope="session")
def pg_server_session() -> Iterator[pg_server.Server]:
    """One PostgreSQL server for the whole session."""
    if pg_server.binaries() is None:
        pytest.skip(NO_SERVER)
    server = pg_server.shared()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server_session: pg_server.Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty schema of the server, set as MILLSTREAM_DATABASE_URL for this test."""
    url = pg_server_session.fresh_url()
    monkeypatch.setenv("MILLSTREAM_DATABASE_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store's backend for this test: the SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "postgres":
        request.getfixturevalue("pg_url")
    else:
        monkeypatch.delenv("MILLSTREAM_DATABASE_URL", raising=False)
    return str(request.param)


def rows_of(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of a SQLite-dialect query, read from whichever database the test uses (a
    connection of its own, as another process would)."""
    url = os.environ.get("MILLSTREAM_DATABASE_URL")
    if not url:
        with sqlite3.connect(db_path) as conn:
            return conn.execute(sql, params).fetchall()
    import psycopg

    from millstream._engine.store import pg_dialect

    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(pg_dialect.query(sql), params).fetchall()]


def database_ready(db_path: Path) -> bool:
    """Whether the database exists and is migrated (a worker has opened it)."""
    if not os.environ.get("MILLSTREAM_DATABASE_URL"):
        if not db_path.exists():
            return False
    try:
        return bool(rows_of(db_path, "SELECT 1 FROM deployment LIMIT 1") is not None)
    except Exception:
        return False
