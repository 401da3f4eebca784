"""Flow parameter coercion: pydantic-lax rules through msgspec, pydantic models when named."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing
import uuid

import msgspec
import pydantic
import pytest

from engine.exceptions import ParameterTypeError
from engine.validation import parameter_schema, validate_parameters


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Box(msgspec.Struct):
    size: int


class Options(typing.TypedDict):
    verbose: bool


class Model(pydantic.BaseModel):
    n: int


def target(
    a: int,
    b: str,
    c: float,
    d: bool,
    when: dt.datetime,
    point: Point,
    box: Box,
    options: Options,
    color: Color,
    model: Model,
    points: list[Point],
    ident: uuid.UUID,
    maybe: int | None = None,
    anything=None,
) -> None: ...


GOOD = {
    "a": "5",
    "b": "x",
    "c": "1.5",
    "d": "true",
    "when": "2024-01-02T03:04:05Z",
    "point": {"x": 1, "y": "2"},
    "box": {"size": 3},
    "options": {"verbose": "false"},
    "color": "red",
    "model": {"n": "7"},
    "points": [{"x": 1, "y": 2}],
    "ident": "12345678-1234-5678-1234-567812345678",
    "maybe": None,
    "anything": object,
}


def test_lax_coercions_and_models_from_dicts():
    result = validate_parameters(target, GOOD)
    assert result["a"] == 5 and result["c"] == 1.5 and result["d"] is True
    assert result["when"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert result["point"] == Point(1, 2)
    assert result["box"] == Box(3)
    assert result["options"] == {"verbose": False}
    assert result["color"] is Color.RED
    assert result["model"] == Model(n=7)
    assert result["points"] == [Point(1, 2)]
    assert result["ident"] == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert result["anything"] is object
    assert GOOD["a"] == "5"  # the input mapping is not changed


def test_instances_are_kept_as_they_are():
    point = Point(1, 2)
    result = validate_parameters(target, {**GOOD, "point": point})
    assert result["point"] is point


@pytest.mark.parametrize(
    ("name", "value"),
    [("b", 5), ("a", "abc"), ("color", "blue"), ("point", {"x": 1}), ("c", True)],
)
def test_rejections_name_the_parameter(name, value):
    with pytest.raises(ParameterTypeError, match=f"'{name}'"):
        validate_parameters(target, {**GOOD, name: value})


def test_several_bad_parameters_are_all_named():
    with pytest.raises(ParameterTypeError) as info:
        validate_parameters(target, {**GOOD, "a": "x", "b": 1})
    assert "'a'" in str(info.value) and "'b'" in str(info.value)
    assert str(info.value).startswith("Flow run received invalid parameters")


def test_string_annotations_are_resolved():
    def fn(x: int) -> None: ...

    assert validate_parameters(fn, {"x": "3"}) == {"x": 3}


def test_unresolvable_annotations_are_skipped():
    def fn(x: NoSuchType) -> None: ...  # noqa: F821

    assert validate_parameters(fn, {"x": "kept"}) == {"x": "kept"}


def test_parameter_schema():
    def fn(x: int, y: str = "a") -> None: ...

    schema = parameter_schema(fn)
    assert schema["required"] == ["x"]
    assert schema["properties"]["x"]["type"] == "integer"
    assert schema["properties"]["y"]["default"] == "a"
