"""Parameter JSON schemas: building one (``parameter_schema``), checking values against one."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from millstream._engine.validation.base import _EMPTY
from millstream._engine.validation.classes import _wants_pydantic
from millstream._engine.validation.messages import _raise, _short
from millstream._engine.validation.plan import _plan

__all__ = ["check_against_schema", "parameter_schema"]


def _type_schema(hint: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    if hint is _EMPTY or hint is Any:
        return {}
    if _wants_pydantic(hint):
        try:
            import pydantic

            schema = pydantic.TypeAdapter(hint).json_schema(ref_template="#/definitions/{model}")
        except Exception:
            schema = None
        if schema is not None:
            definitions.update(schema.pop("$defs", {}))
            if "properties" in schema and isinstance(schema.get("title"), str):
                # A model's own schema comes inline: shared under definitions, as msgspec's are.
                definitions[schema["title"]] = schema
                return {"$ref": f"#/definitions/{schema['title']}"}
            return schema
    try:
        (schema,), components = msgspec.json.schema_components(
            [hint], ref_template="#/definitions/{name}"
        )
    except Exception:  # a type msgspec cannot describe: left open
        return {}
    definitions.update(components)
    return dict(schema)


def parameter_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema (an object schema, as Prefect's ``parameter_openapi_schema``) of ``fn``'s
    parameters: one property per parameter with its ``title``, ``position``, type and default;
    shared models under ``definitions``. Types no schema generator can describe are left open."""
    plan = _plan(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    definitions: dict[str, Any] = {}
    try:
        parameters: Mapping[str, inspect.Parameter] = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        parameters = {}
    for position, (name, param) in enumerate(parameters.items()):
        schema = _type_schema(plan.hints.get(name, _EMPTY), definitions)
        if param.kind is param.VAR_POSITIONAL:
            schema = {"type": "array", **({"items": schema} if schema else {})}
        elif param.kind is param.VAR_KEYWORD:
            schema = {"type": "object", "additionalProperties": schema or True}
        elif "$ref" in schema:
            schema = {"allOf": [schema]}
        prop: dict[str, Any] = {"title": name, "position": position, **schema}
        if param.default is not _EMPTY:
            try:
                prop["default"] = msgspec.to_builtins(param.default)
            except (TypeError, ValueError):
                pass  # a default with no JSON form (an object): not shown
        elif param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            required.append(name)
        properties[name] = prop
    schema_out: dict[str, Any] = {
        "title": "Parameters",
        "type": "object",
        "properties": properties,
        "required": required,
    }
    if definitions:
        schema_out["definitions"] = definitions
    return schema_out


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def check_against_schema(schema: dict[str, Any], parameters: Mapping[str, Any]) -> None:
    """Check parameters against a recorded ``parameter_schema`` where the flow function itself
    is not at hand: required ones present, no unknown ones, simple JSON types right.

    Raises ``ParameterTypeError`` naming each problem.
    """
    properties = schema.get("properties", {})
    problems = [f"{name!r} is not a parameter" for name in parameters if name not in properties]
    problems += [
        f"{name!r} is missing" for name in schema.get("required", []) if name not in parameters
    ]
    for name, value in parameters.items():
        expected = properties.get(name, {}).get("type")
        kinds = _JSON_TYPES.get(expected) if isinstance(expected, str) else None
        if kinds is None:
            continue
        # bool is an int in Python but not an integer in JSON schema.
        fits = isinstance(value, kinds) and not (
            isinstance(value, bool) and expected in ("integer", "number")
        )
        if not fits:
            problems.append(
                f"{name!r} got {_short(value)} ({type(value).__name__}), expected {expected}"
            )
    if problems:
        _raise(problems)
