"""The schema file: its migrations and named queries, and bringing a database up to date."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from millstream._engine.exceptions import StoreError
from millstream._engine.model.states import State, StateDetails, StateType


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


def expand(name: str, count: int) -> str:
    """The named query with its ``/*ids*/`` list standing for ``count`` parameters."""
    return Q[name].replace("IN (/*ids*/)", f"IN ({', '.join('?' * count)})")


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
    _register_converters(conn)
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
    # A ";" ends a statement only where SQLite says the statement is complete: a trigger's
    # body (BEGIN ...; ...; END) holds several.
    found, current = [], ""
    for piece in "\n".join(lines).split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            text = current.strip().rstrip(";").strip()
            if text:
                found.append(text)
            current = ""
    if current.strip(" \n;"):
        found.append(current.strip().rstrip(";").strip())
    return found


# -- converters for migration 3 (text ids, text times and JSON histories to compact rows) ----
class _JsonHistoryEntry(msgspec.Struct, array_like=True):
    id: uuid.UUID
    type: str
    name: str | None
    message: str | None
    timestamp: dt.datetime
    details: StateDetails | None


_json_history = msgspec.json.Decoder(_JsonHistoryEntry)


def _to_id(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return uuid.UUID(value).bytes
    except ValueError:
        return value


def _to_time(value: Any) -> Any:
    from millstream._engine.store.rows import ts

    if not isinstance(value, str):
        return value
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return ts(parsed) if parsed.tzinfo is not None else value


def _to_details(value: Any, own: Any, field: str) -> Any:
    from millstream._engine.store.rows import pack_details

    try:
        own_id = uuid.UUID(own)
        details = msgspec.json.decode(value or "{}", type=StateDetails)
    except (TypeError, ValueError, msgspec.DecodeError):
        return value
    return pack_details(details, own_id, field)


def _to_history(value: Any, own: Any, field: str) -> Any:
    from millstream._engine.store.rows import encode_history, history_entry

    try:
        own_id = uuid.UUID(own)
        entries = [_json_history.decode(line) for line in (value or "").splitlines() if line]
    except (TypeError, ValueError, msgspec.DecodeError):
        return value
    states = [
        State(
            id=e.id,
            type=StateType(e.type),
            name=e.name,
            message=e.message,
            timestamp=e.timestamp,
            state_details=e.details or StateDetails(),
        )
        for e in entries
    ]
    if not states:
        return b""
    return encode_history([history_entry(s, own_id, field) for s in states])


def _to_name(state_type: Any, name: Any) -> Any:
    from millstream._engine.store.rows import default_names

    return None if default_names().get(state_type) == name else name


def _register_converters(conn: sqlite3.Connection) -> None:
    conn.create_function("ms_name", 2, _to_name, deterministic=True)
    conn.create_function("ms_id", 1, _to_id, deterministic=True)
    conn.create_function("ms_time", 1, _to_time, deterministic=True)
    conn.create_function("ms_details", 3, _to_details, deterministic=True)
    conn.create_function("ms_history", 3, _to_history, deterministic=True)
