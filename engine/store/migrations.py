"""The schema file: its migrations and named queries, and bringing a database up to date."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from millstream._engine.exceptions import StoreError


def _load_sql() -> tuple[list[tuple[int, str]], dict[str, str]]:
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    migrations: list[tuple[int, str]] = []
    queries: dict[str, str] = {}
    kind: str | None = None
    key = ""
    body: list[str] = []
    for line in [*text.splitlines(), "-- name: __end__"]:
        if line.startswith(("-- migration:", "-- name:")):
            if kind == "migration":
                migrations.append((int(key), "\n".join(body)))
            elif kind == "name":
                queries[key] = "\n".join(body).strip().rstrip(";")
            kind = "migration" if line.startswith("-- migration:") else "name"
            key, body = line.split(":", 1)[1].strip(), []
        elif kind is not None:
            body.append(line)
    return migrations, queries


MIGRATIONS, Q = _load_sql()
SCHEMA_VERSION = max(v for v, _ in MIGRATIONS)


def check_version(version: int, path: Path) -> None:
    """Refuse a database made by a newer Millstream."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"Database {str(path)!r} has schema version {version}, newer than this "
            f"Millstream understands ({SCHEMA_VERSION}); upgrade Millstream"
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply every migration newer than the database's ``user_version``, in one transaction."""
    # Each migration and its version bump commit together: a crash leaves the old version whole.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute(Q["user_version"]).fetchone()[0]
        if version == 0 and conn.execute(Q["count_schema_objects"]).fetchone()[0]:
            raise StoreError(
                f"Cannot use database {str(path)!r}: it holds tables but is not a "
                "Millstream database"
            )
        for number, ddl in MIGRATIONS:
            if number > version:
                for statement in statements(ddl):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def statements(ddl: str) -> list[str]:
    """The statements of a migration, comments left out."""
    lines = [ln for ln in ddl.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
