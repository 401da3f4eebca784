"""Per-function validation plans, and ``validate_parameters`` which runs them."""

from __future__ import annotations

import inspect
import types
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from millstream._engine.validation.base import _EMPTY, Converter, _Invalid
from millstream._engine.validation.classes import _pydantic, _wants_pydantic
from millstream._engine.validation.compile import _compile
from millstream._engine.validation.containers import _each
from millstream._engine.validation.hints import _function_hints
from millstream._engine.validation.messages import _detail, _problem, _raise

__all__ = ["validate_parameters"]

_MISSING: Any = object()


class _Plan(typing.NamedTuple):
    hints: dict[str, Any]
    # (name, converter, default, annotation) for each parameter that is checked
    checks: tuple[tuple[str, Converter, Any, Any], ...]


_plans: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()


def _var_positional(item: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, (tuple, list)):
            return value
        return tuple(_each(item, value))

    return convert


def _var_keyword(item: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out = {}
        for name, entry in value.items():
            try:
                out[name] = item(entry)
            except _Invalid as exc:
                exc.loc.append(f"[{name!r}]")
                raise
        return out

    return convert


def _make_plan(fn: Any) -> _Plan:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to validate
        return _Plan({}, ())
    hints = _function_hints(fn)
    memo: dict[Any, Converter | None] = {}
    checks = []
    for name, param in parameters.items():
        hint = hints.get(name, _EMPTY)
        if hint is _EMPTY:
            continue
        try:
            if _wants_pydantic(hint):
                converter = _pydantic(hint) or _compile(hint, memo)
            else:
                converter = _compile(hint, memo)
        except Exception:
            # An annotation too odd to make sense of is not checked: a flow must not fail
            # over its annotations.
            converter = None
        if converter is None:
            continue
        if param.kind is param.VAR_POSITIONAL:
            converter = _var_positional(converter)
        elif param.kind is param.VAR_KEYWORD:
            converter = _var_keyword(converter)
        default = _MISSING if param.default is _EMPTY else param.default
        checks.append((name, converter, default, hint))
    return _Plan(hints, tuple(checks))


def _plan(fn: Callable[..., Any]) -> _Plan:
    # A bound method is a new object at each attribute access: cache on its function.
    key = fn.__func__ if type(fn) is types.MethodType else fn
    try:
        plan = _plans.get(key)
    except TypeError:  # neither hashable nor weakly referenceable: plan it every time
        return _make_plan(fn)
    if plan is None:
        plan = _make_plan(key)
        try:
            _plans[key] = plan
        except TypeError:
            pass
    return plan


def validate_parameters(fn: Callable[..., Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new dict of ``parameters`` with each annotated one coerced to its annotation.

    ``parameters`` is bound to ``fn``'s signature (defaults applied). The rules are those of
    pydantic's lax mode, as Prefect validates flow parameters: ``"5"`` for an ``int`` becomes
    ``5``, ``5`` for a ``str`` is refused, dicts become dataclasses, Structs, TypedDicts,
    NamedTuples and pydantic models, values become enum members. A value that is the parameter's
    own default is not checked (pydantic does not validate defaults either), nor are parameters
    annotated ``Any``, not annotated, or whose annotation cannot be resolved.

    Raises ``ParameterTypeError`` naming every parameter that does not fit, each with its value
    and the expected type.
    """
    plan = _plan(fn)
    result = dict(parameters)
    problems: list[str] = []
    for name, convert, default, hint in plan.checks:
        value = result.get(name, _MISSING)
        if value is _MISSING or value is default:
            continue
        try:
            result[name] = convert(value)
        except _Invalid as exc:
            problems.append(_problem(name, value, hint, _detail(exc, name)))
        except Exception as exc:  # raised by user code: an enum's _missing_, a validator
            problems.append(_problem(name, value, hint, f"{type(exc).__name__}: {exc}"))
    if problems:
        _raise(problems)
    return result
