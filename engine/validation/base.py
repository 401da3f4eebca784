"""What the converter modules share: the ``Converter`` type, sentinels, the ``_Invalid`` failure."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

Converter = Callable[[Any], Any]
# Compiles an inner annotation (an item, a field) into the same memo: containers and classes
# recurse through it, passed in by compile.py so that they need not import it.
Compile = Callable[[Any], Converter | None]

_EMPTY: Any = inspect.Parameter.empty
_NONE_TYPE = type(None)


class _Invalid(Exception):
    """A value does not fit its annotation; becomes one line of a ``ParameterTypeError``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Filled innermost first while the error unwinds through containers and fields.
        self.loc: list[str] = []


def _identity(value: Any) -> Any:
    return value
