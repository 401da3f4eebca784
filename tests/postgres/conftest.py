"""Tests of the PostgreSQL backend, against a real server the session starts (initdb +
pg_ctl in a temporary directory, as an unprivileged user when run as root)."""

from __future__ import annotations

from pg_fixtures import backend, pg_server_session, pg_url

__all__ = ["backend", "pg_server_session", "pg_url"]
