"""Annotations resolved to type hints, keeping the ones that resolve when some names cannot."""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any


def _resolve_each(
    annotations: Mapping[str, Any], globalns: dict[str, Any], localns: dict[str, Any] | None
) -> dict[str, Any]:
    """Resolve annotations one by one, leaving out those that cannot be resolved."""
    hints: dict[str, Any] = {}
    for name, annotation in annotations.items():
        holder = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints[name] = typing.get_type_hints(
                holder, globalns=globalns, localns=localns, include_extras=True
            )[name]
        except Exception:
            continue
    return hints


def _function_hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        # One name cannot be resolved (defined later, or only under TYPE_CHECKING): keep the
        # others rather than validating nothing, and never fail the call over an annotation.
        annotations = getattr(fn, "__annotations__", None)
        if not isinstance(annotations, Mapping):
            return {}
        globalns = getattr(inspect.unwrap(fn), "__globals__", {})
        return _resolve_each(annotations, globalns, None)


def _class_hints(tp: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tp, include_extras=True)
    except Exception:
        module = sys.modules.get(tp.__module__)
        annotations: dict[str, Any] = {}
        for klass in reversed(tp.__mro__):
            annotations.update(inspect.get_annotations(klass))
        return _resolve_each(annotations, vars(module) if module else {}, dict(vars(tp)))
