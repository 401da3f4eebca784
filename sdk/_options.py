"""Checks shared by ``@flow`` and ``@task`` options (each bad value named in its error)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


class _NotSetType:
    """Marks an option the user did not give (None can be a meaningful value)."""

    _instance: _NotSetType | None = None

    def __new__(cls) -> _NotSetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotSet"

    def __bool__(self) -> bool:
        return False


NotSet: Any = _NotSetType()


def check_hooks(kind: str, hooks: Iterable[Callable[..., Any]] | None) -> list[Callable[..., Any]]:
    """The hooks as a list; a non-callable hook raises ``TypeError`` naming it."""
    if hooks is None:
        return []
    if callable(hooks):
        raise TypeError(f"{kind} expects a list of callables, got the callable {hooks!r}")
    result = list(hooks)
    for hook in result:
        if not callable(hook):
            raise TypeError(f"{kind} hooks must be callable, got {hook!r}")
    return result


def check_timeout(value: float | None) -> float | None:
    """``timeout_seconds`` as a float; zero, negative or non-numbers raise ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"timeout_seconds must be a positive number, got {value!r}")
    return float(value)


def merge(base: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the given ``updates`` applied (``with_options``)."""
    merged = dict(base)
    merged.update(updates)
    return merged
