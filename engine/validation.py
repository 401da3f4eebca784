"""Flow parameter validation: coerce bound arguments to their annotations, as pydantic's lax mode.

``"5"`` becomes ``5`` for an ``int``; ``5`` is refused for a ``str``; dicts build dataclasses,
msgspec Structs, TypedDicts and (when pydantic is installed) pydantic models, as Prefect users
pass them. msgspec does the converting; pydantic is imported only for annotations naming it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from engine.exceptions import ParameterTypeError

_EMPTY = inspect.Parameter.empty
_plans: weakref.WeakKeyDictionary[Callable[..., Any], list[tuple[str, Any, bool]]] = (
    weakref.WeakKeyDictionary()
)


def _mentions_pydantic(tp: Any) -> bool:
    if isinstance(tp, type):
        return any(base.__module__.startswith("pydantic") for base in tp.__mro__[1:])
    return any(_mentions_pydantic(arg) for arg in typing.get_args(tp))


def _plan(fn: Callable[..., Any]) -> list[tuple[str, Any, bool]]:
    plan = _plans.get(fn)
    if plan is not None:
        return plan
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        # Annotations that cannot be resolved are not validated (rather than failing calls).
        hints = {}
    plan = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(name, _EMPTY)
        if hint is _EMPTY or hint is Any or hint is object:
            continue
        plan.append((name, hint, _mentions_pydantic(hint)))
    try:
        _plans[fn] = plan
    except TypeError:  # not weak-referenceable (a builtin): just don't cache
        pass
    return plan


def _is_simple_instance(value: Any, hint: Any) -> bool:
    # A value already of the annotated class is kept as is (no copy, no re-validation).
    if not isinstance(hint, type) or hint in (int, float, bool):
        return False
    try:
        return isinstance(value, hint)
    except TypeError:  # TypedDict and friends refuse isinstance
        return False


def _convert(value: Any, hint: Any, uses_pydantic: bool) -> Any:
    if uses_pydantic:
        import pydantic

        return pydantic.TypeAdapter(hint).validate_python(value)
    if hint is str and not isinstance(value, str):
        # Like pydantic's lax mode, numbers are not turned into strings; say so in its words.
        raise msgspec.ValidationError(f"Input should be a valid string, got {type(value).__name__}")
    if hint is float and isinstance(value, bool):
        raise msgspec.ValidationError("Input should be a valid number, got bool")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return msgspec.convert(dict(value), hint, strict=False)
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and isinstance(value, hint):
        return value
    return msgspec.convert(value, hint, strict=False)


def validate_parameters(fn: Callable[..., Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict with annotated parameters coerced; ``ParameterTypeError`` names each bad one."""
    result = dict(parameters)
    errors: list[str] = []
    for name, hint, uses_pydantic in _plan(fn):
        if name not in result:
            continue
        value = result[name]
        if _is_simple_instance(value, hint):
            continue
        try:
            result[name] = _convert(value, hint, uses_pydantic)
        except (msgspec.ValidationError, ValueError) as exc:
            errors.append(
                f"{name!r} got {_short(value)} ({type(value).__name__}), "
                f"expected {_type_name(hint)}: {exc}"
            )
        except TypeError:
            # A type msgspec cannot build (an arbitrary class): accept instances of it only.
            if isinstance(hint, type) and not isinstance(value, hint):
                errors.append(
                    f"{name!r} got {_short(value)} ({type(value).__name__}), expected an "
                    f"instance of {_type_name(hint)}"
                )
    if errors:
        raise ParameterTypeError(
            "Flow run received invalid parameters:\n - " + "\n - ".join(errors)
        )
    return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def check_against_schema(schema: dict[str, Any], parameters: Mapping[str, Any]) -> None:
    """Check parameters against a recorded ``parameter_schema`` (where the flow function itself
    is not at hand): required ones present, no unknown ones, simple JSON types right."""
    properties = schema.get("properties", {})
    errors = [f"{name!r} is not a parameter" for name in parameters if name not in properties]
    errors += [
        f"{name!r} is missing" for name in schema.get("required", []) if name not in parameters
    ]
    for name, value in parameters.items():
        expected = properties.get(name, {}).get("type")
        types = _JSON_TYPES.get(expected) if isinstance(expected, str) else None
        if types is None:
            continue
        # bool is an int in Python but not an integer in JSON schema.
        ok = isinstance(value, types) and not (
            isinstance(value, bool) and expected in ("integer", "number")
        )
        if not ok:
            errors.append(
                f"{name!r} got {_short(value)} ({type(value).__name__}), expected {expected}"
            )
    if errors:
        raise ParameterTypeError(
            "Flow run received invalid parameters:\n - " + "\n - ".join(errors)
        )


def parameter_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """A JSON schema of the function's parameters (types the schema generator cannot describe
    are left open)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    hints = {name: hint for name, hint, _ in _plan(fn)}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema: dict[str, Any] = {}
        if name in hints:
            try:
                schema = msgspec.json.schema(hints[name])
            except (TypeError, ValueError):
                schema = {}
        if param.default is _EMPTY:
            required.append(name)
        else:
            try:
                schema["default"] = msgspec.to_builtins(param.default)
            except TypeError:
                pass
        properties[name] = schema
    return {"type": "object", "properties": properties, "required": required}
