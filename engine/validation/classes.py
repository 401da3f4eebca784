"""Record converters (dataclasses, Structs, TypedDicts, NamedTuples) and pydantic-validated ones."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from millstream._engine.validation.base import Compile, Converter, _identity, _Invalid
from millstream._engine.validation.hints import _class_hints
from millstream._engine.validation.scalars import _msgspec_leaf

if TYPE_CHECKING:
    import pydantic


def _record(
    tp: type,
    fields: list[tuple[str, Converter]],
    is_instance: Callable[[Any], bool],
    direct: Callable[[dict[Any, Any]], Any],
) -> Converter:
    """Build ``tp`` from a mapping: convert each field by pydantic's rules, then let msgspec
    build the object (required fields, renames, ``__post_init__``) without coercing again."""
    msgspec_builds = [True]

    def convert(value: Any) -> Any:
        if is_instance(value):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(f"Input should be a dictionary or an instance of {tp.__name__}")
        data = dict(value)
        for key, field_convert in fields:
            if key in data:
                try:
                    data[key] = field_convert(data[key])
                except _Invalid as exc:
                    exc.loc.append(f".{key}")
                    raise
        if msgspec_builds[0]:
            try:
                return msgspec.convert(data, tp)
            except msgspec.ValidationError as exc:
                raise _Invalid(str(exc)) from None
            except Exception:
                # A field type msgspec has no support for (an enum of mixed values) or cannot
                # resolve: build it directly from now on.
                msgspec_builds[0] = False
        return direct(data)

    return convert


def _construct(tp: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return tp(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise _Invalid(f"{type(exc).__name__}: {exc}") from None


def _require(data: Mapping[Any, Any], required: Iterable[str]) -> None:
    for key in required:
        if key not in data:
            raise _Invalid(f"Object missing required field `{key}`")


def _dataclass(tp: type, inner: Compile) -> Converter:
    hints = _class_hints(tp)
    init_fields = [f for f in dataclasses.fields(tp) if f.init]
    names = [f.name for f in init_fields]
    required = [
        f.name
        for f in init_fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    fields = [(name, inner(hints.get(name, Any))) for name in names]

    def direct(data: dict[Any, Any]) -> Any:
        _require(data, required)
        return _construct(tp, {name: data[name] for name in names if name in data})

    return _record(
        tp,
        [(name, convert) for name, convert in fields if convert is not None],
        lambda value: isinstance(value, tp),
        direct,
    )


def _struct(tp: type[msgspec.Struct], inner: Compile) -> Converter:
    try:
        info = msgspec.structs.fields(tp)
    except Exception:
        info = None
    if info is None or tp.__struct_config__.array_like:

        def as_msgspec(value: Any) -> Any:
            return value if isinstance(value, tp) else _msgspec_leaf(value, tp)

        return as_msgspec
    fields = [(f.encode_name, inner(f.type)) for f in info]
    required = [f.encode_name for f in info if f.required]
    renamed = {f.encode_name: f.name for f in info}

    def direct(data: dict[Any, Any]) -> Any:
        _require(data, required)
        return _construct(tp, {renamed[key]: data[key] for key in renamed if key in data})

    return _record(
        tp,
        [(key, convert) for key, convert in fields if convert is not None],
        lambda value: isinstance(value, tp),
        direct,
    )


def _typeddict(tp: Any, inner: Compile) -> Converter:
    hints = _class_hints(tp)
    fields = [(key, inner(hint)) for key, hint in hints.items()]
    required = sorted(getattr(tp, "__required_keys__", ()))

    def direct(data: dict[Any, Any]) -> Any:
        _require(data, required)
        return {key: data[key] for key in hints if key in data}

    return _record(
        tp,
        [(key, convert) for key, convert in fields if convert is not None],
        lambda value: False,  # TypedDict instances are plain dicts: always rebuilt
        direct,
    )


def _namedtuple(tp: Any, inner: Compile) -> Converter:
    hints = _class_hints(tp)
    names: tuple[str, ...] = tp._fields
    defaults: dict[str, Any] = tp._field_defaults
    converters = [inner(hints.get(name, Any)) or _identity for name in names]

    def field(name: str, convert: Converter, entry: Any) -> Any:
        try:
            return convert(entry)
        except _Invalid as exc:
            exc.loc.append(f".{name}")
            raise

    def convert(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            unexpected = [key for key in value if key not in names]
            if unexpected:
                raise _Invalid(f"Unexpected field {unexpected[0]!r}")
            given = dict(value)
        elif isinstance(value, (list, tuple)):
            if len(value) > len(names):
                raise _Invalid(f"NamedTuple should have at most {len(names)} items")
            given = dict(zip(names, value, strict=False))
        else:
            raise _Invalid(f"Input should be a valid tuple or a dictionary of {tp.__name__}")
        out = []
        for name, field_convert in zip(names, converters, strict=True):
            if name in given:
                out.append(field(name, field_convert, given[name]))
            elif name in defaults:
                out.append(defaults[name])
            else:
                raise _Invalid(f"Object missing required field `{name}`")
        return tp(*out)

    return convert


def _wants_pydantic(tp: Any) -> bool:
    """Whether an annotation is or contains a type only pydantic can validate (no import)."""
    origin = typing.get_origin(tp)
    if origin is None and isinstance(tp, type):
        return (
            tp.__module__.startswith("pydantic")
            or hasattr(tp, "__pydantic_validator__")
            or hasattr(tp, "__get_pydantic_core_schema__")
        )
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _wants_pydantic(args[0]) or any(_pydantic_metadata(item) for item in args[1:])
    if origin is typing.Literal:
        return False
    return any(_wants_pydantic(arg) for arg in args)


def _pydantic_metadata(item: Any) -> bool:
    module = type(item).__module__
    return module.startswith(("pydantic", "annotated_types"))


def _pydantic_loc(loc: tuple[int | str, ...]) -> list[str]:
    return [f"[{part}]" if isinstance(part, int) else f".{part}" for part in reversed(loc)]


def _from_pydantic(exc: pydantic.ValidationError) -> _Invalid:
    first, *others = exc.errors(include_url=False)
    message = first["msg"]
    for other in others[:2]:
        where = "".join(reversed(_pydantic_loc(other["loc"]))).lstrip(".")
        message += f"; also at {where}: {other['msg']}" if where else f"; also {other['msg']}"
    if len(others) > 2:
        message += f" (and {len(others) - 2} more)"
    invalid = _Invalid(message)
    invalid.loc = _pydantic_loc(first["loc"])
    return invalid


def _pydantic(tp: Any) -> Converter | None:
    """A converter validating with ``pydantic.TypeAdapter(tp)``; None if pydantic cannot."""
    try:
        import pydantic

        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(tp)
    except Exception:  # not installed, or a type pydantic cannot build a schema for
        return None
    model = tp if typing.get_origin(tp) is None and isinstance(tp, type) else None
    error_type = pydantic.ValidationError

    def convert(value: Any) -> Any:
        if model is not None and isinstance(value, model):
            return value
        try:
            return adapter.validate_python(value)
        except error_type as exc:
            raise _from_pydantic(exc) from None

    return convert
