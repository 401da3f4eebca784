"""Flow parameter validation: pydantic's lax coercions through msgspec, models through pydantic."""

# Every annotation in this module is a string (resolved by typing.get_type_hints), as in user
# modules written with this import.
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import subprocess
import sys
import typing
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Optional, TypedDict

import msgspec
import pydantic
import pytest

from millstream._engine.exceptions import ParameterTypeError
from millstream._engine.validation import (
    check_against_schema,
    parameter_schema,
    validate_parameters,
)

UTC = dt.UTC
ID = "12345678-1234-5678-1234-567812345678"


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mixed(enum.Enum):  # values of two types: msgspec cannot handle it, pydantic can
    NAME = "name"
    ONE = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


@dataclasses.dataclass
class Line:
    label: str
    points: list[Point]


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Tagged:
    mixed: Mixed
    when: dt.date


class Box(msgspec.Struct):
    size: int
    color: Color = Color.RED


class Camel(msgspec.Struct, rename="camel"):
    max_size: int


class Options(TypedDict):
    verbose: bool
    depth: int


class Pair(NamedTuple):
    left: int
    right: str = "r"


class Model(pydantic.BaseModel):
    n: int


class Holder(pydantic.BaseModel):
    models: list[Model]


@dataclasses.dataclass
class WithModel:
    model: Model
    count: int


class Opaque:
    """A class neither msgspec nor pydantic knows."""


def convert(annotation: Any, value: Any) -> Any:
    """Validate ``value`` as the one parameter of a function annotated with ``annotation``."""

    def fn(x):
        return x

    fn.__annotations__ = {"x": annotation}
    return validate_parameters(fn, {"x": value})["x"]


def rejection(annotation: Any, value: Any) -> str:
    with pytest.raises(ParameterTypeError) as info:
        convert(annotation, value)
    return str(info.value)


# -- scalars and the like -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (int, "5", 5),
        (int, " 5 ", 5),
        (int, "-1_000", -1000),
        (int, "5.0", 5),
        (int, 5.0, 5),
        (int, True, 1),
        (int, Decimal("3"), 3),
        (int, Level.HIGH, 2),
        (float, "1.5", 1.5),
        (float, 2, 2.0),
        (float, "1e3", 1000.0),
        (float, Decimal("0.5"), 0.5),
        (bool, "true", True),
        (bool, "False", False),
        (bool, "yes", True),
        (bool, "off", False),
        (bool, "0", False),
        (bool, 1, True),
        (bool, 0.0, False),
        (str, "text", "text"),
        (str, b"bytes", "bytes"),
        (bytes, "ab", b"ab"),
        (bytes, bytearray(b"ab"), b"ab"),
        (type(None), None, None),
        (Decimal, "1.5", Decimal("1.5")),
        (Decimal, 2, Decimal(2)),
        (Path, "a/b", Path("a/b")),
        (uuid.UUID, ID, uuid.UUID(ID)),
        (uuid.UUID, "{" + ID + "}", uuid.UUID(ID)),
        (uuid.UUID, ID.replace("-", ""), uuid.UUID(ID)),
    ],
)
def test_scalar_coercions(annotation, value, expected):
    result = convert(annotation, value)
    assert result == expected
    assert type(result) is type(expected)


def test_str_enum_member_becomes_its_plain_value():
    class Shade(enum.StrEnum):
        DARK = "dark"

    result = convert(str, Shade.DARK)
    assert result == "dark" and type(result) is str


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (dt.datetime, "2024-01-02T03:04:05Z", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (
            dt.datetime,
            "2024-01-02T03:04:05.5+02:00",
            dt.datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC),
        ),
        (dt.datetime, "2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
        (dt.datetime, "2024-01-02T03:04", dt.datetime(2024, 1, 2, 3, 4)),
        (dt.datetime, "2024-01-02", dt.datetime(2024, 1, 2)),
        (dt.datetime, dt.date(2024, 1, 2), dt.datetime(2024, 1, 2)),
        (dt.datetime, 1_700_000_000, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (dt.datetime, 1_700_000_000_000, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (dt.datetime, "1700000000", dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (dt.date, "2024-01-02", dt.date(2024, 1, 2)),
        (dt.date, "2024-01-02T00:00:00", dt.date(2024, 1, 2)),
        (dt.date, dt.datetime(2024, 1, 2), dt.date(2024, 1, 2)),
        (dt.time, "03:04:05", dt.time(3, 4, 5)),
        (dt.time, "03:04", dt.time(3, 4)),
        (dt.timedelta, "PT1H30M", dt.timedelta(hours=1, minutes=30)),
        (dt.timedelta, "01:30:00", dt.timedelta(hours=1, minutes=30)),
        (dt.timedelta, "-01:00:00", dt.timedelta(hours=-1)),
        (dt.timedelta, "1 day, 01:00:00", dt.timedelta(days=1, hours=1)),
        (dt.timedelta, 90, dt.timedelta(seconds=90)),
        (dt.timedelta, 1.5, dt.timedelta(seconds=1.5)),
    ],
)
def test_iso_strings_and_timestamps_become_dates_and_times(annotation, value, expected):
    result = convert(annotation, value)
    assert result == expected
    assert type(result) is annotation


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (Color, "red", Color.RED),
        (Color, Color.GREEN, Color.GREEN),
        (Level, 2, Level.HIGH),
        (Level, "2", Level.HIGH),
        (Level, 1.0, Level.LOW),
        (Mixed, "name", Mixed.NAME),
        (Mixed, 1, Mixed.ONE),
        (Literal["a", "b"], "b", "b"),
        (Literal[1, 2], 2.0, 2),
        (Literal[Level.LOW], 1, Level.LOW),
        (Literal[True], True, True),
    ],
)
def test_values_become_enum_members_and_literals(annotation, value, expected):
    result = convert(annotation, value)
    assert result is expected or (result == expected and type(result) is type(expected))


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (Optional[int], None, None),  # noqa: UP045 - the typing spelling is covered on purpose
        (Optional[int], "5", 5),  # noqa: UP045
        (int | None, "5", 5),
        (int | str, "5", "5"),  # a member the value already is wins over coercion
        (str | int, 5, 5),
        (int | str, 5.0, 5),
        (float | int, "5", 5.0),  # else the first member that fits, in order
        (bool | int, "1", True),
        (Literal["auto"] | int, "auto", "auto"),
        (Literal["auto"] | int, "7", 7),
        (list[int] | None, ("1",), [1]),
    ],
)
def test_optional_and_unions(annotation, value, expected):
    result = convert(annotation, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (list[int], ["1", 2], [1, 2]),
        (list[int], ("1", 2), [1, 2]),
        (list[int], {"3"}, [3]),
        (list[int], (n for n in ("4",)), [4]),
        (list, (1, "a"), [1, "a"]),
        (set[int], ["1", "1", 2], {1, 2}),
        (frozenset[str], ["a"], frozenset({"a"})),
        (tuple[int, str], ["1", "a"], (1, "a")),
        (tuple[int, ...], ["1", "2"], (1, 2)),
        (dict[str, int], {"a": "1"}, {"a": 1}),
        (dict[int, float], {"1": "2.5"}, {1: 2.5}),
        (dict[str, list[int]], {"a": ["1", "2"]}, {"a": [1, 2]}),
        (list[dict[str, tuple[int, bool]]], [{"k": ["1", "yes"]}], [{"k": (1, True)}]),
        (collections.deque[int], ["1"], collections.deque([1])),
        (Sequence[int], ("1",), (1,)),
        (Sequence[int], ["1"], [1]),
        (Annotated[int, msgspec.Meta(ge=0)], "5", 5),
    ],
)
def test_containers_convert_their_items(annotation, value, expected):
    result = convert(annotation, value)
    assert result == expected
    assert type(result) is type(expected)


# -- dataclasses, Structs, TypedDicts, NamedTuples ----------------------------------------------
def test_dicts_become_dataclasses_with_their_fields_coerced():
    assert convert(Point, {"x": "1", "y": 2.0}) == Point(1, 2)
    assert convert(Point, {"x": 1}) == Point(1, 0)  # the default applies
    assert convert(Point, {"x": 1, "unknown": 3}) == Point(1, 0)  # extra keys are ignored


def test_nested_lists_of_dataclasses():
    value = {"label": b"path", "points": [{"x": "1", "y": "2"}, {"x": 3}]}
    assert convert(Line, value) == Line("path", [Point(1, 2), Point(3, 0)])
    assert convert(list[Line], [value]) == [Line("path", [Point(1, 2), Point(3, 0)])]


def test_recursive_dataclasses():
    tree = {"value": "1", "children": [{"value": "2", "children": [{"value": 3}]}]}
    assert convert(Node, tree) == Node(1, [Node(2, [Node(3)])])


def test_dataclass_fields_msgspec_cannot_handle_are_still_converted():
    result = convert(Tagged, {"mixed": 1, "when": "2024-01-02"})
    assert result == Tagged(Mixed.ONE, dt.date(2024, 1, 2))


def test_dicts_become_structs_typeddicts_and_namedtuples():
    assert convert(Box, {"size": "3", "color": "green"}) == Box(3, Color.GREEN)
    assert convert(Camel, {"maxSize": "4"}) == Camel(4)
    options = convert(Options, {"verbose": "false", "depth": "2", "extra": 1})
    assert options == {"verbose": False, "depth": 2}
    assert convert(Pair, {"left": "1"}) == Pair(1, "r")
    assert convert(Pair, ["1", "b"]) == Pair(1, "b")


def test_instances_are_kept_as_they_are():
    for annotation, value in [
        (Point, Point(1, 2)),
        (Box, Box(1)),
        (Pair, Pair(1)),
        (Model, Model(n=1)),
        (Color, Color.RED),
        (Opaque, Opaque()),
    ]:
        assert convert(annotation, value) is value
    point = Point(1, 2)
    assert convert(list[Point], [point])[0] is point


def test_arbitrary_classes_accept_only_their_instances():
    assert "instance of Opaque" in rejection(Opaque, "not one")
    assert "instance of Opaque" in rejection(list[Opaque], [Opaque(), 5])


# -- rejections ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "value", "detail"),
    [
        (str, 5, "Input should be a valid string"),
        (str, 1.5, "Input should be a valid string"),
        (str, True, "Input should be a valid string"),
        (int, "abc", "unable to parse string as an integer"),
        (int, "5.5", "unable to parse string as an integer"),
        (int, "5e2", "unable to parse string as an integer"),
        (int, 5.5, "fractional part"),
        (int, None, "Input should be a valid integer"),
        (float, "abc", "unable to parse string as a number"),
        (bool, "maybe", "unable to interpret input"),
        (bool, 2, "unable to interpret input"),
        (int | None, "null", "matches none of int | None"),
        (Color, "blue", "Input should be 'red' or 'green'"),
        (Color, "RED", "Input should be 'red' or 'green'"),
        (Mixed, "1", "Input should be 'name' or 1"),
        (Literal[1], "1", "Input should be 1"),
        (Literal["a", "b"], "c", "Input should be 'a' or 'b'"),
        (list[int], "12", "Input should be a valid list"),
        (list[int], {"a": 1}, "Input should be a valid list"),
        (dict[str, int], [("a", 1)], "Input should be a valid dictionary"),
        (tuple[int, int], [1], "Tuple should have 2 items"),
        (dt.datetime, "yesterday", "Input should be a valid datetime"),
        (dt.date, dt.datetime(2024, 1, 2, 3), "should have zero time"),
        (dt.timedelta, "3600", "Input should be a valid timedelta"),
        (uuid.UUID, "not-a-uuid", "Input should be a valid UUID"),
        (Decimal, "nan", "finite number"),
        (Annotated[int, msgspec.Meta(ge=0)], "-1", "Expected `int` >= 0"),
        (Point, [1, 2], "Input should be a dictionary or an instance of Point"),
        (Box, {}, "missing required field `size`"),
        (Options, {"verbose": True}, "missing required field `depth`"),
        (Pair, {}, "missing required field `left`"),
        (Pair, [1, "a", "b"], "at most 2 items"),
    ],
)
def test_rejections_name_the_parameter_value_and_type(annotation, value, detail):
    message = rejection(annotation, value)
    assert message.startswith("Flow run received invalid parameters")
    assert f"Flow parameter 'x' got {value!r} ({type(value).__name__})" in message
    assert detail in message


def test_int_is_not_a_str():
    message = rejection(str, 5)
    assert message == (
        "Flow run received invalid parameters:\n"
        " - Flow parameter 'x' got 5 (int), expected str: Input should be a valid string"
    )


def test_missing_dataclass_key_is_named():
    assert "missing required field `x`" in rejection(Point, {"y": 1})


def test_nested_errors_name_where_they_are():
    message = rejection(Line, {"label": "l", "points": [{"x": 1}, {"x": "abc"}]})
    assert "expected Line: at x.points[1].x: Input should be a valid integer" in message
    message = rejection(dict[str, list[int]], {"a": [1, "b"]})
    assert "at x['a'][1]:" in message


def test_long_values_are_truncated():
    message = rejection(int, "9" * 10 + "z" * 500)
    assert "zzzz" in message and "z" * 200 not in message


def test_every_bad_parameter_is_named_in_one_error():
    def flow_fn(count: int, label: str, when: dt.date, ok: float) -> None: ...

    with pytest.raises(ParameterTypeError) as info:
        validate_parameters(flow_fn, {"count": "many", "label": 3, "when": "soon", "ok": "1"})
    message = str(info.value)
    assert message.startswith("Flow run received invalid parameters:\n - ")
    assert message.count("\n - ") == 3
    for name in ("'count' got 'many' (str)", "'label' got 3 (int)", "'when' got 'soon' (str)"):
        assert f"Flow parameter {name}" in message
    assert "'ok'" not in message


# -- pydantic -----------------------------------------------------------------------------------
def test_pydantic_models_are_built_from_dicts():
    assert convert(Model, {"n": "7"}) == Model(n=7)
    assert convert(list[Model], [{"n": "1"}, {"n": 2}]) == [Model(n=1), Model(n=2)]
    assert convert(Model | None, None) is None
    assert convert(Holder, {"models": [{"n": "3"}]}) == Holder(models=[Model(n=3)])
    assert convert(dict[str, Model], {"a": {"n": 1}}) == {"a": Model(n=1)}


def test_pydantic_errors_carry_pydantic_detail():
    message = rejection(list[Model], [{"n": 1}, {"n": "x"}])
    assert "Flow parameter 'x' got [{'n': 1}, {'n': 'x'}] (list), expected list[Model]" in message
    assert "at x[1].n: Input should be a valid integer" in message


def test_pydantic_models_inside_other_types():
    # A Struct in the same annotation: pydantic cannot take the whole annotation, so the
    # model alone is given to pydantic.
    assert convert(Model | Box, {"size": "2"}) == Box(2)
    assert convert(Model | Box, {"n": "2"}) == Model(n=2)
    assert convert(WithModel, {"model": {"n": "4"}, "count": "1"}) == WithModel(Model(n=4), 1)


def test_pydantic_constraints_in_annotated():
    positive = Annotated[int, pydantic.Field(gt=0)]
    assert convert(positive, "3") == 3
    assert "greater than 0" in rejection(positive, "0")


def test_pydantic_is_not_imported_unless_an_annotation_needs_it():
    code = (
        "import sys, datetime\n"
        "from millstream._engine.validation import validate_parameters, parameter_schema\n"
        "def f(a: int, b: list[datetime.date], c: 'str | None' = None): ...\n"
        "assert validate_parameters(f, {'a': '1', 'b': ['2024-01-02'], 'c': None})['a'] == 1\n"
        "parameter_schema(f)\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- what is passed through ---------------------------------------------------------------------
def test_any_missing_annotations_and_object_pass_through():
    def fn(a, b: Any, c: object, d: typing.Iterable[int]) -> None: ...

    values = {"a": "1", "b": "2", "c": "3", "d": iter([1])}
    result = validate_parameters(fn, values)
    assert result == values


def test_defaults_are_not_validated():
    # A common sloppy signature; pydantic does not validate defaults either.
    def fn(x: int = None) -> None: ...  # noqa: RUF013

    assert validate_parameters(fn, {"x": None}) == {"x": None}
    assert validate_parameters(fn, {"x": "2"}) == {"x": 2}


def test_var_positional_and_var_keyword_items_are_validated():
    def fn(first: str, *args: int, **kwargs: float) -> None: ...

    result = validate_parameters(fn, {"first": "a", "args": ("1", 2), "kwargs": {"k": "1.5"}})
    assert result == {"first": "a", "args": (1, 2), "kwargs": {"k": 1.5}}
    with pytest.raises(ParameterTypeError, match=r"'args' .* at args\[1\]"):
        validate_parameters(fn, {"first": "a", "args": (1, "b"), "kwargs": {}})
    with pytest.raises(ParameterTypeError, match=r"'kwargs' .* at kwargs\['k'\]"):
        validate_parameters(fn, {"first": "a", "args": (), "kwargs": {"k": "z"}})


def test_parameters_absent_from_the_mapping_are_left_out():
    def fn(a: int, b: int = 1) -> None: ...

    assert validate_parameters(fn, {"a": "1"}) == {"a": 1}


# -- annotations as strings ---------------------------------------------------------------------
def annotated_at_module_level(points: list[Point], when: dt.datetime, color: Color) -> None:
    """Annotations are strings here (``from __future__ import annotations``)."""


def test_string_annotations_are_resolved():
    assert isinstance(annotated_at_module_level.__annotations__["points"], str)
    result = validate_parameters(
        annotated_at_module_level,
        {"points": [{"x": "1"}], "when": "2024-01-02T00:00:00Z", "color": "red"},
    )
    assert result == {
        "points": [Point(1)],
        "when": dt.datetime(2024, 1, 2, tzinfo=UTC),
        "color": Color.RED,
    }


def test_explicit_string_annotations_are_resolved():
    assert convert("list[Point]", [{"x": "2"}]) == [Point(2)]
    assert convert("int | None", "3") == 3


def test_unresolvable_annotations_are_skipped_and_the_others_still_checked():
    def fn(x: NoSuchType, y: int) -> None: ...  # noqa: F821

    assert validate_parameters(fn, {"x": "kept", "y": "3"}) == {"x": "kept", "y": 3}
    with pytest.raises(ParameterTypeError, match="'y'"):
        validate_parameters(fn, {"x": "kept", "y": "three"})


# -- the result, the cache ----------------------------------------------------------------------
def test_the_result_is_a_new_dict_and_the_input_is_not_changed():
    point = {"x": "1"}
    parameters = {"a": "5", "point": point, "untyped": [1]}

    def fn(a: int, point: Point, untyped) -> None: ...

    result = validate_parameters(fn, parameters)
    assert result == {"a": 5, "point": Point(1), "untyped": [1]}
    assert result is not parameters
    assert parameters == {"a": "5", "point": {"x": "1"}, "untyped": [1]}
    assert parameters["point"] is point

    untouched = {"a": 1}
    assert validate_parameters(fn, untouched) is not untouched


def test_plans_are_cached_per_function(monkeypatch):
    calls = []
    real = typing.get_type_hints

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counting)

    def fn(a: int, b: int) -> None: ...

    for _ in range(5):
        assert validate_parameters(fn, {"a": "1", "b": 2}) == {"a": 1, "b": 2}
    assert calls == [fn]


def test_bound_methods_are_validated():
    class Flows:
        def run(self, n: int) -> int:
            return n

    flows = Flows()
    assert validate_parameters(flows.run, {"n": "4"}) == {"n": 4}
    assert validate_parameters(flows.run, {"n": "5"}) == {"n": 5}


# -- parameter schema ---------------------------------------------------------------------------
def test_parameter_schema_describes_types_defaults_and_positions():
    def fn(
        x: int, y: str = "a", when: dt.date | None = None, *rest: float, **extra: bool
    ) -> None: ...

    schema = parameter_schema(fn)
    assert schema["title"] == "Parameters" and schema["type"] == "object"
    assert schema["required"] == ["x"]
    props = schema["properties"]
    assert props["x"] == {"title": "x", "position": 0, "type": "integer"}
    assert props["y"] == {"title": "y", "position": 1, "type": "string", "default": "a"}
    assert props["when"]["default"] is None
    assert {"type": "string", "format": "date"} in props["when"]["anyOf"]
    assert props["rest"]["type"] == "array" and props["rest"]["items"] == {"type": "number"}
    assert props["extra"]["additionalProperties"] == {"type": "boolean"}


def test_parameter_schema_shares_definitions():
    def fn(line: Line, model: Model, box: Box, color: Color = Color.RED, opaque: Any = None):
        return None

    schema = parameter_schema(fn)
    props, definitions = schema["properties"], schema["definitions"]
    assert props["line"]["allOf"] == [{"$ref": "#/definitions/Line"}]
    assert set(definitions) >= {"Line", "Point", "Model", "Box", "Color"}
    assert definitions["Point"]["required"] == ["x"]
    assert props["model"]["allOf"] == [{"$ref": "#/definitions/Model"}]
    assert props["color"]["default"] == "red"
    assert props["opaque"] == {"title": "opaque", "position": 4, "default": None}


def test_parameter_schema_leaves_unknown_types_open():
    def fn(thing: Opaque, mixed: Mixed) -> None: ...

    props = parameter_schema(fn)["properties"]
    assert props["thing"] == {"title": "thing", "position": 0}
    assert props["mixed"]["title"] == "mixed"


def test_parameter_schema_of_a_bound_method_leaves_out_self():
    class Flows:
        def run(self, n: int) -> int:
            return n

    assert list(parameter_schema(Flows().run)["properties"]) == ["n"]


def test_check_against_schema():
    def fn(x: int, y: str = "a") -> None: ...

    schema = parameter_schema(fn)
    check_against_schema(schema, {"x": 1})
    with pytest.raises(ParameterTypeError) as info:
        check_against_schema(schema, {"y": 2, "z": 1})
    message = str(info.value)
    assert message.startswith("Flow run received invalid parameters")
    assert "'z' is not a parameter" in message
    assert "'x' is missing" in message
    assert "'y' got 2 (int), expected string" in message
