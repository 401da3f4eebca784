"""Leaf converters: pydantic's lax rules for scalars, dates, times, UUIDs, decimals and paths."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import re
import typing
import uuid
from pathlib import PurePath
from typing import Any

import msgspec

from millstream._engine.validation.base import _NONE_TYPE, Converter, _Invalid

# -- scalars: pydantic's lax rules --------------------------------------------------------------
# Prefect validates flow parameters with pydantic; the same answers come here from msgspec
# (msgspec.convert does the parsing and builds dataclasses and Structs) except where msgspec's lax
# mode and pydantic's differ, which the converters of this package handle themselves (the
# scalars here, literals and enums in compile.py, iterables in containers.py):
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


# -- other leaf classes: what msgspec knows, else isinstance ------------------------------------
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
