"""The ``backend`` fixture (SQLite, PostgreSQL) for the store-level tests parametrised over
both; its server lives in tests/postgres."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "postgres"))

from pg_fixtures import backend, pg_server_session, pg_url

__all__ = ["backend", "pg_server_session", "pg_url"]
