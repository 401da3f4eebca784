"""Variables: named JSON values kept in the database (``Variable.get/set/unset``, async twins)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import msgspec

from millstream._engine.orchestrate.context import flow_run_var
from millstream._engine.store import Store, get_store
from millstream._sync import dispatch

__all__ = ["Variable"]

MAX_NAME_LENGTH = 255
MAX_VALUE_BYTES = 64 * 1024
# Deeper nesting than this is refused rather than risking RecursionError (or a cycle).
_MAX_DEPTH = 100
_NAME = re.compile(r"[a-z0-9_-]+")


async def _aset(
    cls: type[Variable],
    name: str,
    value: Any,
    tags: Iterable[str] | None = None,
    overwrite: bool = False,
) -> Variable:
    """Store ``value`` (JSON) under ``name`` and return the variable.

    An existing name raises ``ValueError`` unless ``overwrite=True`` (which replaces the value
    and the tags). Bad names, values that are not JSON and values over 64 KB of JSON are
    refused with an error naming them.
    """
    _check_name(name)
    text = _encode(name, value)
    tag_list = _check_tags(name, tags)
    store = await _store()
    # "Exists?" and the write are one statement of the store: atomic across processes too.
    if not await store.write_variable(name, text, tag_list, overwrite=overwrite):
        raise ValueError(f"Variable {name!r} already exists. Use `overwrite=True` to update it.")
    return cls(name=name, value=msgspec.json.decode(text), tags=tag_list)


async def _aget(cls: type[Variable], name: str, default: Any = None) -> Any:
    """The value stored under ``name``, or ``default`` when there is none."""
    store = await _store()
    found = await store.read_variable(name)
    if found is None:
        return default
    return found[1]


async def _aunset(cls: type[Variable], name: str) -> bool:
    """Delete the variable ``name``; True if there was one."""
    store = await _store()
    return await store.delete_variable(name)


for _fn, _public in ((_aset, "aset"), (_aget, "aget"), (_aunset, "aunset")):
    # Docs and reprs (also of the derived twins) say Variable.aset, not the private name.
    _fn.__name__, _fn.__qualname__ = _public, f"Variable.{_public}"


class Variable(msgspec.Struct, kw_only=True):
    """A named JSON value (str, int, float, bool, None, list, dict) with tags.

    ``Variable.set/get/unset`` block; ``aset/aget/aunset`` are their async twins. Usable
    anywhere: inside flows and tasks, sync or async, and from other processes sharing the
    database.
    """

    name: str
    value: Any = None
    tags: list[str] = msgspec.field(default_factory=list)

    # One implementation, the async functions above; ``_sync.dispatch`` derives the
    # sync-compatible names.
    aset = classmethod(_aset)
    aget = classmethod(_aget)
    aunset = classmethod(_aunset)
    # Sync-compatible, as Prefect's: awaitable in async code, blocking in sync code.
    set = classmethod(dispatch(_aset))
    get = classmethod(dispatch(_aget))
    unset = classmethod(dispatch(_aunset))


async def _store() -> Store:
    # Inside a run: the run's database; elsewhere the one the settings name.
    ctx = flow_run_var.get()
    if ctx is not None:
        store = ctx.store
    else:
        from millstream._engine.settings import get_current_settings

        store = get_store(get_current_settings().database_path)
    await store.ensure_open()
    return store


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"Variable name must be a string, got {type(name).__name__}: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"Variable name {name[:40]!r}... is {len(name)} characters long; "
            f"the limit is {MAX_NAME_LENGTH}"
        )
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"Variable name {name!r} is invalid: use lowercase letters, digits, '_' and '-' only"
        )


def _check_tags(name: str, tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        raise TypeError(f"Tags of variable {name!r} must be a list of strings, got {tags!r}")
    result = list(tags)
    for tag in result:
        if not isinstance(tag, str):
            raise TypeError(f"Tags of variable {name!r} must be strings, got {tag!r}")
    return result


def _encode(name: str, value: Any) -> str:
    _check_json(name, value, 0)
    text = msgspec.json.encode(value).decode()
    size = len(text.encode())
    if size > MAX_VALUE_BYTES:
        raise ValueError(
            f"Value of variable {name!r} is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}"
        )
    return text


def _check_json(name: str, value: Any, depth: int) -> None:
    # msgspec would also encode datetimes, tuples, sets, bytes...: only JSON's own types are
    # let in, so what `get` returns is what `set` was given.
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Value of variable {name!r} must be JSON; {value!r} is not")
        return
    if depth >= _MAX_DEPTH:
        raise ValueError(f"Value of variable {name!r} is nested more than {_MAX_DEPTH} deep")
    if isinstance(value, list):
        for item in value:
            _check_json(name, item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"Keys in the value of variable {name!r} must be strings, "
                    f"got {type(key).__name__}: {key!r}"
                )
            _check_json(name, item, depth + 1)
    else:
        raise TypeError(
            f"Value of variable {name!r} must be JSON (str, int, float, bool, None, list, dict),"
            f" got {type(value).__name__}"
        )
