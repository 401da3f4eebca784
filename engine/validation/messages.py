"""Wording of parameter errors: short value reprs, readable type names, where a value failed."""

from __future__ import annotations

import reprlib
import types
import typing
from typing import Any

from millstream._engine.exceptions import ParameterTypeError
from millstream._engine.validation.base import _NONE_TYPE, _Invalid

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlevel = 3
_MAX_REPR = 100


def _short(value: Any) -> str:
    try:
        text = _REPR.repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _type_name(tp: Any) -> str:
    if tp is None or tp is _NONE_TYPE:
        return "None"
    if tp is Ellipsis:
        return "..."
    origin = typing.get_origin(tp)
    if origin is None:
        if isinstance(tp, type):
            return tp.__name__
        return repr(tp).replace("typing.", "")
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    name = getattr(origin, "__name__", None) or repr(origin).replace("typing.", "")
    if not args:
        return str(name)
    listed = ", ".join(
        _type_name(arg) if not isinstance(arg, list) else f"[{', '.join(map(_type_name, arg))}]"
        for arg in args
    )
    return f"{name}[{listed}]"


def _detail(exc: _Invalid, name: str = "") -> str:
    """The message, after where in the value it applies (``points[1].x``) when not at the top."""
    if not exc.loc:
        return exc.message
    return f"at {(name + ''.join(reversed(exc.loc))).lstrip('.')}: {exc.message}"


def _problem(name: str, value: Any, hint: Any, detail: str) -> str:
    return (
        f"Flow parameter {name!r} got {_short(value)} ({type(value).__name__}), "
        f"expected {_type_name(hint)}: {detail}"
    )


def _raise(problems: list[str]) -> typing.NoReturn:
    raise ParameterTypeError("Flow run received invalid parameters:\n - " + "\n - ".join(problems))
