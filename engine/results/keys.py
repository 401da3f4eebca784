"""Result storage keys: render ``result_storage_key`` templates and validate the keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from millstream._engine.exceptions import StorageKeyError


def validate_storage_key(key: str) -> str:
    """``key`` itself if it is a relative path that stays inside its storage directory.

    Raises ``StorageKeyError`` naming the key when it is empty, absolute, names a directory or
    has a ``..`` component.
    """
    if not isinstance(key, str) or not key:
        raise StorageKeyError(f"Result storage key {key!r} must be a non-empty string")
    if "\x00" in key:
        raise StorageKeyError(f"Result storage key {key!r} must not contain a NUL character")
    parts = key.replace("\\", "/").split("/")
    if (
        os.path.isabs(key)
        or key.startswith(("/", "\\"))
        or (len(parts[0]) == 2 and parts[0][1] == ":")
    ):
        raise StorageKeyError(f"Result storage key {key!r} must be a relative path, not absolute")
    if ".." in parts:
        raise StorageKeyError(f"Result storage key {key!r} must not contain a '..' component")
    if parts[-1] in ("", "."):
        raise StorageKeyError(f"Result storage key {key!r} must name a file, not a directory")
    return key


class _KeyNamespace(dict[str, Any]):
    """Names a key template may use: each parameter, and ``parameters`` (all of them)."""

    def __missing__(self, name: str) -> Any:
        raise StorageKeyError(name)


def render_storage_key(template: str, parameters: Mapping[str, Any]) -> str:
    """Render ``result_storage_key`` over the run's parameters, then validate it.

    Both ``{x}`` and Prefect's ``{parameters[x]}`` forms work. An unknown name raises
    ``StorageKeyError`` naming it.
    """
    namespace = _KeyNamespace(parameters)
    namespace["parameters"] = parameters
    try:
        key = template.format_map(namespace)
    except (StorageKeyError, KeyError) as exc:
        name = exc.args[0] if exc.args else "?"
        raise StorageKeyError(
            f"result_storage_key {template!r} refers to {name!r}, which is not a parameter "
            f"of this run (parameters: {', '.join(sorted(parameters)) or 'none'})"
        ) from None
    except IndexError:
        raise StorageKeyError(
            f"result_storage_key {template!r} uses a positional field; name parameters, "
            "like {x} or {parameters[x]}"
        ) from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise StorageKeyError(f"result_storage_key {template!r} cannot be rendered: {exc}") from exc
    return validate_storage_key(key)
