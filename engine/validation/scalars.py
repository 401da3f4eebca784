"""Flow parameter validation: coerce bound arguments to their annotations as pydantic's lax mode."""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import math
import os
import re
import reprlib
import sys
import types
import typing
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import msgspec

from engine.exceptions import ParameterTypeError

if TYPE_CHECKING:
    import pydantic

__all__ = ["check_against_schema", "parameter_schema", "validate_parameters"]

Converter = Callable[[Any], Any]

_EMPTY: Any = inspect.Parameter.empty
_MISSING: Any = object()
_NONE_TYPE = type(None)


class _Invalid(Exception):
    """A value does not fit its annotation; becomes one line of a ``ParameterTypeError``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Filled innermost first while the error unwinds through containers and fields.
        self.loc: list[str] = []


# -- scalars: pydantic's lax rules --------------------------------------------------------------
# Prefect validates flow parameters with pydantic; the same answers come here from msgspec
# (msgspec.convert does the parsing and builds dataclasses and Structs) except where msgspec's lax
# mode and pydantic's differ, which the converters below handle themselves:
# - numbers never become strings (both agree) but bytes are decoded (msgspec refuses bytes);
# - " 5 ", "1_000", True and integral Decimals are ints (msgspec refuses them), "5e2" is not;
# - "yes"/"no"/"on"/"off"/"y"/"n"/"t"/"f" and 0.0/1.0 are booleans (msgspec: only true/false/1/0);
# - "null" is not None (msgspec's lax mode reads it as None);
# - Literal[1] refuses "1" (msgspec takes it); int enums take "1"; mixed-value enums work;
# - "2024-01-02" and dates make datetimes, millisecond timestamps are recognised, exact
#   datetimes make dates, "01:00:00" and "1 day" make timedeltas but "3600" does not;
# - any iterable but str/bytes/mappings makes a list, tuple or set (msgspec: only list/tuple/set);
# - paths from str, deques, UUIDs in braces or as URNs.

# Patterns are compiled (and cached by re) on first use: import time matters.
_INT_WITH_ZERO_FRACTION = r"([+-]?\d+(?:_\d+)*)\.0+"
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return None
    return None


def _identity(value: Any) -> Any:
    return value


def _to_int(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, int):  # bool and int enums become plain ints, as in pydantic
        return int(value)
    if isinstance(value, (float, decimal.Decimal)):
        if not math.isfinite(value):
            raise _Invalid("Input should be a finite number")
        if value == int(value):
            return int(value)
        raise _Invalid("Input should be a valid integer, got a number with a fractional part")
    text = _text(value)
    if text is None:
        raise _Invalid("Input should be a valid integer")
    text = text.strip()
    # int() alone would also take non-ASCII digits, which pydantic refuses.
    if text.isascii():
        try:
            return int(text)
        except ValueError:
            match = re.fullmatch(_INT_WITH_ZERO_FRACTION, text)
            if match:
                return int(match.group(1))
    raise _Invalid("Input should be a valid integer, unable to parse string as an integer")


def _to_float(value: Any) -> Any:
    if type(value) is float:
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        try:
            return float(value)
        except OverflowError:
            raise _Invalid("Input should be a finite number") from None
    text = _text(value)
    if text is None:
        raise _Invalid("Input should be a valid number")
    if text.isascii():
        try:
            return float(text)
        except ValueError:
            pass
    raise _Invalid("Input should be a valid number, unable to parse string as a number")


def _to_bool(value: Any) -> Any:
    if value is True or value is False:
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        if value == 1:
            return True
        if value == 0:
            return False
        raise _Invalid("Input should be a valid boolean, unable to interpret input")
    text = _text(value)
    if text is None:
        raise _Invalid("Input should be a valid boolean")
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Invalid("Input should be a valid boolean, unable to interpret input")


def _to_str(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, str):  # str enums and other subclasses: their plain text, as pydantic
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        text = _text(value)
        if text is None:
            raise _Invalid("Input should be a valid string, unable to parse raw data as unicode")
        return text
    raise _Invalid("Input should be a valid string")


def _to_bytes(value: Any) -> Any:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):  # pydantic encodes text; msgspec would expect base64
        return value.encode()
    raise _Invalid("Input should be a valid bytes")


def _to_bytearray(value: Any) -> Any:
    return value if type(value) is bytearray else bytearray(_to_bytes(value))


def _to_none(value: Any) -> Any:
    if value is None:
        return None
    raise _Invalid("Input should be None")


# -- dates, UUIDs, decimals, paths --------------------------------------------------------------
# Clock-style durations pydantic takes besides ISO 8601: "1 day, 01:00:00", "-01:00", "2d".
_CLOCK_DURATION = (
    r"(?P<sign>[-+])?(?:(?P<days>\d+)\s*(?:d|days?)\s*,?\s*)?"
    r"(?:(?P<hours>\d+):(?P<minutes>\d{1,2})(?::(?P<seconds>\d{1,2}(?:\.\d{1,6})?))?)?"
)
_ISO_DURATION = r"[-+]?P"


def _msgspec_leaf(value: Any, tp: Any) -> Any:
    try:
        return msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise _Invalid(str(exc)) from None


def _number(value: Any) -> float | int | None:
    """An int or float input (bool excluded), or a numeric string, as a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = _text(value)
    if text is not None and text.strip().isascii():
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _from_timestamp(number: float | int) -> Any:
    # pydantic reads numbers beyond 2e10 (the year 2603 in seconds) as milliseconds.
    if abs(number) > 2e10:
        number = number / 1000
    return _msgspec_leaf(number, dt.datetime)


def _to_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, bool):
        raise _Invalid("Input should be a valid datetime")
    if isinstance(value, (int, float)):
        return _from_timestamp(value)
    text = _text(value)
    if text is None:
        raise _Invalid("Input should be a valid datetime")
    try:
        # RFC 3339 (a space separator too) and numeric timestamps, as pydantic reads them.
        return msgspec.convert(text, dt.datetime, strict=False)
    except msgspec.ValidationError:
        pass
    try:
        # What RFC 3339 leaves out but pydantic takes: a bare date, minutes without seconds.
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    number = _number(text)
    if number is not None:
        return _from_timestamp(number)
    raise _Invalid("Input should be a valid datetime or date, unable to parse string")


def _exact_date(value: dt.datetime) -> dt.date:
    if value.time() != dt.time(0):
        raise _Invalid("Datetimes provided to dates should have zero time - e.g. be exact dates")
    return value.date()


def _to_date(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _exact_date(value)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bool):
        raise _Invalid("Input should be a valid date")
    if isinstance(value, (int, float)):
        return _exact_date(_from_timestamp(value))
    text = _text(value)
    if text is None:
        raise _Invalid("Input should be a valid date")
    try:
        return msgspec.convert(text, dt.date, strict=False)
    except msgspec.ValidationError:
        pass
    try:
        moment = _to_datetime(text)
    except _Invalid:
        raise _Invalid("Input should be a valid date or datetime, unable to parse string") from None
    return _exact_date(moment)


def _to_time(value: Any) -> Any:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value < 86400:  # seconds since midnight, UTC as in pydantic
            moment = dt.datetime.min + dt.timedelta(seconds=value)
            return moment.time().replace(tzinfo=dt.UTC)
        raise _Invalid("Input should be in a valid time format, seconds out of range")
    text = _text(value)
    if text is not None:
        try:
            return msgspec.convert(text, dt.time, strict=False)
        except msgspec.ValidationError:
            pass
        try:
            return dt.time.fromisoformat(text)
        except ValueError:
            pass
    raise _Invalid("Input should be in a valid time format")


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return dt.timedelta(seconds=value)
        except OverflowError:
            raise _Invalid("Input should be a valid timedelta, out of range") from None
    text = _text(value)
    if text is not None:
        text = text.strip()
        # msgspec would read a bare number string as seconds; pydantic refuses it.
        if re.match(_ISO_DURATION, text, re.IGNORECASE):
            return _msgspec_leaf(text, dt.timedelta)
        match = re.fullmatch(_CLOCK_DURATION, text, re.IGNORECASE)
        if match and (match["days"] or match["hours"]):
            delta = dt.timedelta(
                days=int(match["days"] or 0),
                hours=int(match["hours"] or 0),
                minutes=int(match["minutes"] or 0),
                seconds=float(match["seconds"] or 0),
            )
            return -delta if match["sign"] == "-" else delta
    raise _Invalid("Input should be a valid timedelta")


def _to_uuid(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, (str, bytes)):
        try:
            return msgspec.convert(value, uuid.UUID, strict=False)
        except msgspec.ValidationError:
            pass
        text = _text(value)
        if text is not None:
            try:  # braces and "urn:uuid:", which pydantic takes and msgspec does not
                return uuid.UUID(text)
            except ValueError:
                pass
        raise _Invalid("Input should be a valid UUID")
    raise _Invalid("UUID input should be a string, bytes or UUID object")


def _to_decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        result = value
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
        result = _msgspec_leaf(value, decimal.Decimal)
    else:
        raise _Invalid("Decimal input should be an integer, float, string or Decimal object")
    if not result.is_finite():  # msgspec takes "nan"; pydantic refuses it
        raise _Invalid("Input should be a finite number")
    return result


def _path(tp: type[PurePath]) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        if isinstance(value, (str, os.PathLike)):
            return tp(value)
        raise _Invalid(f"Input is not a valid path for {tp.__name__}")

    return convert


_LEAVES: dict[Any, Converter] = {
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    str: _to_str,
    bytes: _to_bytes,
    bytearray: _to_bytearray,
    _NONE_TYPE: _to_none,
    dt.datetime: _to_datetime,
    dt.date: _to_date,
    dt.time: _to_time,
    dt.timedelta: _to_timedelta,
    uuid.UUID: _to_uuid,
    decimal.Decimal: _to_decimal,
}


# -- literals, unions, enums --------------------------------------------------------------------
def _or_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _literal(allowed: tuple[Any, ...]) -> Converter:
    expected = _or_join([repr(item) for item in allowed])

    def convert(value: Any) -> Any:
        for item in allowed:
            if value is item:
                return item
        # Equality, as pydantic's lax mode: Literal[1] takes 1.0 and True but not "1".
        for item in allowed:
            if _equal(value, item):
                return item
        raise _Invalid(f"Input should be {expected}")

    return convert


def _exact_check(member: Any) -> Callable[[Any], bool] | None:
    """A test that ``value`` already is exactly of ``member`` (pydantic's strict pass)."""
    if member is _NONE_TYPE or member is None:
        return lambda value: value is None
    if typing.get_origin(member) is typing.Literal:
        allowed = typing.get_args(member)
        return lambda value: any(
            type(value) is type(item) and _equal(value, item) for item in allowed
        )
    if typing.get_origin(member) is None and isinstance(member, type):
        return lambda value: type(value) is member
    return None


def _union(members: tuple[Any, ...], memo: dict[Any, Converter | None]) -> Converter:
    options = [(member, _compile(member, memo) or _identity) for member in members]
    exact = [
        (check, convert)
        for (member, convert) in options
        if (check := _exact_check(member)) is not None
    ]
    expected = " | ".join(_type_name(member) for member in members)

    def convert(value: Any) -> Any:
        # pydantic's smart mode: a member the value already is wins; else the first that fits.
        for check, member_convert in exact:
            if check(value):
                try:
                    return member_convert(value)
                except _Invalid:
                    break
        problems = []
        for member, member_convert in options:
            try:
                return member_convert(value)
            except _Invalid as exc:
                problems.append(f"{_type_name(member)}: {_detail(exc)}")
        raise _Invalid(f"Input matches none of {expected} ({'; '.join(problems)})")

    return convert


def _enum(tp: type[enum.Enum]) -> Converter:
    members = list(tp)
    expected = _or_join([repr(member.value) for member in members] or ["a member"])
    # Int and float enums take their values in lax form ("1" for 1); other enums need the value.
    value_convert = _to_int if issubclass(tp, int) else _to_float if issubclass(tp, float) else None

    def convert(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except (ValueError, TypeError):
            pass
        if value_convert is not None:
            try:
                return tp(value_convert(value))
            except (_Invalid, ValueError, TypeError):
                pass
        raise _Invalid(f"Input should be {expected}")

    return convert


# -- containers ---------------------------------------------------------------------------------
# What pydantic's lax mode takes for a list, tuple or set: never a str, bytes or mapping.
_ITEMS_INPUTS = (
    list,
    tuple,
    set,
    frozenset,
    collections.deque,
    cabc.KeysView,
    cabc.ValuesView,
    cabc.Iterator,
)


def _items(value: Any, kind: str) -> Iterable[Any]:
    if isinstance(value, _ITEMS_INPUTS):
        return typing.cast(Iterable[Any], value)
    raise _Invalid(f"Input should be a valid {kind}")


def _each(convert: Converter, items: Iterable[Any]) -> list[Any]:
    if convert is _identity:
        return list(items)
    out = []
    for index, item in enumerate(items):
        try:
            out.append(convert(item))
        except _Invalid as exc:
            exc.loc.append(f"[{index}]")
            raise
    return out


def _list_of(item: Converter, build: Callable[[list[Any]], Any], kind: str) -> Converter:
    return lambda value: build(_each(item, _items(value, kind)))


def _set_of(item: Converter, build: Callable[[list[Any]], Any]) -> Converter:
    def convert(value: Any) -> Any:
        items = _each(item, _items(value, "set"))
        try:
            return build(items)
        except TypeError:
            raise _Invalid("Set items should be hashable") from None

    return convert


def _sequence_of(item: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            raise _Invalid("'str' instances are not allowed as a Sequence value")
        if isinstance(value, (list, tuple, collections.deque)):
            return type(value)(_each(item, value))
        if isinstance(value, cabc.Sequence):
            return _each(item, value)
        raise _Invalid("Input should be a valid sequence")

    return convert


def _tuple_of(args: tuple[Any, ...], memo: dict[Any, Converter | None]) -> Converter:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = (_compile(args[0], memo) or _identity) if args else _identity
        return lambda value: tuple(_each(item, _items(value, "tuple")))
    if args == ((),):  # typing.Tuple[()]
        args = ()
    positions = [_compile(arg, memo) or _identity for arg in args]

    def convert(value: Any) -> Any:
        items = list(_items(value, "tuple"))
        if len(items) != len(positions):
            raise _Invalid(f"Tuple should have {len(positions)} items, not {len(items)}")
        out = []
        for index, (position, item) in enumerate(zip(positions, items, strict=True)):
            try:
                out.append(position(item))
            except _Invalid as exc:
                exc.loc.append(f"[{index}]")
                raise
        return tuple(out)

    return convert


def _mapping_of(key: Converter, item: Converter, origin: Any) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Invalid("Input should be a valid dictionary")
        out = {}
        for name, entry in value.items():
            try:
                converted_name = key(name)
            except _Invalid as exc:
                exc.loc.append(f"[{name!r}] (key)")
                raise
            try:
                out[converted_name] = item(entry)
            except _Invalid as exc:
                exc.loc.append(f"[{name!r}]")
                raise
        if origin is dict or not isinstance(origin, type):
            return out
        # OrderedDict, Counter, defaultdict: keep the kind (and a defaultdict's factory).
        if isinstance(value, origin):
            kept = typing.cast(Any, value).copy()
            kept.clear()
            kept.update(out)
            return kept
        try:
            return origin(out)
        except TypeError:
            return out

    return convert


def _subclass_of(bound: Any) -> Converter | None:
    if not isinstance(bound, type):
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, bound):
            return value
        raise _Invalid(f"Input should be a subclass of {bound.__name__}")

    return convert


def _callable(value: Any) -> Any:
    if callable(value):
        return value
    raise _Invalid("Input should be callable")


# Lazy iterables are passed as they are: consuming one to validate it would empty it.
_LAZY = frozenset(
    {
        cabc.Iterable,
        cabc.Iterator,
        cabc.Generator,
        cabc.AsyncIterable,
        cabc.AsyncIterator,
        cabc.AsyncGenerator,
        cabc.Awaitable,
        cabc.Coroutine,
        cabc.Collection,
        cabc.Container,
        cabc.Reversible,
    }
)

_BARE_CONTAINERS = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        dict,
        collections.deque,
        cabc.Sequence,
        cabc.MutableSequence,
        cabc.Set,
        cabc.MutableSet,
        cabc.Mapping,
        cabc.MutableMapping,
    }
)


def _generic(
    tp: Any, origin: Any, args: tuple[Any, ...], memo: dict[Any, Converter | None]
) -> Converter | None:
    def arg(index: int) -> Converter:
        return (_compile(args[index], memo) if len(args) > index else None) or _identity

    if origin is list:
        return _list_of(arg(0), _identity, "list")
    if origin is collections.deque:
        return _list_of(arg(0), collections.deque, "deque")
    if origin in (cabc.Sequence, cabc.MutableSequence):
        return _sequence_of(arg(0))
    if origin in (set, cabc.MutableSet, cabc.Set):
        return _set_of(arg(0), set)
    if origin is frozenset:
        return _set_of(arg(0), frozenset)
    if origin is tuple:
        return _tuple_of(args, memo)
    if origin in (cabc.Mapping, cabc.MutableMapping) or (
        isinstance(origin, type) and issubclass(origin, dict)
    ):
        return _mapping_of(arg(0), arg(1), origin)
    if origin is type:
        return _subclass_of(args[0]) if args else None
    if origin is cabc.Callable:
        return _callable
    if origin in _LAZY:
        return None
    if isinstance(origin, type) and (
        dataclasses.is_dataclass(origin) or issubclass(origin, msgspec.Struct)
    ):
        # A parametrised generic class: msgspec knows what its type variables stand for.
        def convert(value: Any) -> Any:
            return value if isinstance(value, origin) else _msgspec_leaf(value, tp)

        return convert
    return _fallback(tp)


# -- classes: dataclasses, Structs, TypedDicts, NamedTuples, pydantic ---------------------------
def _class_hints(tp: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tp, include_extras=True)
    except Exception:
        module = sys.modules.get(tp.__module__)
        annotations: dict[str, Any] = {}
        for klass in reversed(tp.__mro__):
            annotations.update(inspect.get_annotations(klass))
        return _resolve_each(annotations, vars(module) if module else {}, dict(vars(tp)))


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


def _dataclass(tp: type, memo: dict[Any, Converter | None]) -> Converter:
    hints = _class_hints(tp)
    init_fields = [f for f in dataclasses.fields(tp) if f.init]
    names = [f.name for f in init_fields]
    required = [
        f.name
        for f in init_fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    fields = [(name, _compile(hints.get(name, Any), memo)) for name in names]

    def direct(data: dict[Any, Any]) -> Any:
        _require(data, required)
        return _construct(tp, {name: data[name] for name in names if name in data})

    return _record(
        tp,
        [(name, convert) for name, convert in fields if convert is not None],
        lambda value: isinstance(value, tp),
        direct,
    )


def _struct(tp: type[msgspec.Struct], memo: dict[Any, Converter | None]) -> Converter:
    try:
        info = msgspec.structs.fields(tp)
    except Exception:
        info = None
    if info is None or tp.__struct_config__.array_like:

        def as_msgspec(value: Any) -> Any:
            return value if isinstance(value, tp) else _msgspec_leaf(value, tp)

        return as_msgspec
    fields = [(f.encode_name, _compile(f.type, memo)) for f in info]
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


def _typeddict(tp: Any, memo: dict[Any, Converter | None]) -> Converter:
    hints = _class_hints(tp)
    fields = [(key, _compile(hint, memo)) for key, hint in hints.items()]
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


def _namedtuple(tp: Any, memo: dict[Any, Converter | None]) -> Converter:
    hints = _class_hints(tp)
    names: tuple[str, ...] = tp._fields
    defaults: dict[str, Any] = tp._field_defaults
    converters = [_compile(hints.get(name, Any), memo) or _identity for name in names]

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


def _instance_of(tp: type) -> Converter | None:
    try:
        isinstance(None, tp)
    except TypeError:  # a protocol that is not runtime-checkable: nothing can be checked
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        raise _Invalid(f"Input should be an instance of {tp.__name__}")

    return convert


def _fallback(tp: Any) -> Converter | None:
    """Types outside the table: msgspec when it knows them, else ``isinstance`` for classes."""
    try:
        info: Any = msgspec.inspect.type_info(tp)
    except Exception:
        info = None
    known = info is not None and not isinstance(
        info, (msgspec.inspect.CustomType, msgspec.inspect.AnyType)
    )
    if known:
        return lambda value: _msgspec_leaf(value, tp)
    if typing.get_origin(tp) is None and isinstance(tp, type):
        return _instance_of(tp)
    return None


def _class(tp: type, memo: dict[Any, Converter | None]) -> Converter | None:
    if _wants_pydantic(tp):
        return _pydantic(tp) or _instance_of(tp)
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    if tp in _BARE_CONTAINERS or tp in _LAZY:
        return _generic(tp, tp, (), memo)
    if issubclass(tp, msgspec.Struct):
        return _struct(tp, memo)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, memo)
    if typing.is_typeddict(tp):
        return _typeddict(tp, memo)
    if issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _namedtuple(tp, memo)
    if issubclass(tp, PurePath):
        return _path(tp)
    return _fallback(tp)


def _annotated(
    tp: Any, args: tuple[Any, ...], memo: dict[Any, Converter | None]
) -> Converter | None:
    base, metadata = args[0], args[1:]
    if any(_pydantic_metadata(item) for item in metadata):
        converter = _pydantic(tp)
        if converter is not None:
            return converter
    inner = _compile(base, memo) or _identity
    if not any(isinstance(item, msgspec.Meta) for item in metadata):
        return inner if inner is not _identity else None

    def convert(value: Any) -> Any:
        out = inner(value)
        try:  # the msgspec.Meta constraints (ge=, max_length=, pattern=, ...) on the result
            msgspec.convert(out, tp)
        except msgspec.ValidationError as exc:
            raise _Invalid(str(exc)) from None
        except TypeError:
            pass  # a base type msgspec cannot check: its constraints cannot apply
        return out

    return convert


_WRAPPERS = frozenset({typing.Required, typing.NotRequired, typing.ClassVar, typing.Final})


def _build(tp: Any, memo: dict[Any, Converter | None]) -> Converter | None:
    if tp is Any or tp is object or tp is _EMPTY or tp is None:
        return _to_none if tp is None else None
    if isinstance(tp, (typing.TypeVar, typing.ForwardRef, str)):
        return None  # unresolved: nothing to check against
    try:
        leaf = _LEAVES.get(tp)
    except TypeError:  # an unhashable annotation (odd metadata): no leaf
        leaf = None
    if leaf is not None:
        return leaf
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _annotated(tp, args, memo)
    if origin in _WRAPPERS:
        return _compile(args[0], memo) if args else None
    if origin is typing.Literal:
        return _literal(args)
    if origin is typing.Union or origin is types.UnionType:
        return _union(args, memo)
    if isinstance(tp, typing.NewType):
        return _compile(tp.__supertype__, memo)
    if origin is not None:
        if _wants_pydantic(tp):
            converter = _pydantic(tp)
            if converter is not None:
                return converter
        return _generic(tp, origin, args, memo)
    if isinstance(tp, type):
        return _class(tp, memo)
    return _fallback(tp)


def _compile(tp: Any, memo: dict[Any, Converter | None]) -> Converter | None:
    """The converter of an annotation; None when any value passes as it is."""
    try:
        if tp in memo:
            return memo[tp]
    except TypeError:  # unhashable annotation: cannot recurse through it anyway
        return _build(tp, memo)
    # A recursive type (a tree of dataclasses) meets itself while compiling: it gets a forwarder
    # to the converter that exists by the time any value is converted.
    built: list[Converter | None] = []

    def forward(value: Any) -> Any:
        convert = built[0]
        return value if convert is None else convert(value)

    memo[tp] = forward
    converter = _build(tp, memo)
    built.append(converter)
    memo[tp] = converter
    return converter


# -- per-function plans -------------------------------------------------------------------------
class _Plan(typing.NamedTuple):
    hints: dict[str, Any]
    # (name, converter, default, annotation) for each parameter that is checked
    checks: tuple[tuple[str, Converter, Any, Any], ...]


_plans: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()


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


# -- messages -----------------------------------------------------------------------------------
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


# -- public -------------------------------------------------------------------------------------
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
