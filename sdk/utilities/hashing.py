"""Hashing helpers under Prefect's names (``prefect.utilities.hashing``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from millstream._engine.exceptions import HashError, UnhashableInputError
from millstream._engine.results import hashing as _hashing

__all__ = ["file_hash", "hash_objects", "stable_hash"]


def stable_hash(*args: str | bytes, hash_algo: Callable[..., Any] = hashlib.md5) -> str:
    """The hex digest of the arguments' bytes one after another (strings as UTF-8)."""
    digest = hash_algo()
    for arg in args:
        digest.update(arg.encode() if isinstance(arg, str) else arg)
    return str(digest.hexdigest())


def file_hash(path: str, hash_algo: Callable[..., Any] = hashlib.md5) -> str:
    """The hex digest of a file's contents."""
    return stable_hash(Path(path).read_bytes(), hash_algo=hash_algo)


def hash_objects(
    *args: Any,
    hash_algo: Callable[..., Any] | None = None,
    raise_on_failure: bool = False,
    **kwargs: Any,
) -> str | None:
    """A digest of the values, the same in every process (the one cache keys use); None when a
    value cannot be hashed, or ``HashError`` naming it with ``raise_on_failure``. With
    ``hash_algo`` the engine's digest is hashed again by it (its length and alphabet)."""
    try:
        digest = _hashing.hash_objects(args, kwargs)
        return digest if hash_algo is None else stable_hash(digest, hash_algo=hash_algo)
    except UnhashableInputError as exc:
        if raise_on_failure:
            raise HashError(str(exc)) from exc
        return None
