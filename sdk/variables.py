"""Variables: named JSON values in the database (``Variable.get/set/unset``, async twins)."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from typing import Any

import msgspec

from engine.settings import get_current_settings
from engine.store import Store, encode_json, get_store
from sdk._sync import dual

_NAME = re.compile(r"^[a-z0-9_-]+$")
MAX_NAME_LENGTH = 255
MAX_VALUE_BYTES = 64 * 1024
_JSON_TYPES = (str, int, float, bool, type(None), list, dict)


class Variable(msgspec.Struct, kw_only=True):
    """A named JSON value with tags."""

    name: str
    value: Any = None
    tags: list[str] = msgspec.field(default_factory=list)

    @classmethod
    async def aset(
        cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False
    ) -> Variable:
        """Store ``value`` under ``name``; an existing name needs ``overwrite=True``."""
        _check_name(name)
        text = _encode_value(name, value)
        tag_list = _check_tags(tags)
        store = await _store()
        stamp = dt.datetime.now(dt.UTC).isoformat()

        def write(conn: sqlite3.Connection) -> bool:
            exists = conn.execute("SELECT 1 FROM variable WHERE name = ?", (name,)).fetchone()
            if exists and not overwrite:
                return False
            conn.execute(
                "INSERT INTO variable (name, value, tags, created, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, tags = excluded.tags, "
                "updated = excluded.updated",
                (name, text, encode_json(tag_list), stamp, stamp),
            )
            return True

        import asyncio

        if not await asyncio.wrap_future(store.put_call(write)):
            raise ValueError(
                f"Variable {name!r} already exists; use `overwrite=True` to replace its value"
            )
        return cls(name=name, value=msgspec.json.decode(text), tags=tag_list)

    @classmethod
    async def aget(cls, name: str, default: Any = None) -> Any:
        """The value stored under ``name``, or ``default``."""
        variable = await read_variable(name)
        return default if variable is None else variable.value

    @classmethod
    async def aunset(cls, name: str) -> bool:
        """Delete ``name``; True if it existed."""
        store = await _store()

        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM variable WHERE name = ?", (name,)).rowcount > 0

        import asyncio

        deleted: bool = await asyncio.wrap_future(store.put_call(delete))
        return deleted

    set = classmethod(dual(aset.__func__))  # type: ignore[attr-defined]
    get = classmethod(dual(aget.__func__))  # type: ignore[attr-defined]
    unset = classmethod(dual(aunset.__func__))  # type: ignore[attr-defined]


async def _store() -> Store:
    store = get_store(get_current_settings().database_path)
    await store.ensure_open()
    return store


async def read_variable(name: str) -> Variable | None:
    """The variable called ``name`` (None when there is none)."""
    store = await _store()
    rows = await store.fetchall_sql(
        "SELECT name, value, tags FROM variable WHERE name = ?", (name,)
    )
    if not rows:
        return None
    row = rows[0]
    return Variable(
        name=row["name"],
        value=msgspec.json.decode(row["value"]),
        tags=msgspec.json.decode(row["tags"]),
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"Variable name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"Variable name {name[:40]!r}... is {len(name)} characters long; the limit is "
            f"{MAX_NAME_LENGTH}"
        )
    if not _NAME.match(name):
        raise ValueError(
            f"Variable name {name!r} may contain only lowercase letters, digits, '_' and '-'"
        )


def _check_tags(tags: list[str] | None) -> list[str]:
    result = list(tags or [])
    for tag in result:
        if not isinstance(tag, str):
            raise TypeError(f"Variable tags must be strings, got {tag!r}")
    return result


def _encode_value(name: str, value: Any) -> str:
    _check_json(name, value)
    text = msgspec.json.encode(value).decode()
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise ValueError(
            f"Value of variable {name!r} is {len(text.encode())} bytes as JSON; the limit is "
            f"{MAX_VALUE_BYTES}"
        )
    return text


def _check_json(name: str, value: Any) -> None:
    if not isinstance(value, _JSON_TYPES):
        raise TypeError(
            f"Value of variable {name!r} must be JSON (str, int, float, bool, None, list, "
            f"dict), got {type(value).__name__}"
        )
    if isinstance(value, list):
        for item in value:
            _check_json(name, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"Keys in variable {name!r} must be strings, got {key!r}")
            _check_json(name, item)


__all__ = ["Variable", "read_variable"]
