"""Serializers round-trip values type-faithfully; result files are written atomically."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import os
import pickle
import re
import threading
import typing
import uuid
import zoneinfo
from pathlib import Path

import msgspec
import pytest

from millstream._engine import results
from millstream._engine.exceptions import SerializationError, StorageKeyError
from millstream._engine.results import (
    JSONSerializer,
    LocalFileSystem,
    MsgpackSerializer,
    PickleSerializer,
    render_storage_key,
    resolve_serializer,
    resolve_storage,
    validate_storage_key,
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = (0, 0, 255)


class Level(enum.IntEnum):
    LOW = 1


class Perm(enum.IntFlag):
    R = 4
    W = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    items: tuple[int, ...]
    tags: frozenset[str]


@dataclasses.dataclass
class Derived:
    """Sets an attribute that is not a field and counts __post_init__ runs."""

    values: list[int]
    post_inits: typing.ClassVar[int] = 0

    def __post_init__(self) -> None:
        type(self).post_inits += 1
        self.total = sum(self.values)


@dataclasses.dataclass
class CustomReduce:
    value: int

    def __reduce__(self) -> tuple[typing.Any, ...]:
        return (CustomReduce, (self.value,))


class Box(msgspec.Struct):
    size: int
    content: typing.Any = None


class Pair(typing.NamedTuple):
    left: int
    right: str


Legacy = collections.namedtuple("Legacy", ["a", "b"])


class Plain:
    """A class msgpack has no encoding for: pickle only."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


NEW_YORK = zoneinfo.ZoneInfo("America/New_York")

FAITHFUL = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**200,
    -(2**100),
    1.5,
    float("inf"),
    "",
    "text é ✓",
    b"\x00bytes",
    None,
    True,
    False,
    [],
    [1, "a", None, 2.5],
    [1, (2, 3)],
    [[1, [2, [3]]]],
    [2**70, {"big": -(2**90)}],
    {},
    {"a": 1, "b": [1, 2]},
    {"a": {"b": {"c": (1,)}}},
    {1: "int key", "s": "str key", b"b": 2, None: 3, 2.5: 4},
    {(1, 2): "tuple key", frozenset({3}): "frozenset key", Colour.RED: "enum key"},
    {2**70: "big key", 1: "small key"},
    (),
    (1,),
    (1, [2, frozenset({3})], ("nested",)),
    {1, 2, 3},
    {"a", "b"},
    frozenset({(1, 2), "x"}),
    set(),
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
    dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
    dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
    dt.date(2024, 1, 31),
    dt.time(23, 59, 59, 999999),
    dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.timedelta(days=-3, seconds=5, microseconds=7),
    uuid.UUID(int=7),
    uuid.UUID(
        "5bc53147-92a0-4e30-852a-e9e66cf7e897"
    ),  # a version-4 UUID, fixed: ids equal per worker
    decimal.Decimal("1.10"),
    decimal.Decimal("-1E+5"),
    decimal.Decimal("Infinity"),
    1 + 2j,
    bytearray(b"mutable"),
    Colour.RED,
    Colour.BLUE,
    Level.LOW,
    Perm.R | Perm.W,
    Point(1, 2),
    Frozen((1, 2), frozenset({"a"})),
    Box(3),
    Box(4, content=(Point(5, 6), {7})),
    Pair(1, "x"),
    Legacy(a=(1,), b={"k": 2}),
    {"everything": [Point(1, 2), Box(1, [dt.date(2024, 1, 1)]), Pair(2, "y"), {uuid.UUID(int=1)}]},
]


def assert_same(back: typing.Any, value: typing.Any) -> None:
    """Equal, and of the same type all the way down (equality alone forgives 1 == 1.0)."""
    assert back == value
    assert type(back) is type(value), (type(back), type(value))
    if isinstance(value, list | tuple):
        for b, v in zip(back, value, strict=True):
            assert_same(b, v)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_same(back[key], item)


@pytest.mark.parametrize("value", FAITHFUL, ids=repr)
def test_msgpack_round_trips_type_faithfully_without_pickle(value):
    serializer = MsgpackSerializer(pickle_fallback=False)
    data = serializer.dumps(value)
    assert data[:1] == b"m"
    assert_same(serializer.loads(data), value)


def test_msgpack_keeps_decimal_exponent_zone_and_fold():
    serializer = MsgpackSerializer(pickle_fallback=False)
    assert str(serializer.loads(serializer.dumps(decimal.Decimal("1.10")))) == "1.10"
    ambiguous = dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)
    back = serializer.loads(serializer.dumps(ambiguous))
    assert back.tzinfo is NEW_YORK
    assert back.fold == 1
    assert back.utcoffset() == dt.timedelta(hours=-5)
    assert (
        serializer.loads(serializer.dumps(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))).tzinfo is dt.UTC
    )


def test_plain_data_is_plain_msgpack():
    value = {"a": [1, 2.5, "x", None, True, b"y"], "b": {"c": []}}
    data = MsgpackSerializer().dumps(value)
    assert data == b"m" + msgspec.msgpack.encode(value)


def test_dataclass_is_rebuilt_like_pickle_without_running_init():
    serializer = MsgpackSerializer(pickle_fallback=False)
    value = Derived([1, 2, 3])
    runs = Derived.post_inits
    back = serializer.loads(serializer.dumps(value))
    assert back == value and back.total == 6  # the attribute set in __post_init__ is kept
    assert Derived.post_inits == runs  # and __post_init__ did not run again


def test_values_msgpack_cannot_hold_fall_back_to_pickle():
    serializer = MsgpackSerializer()
    for value in (
        Plain(1),
        {"nested": [Plain(2)]},
        collections.OrderedDict(a=1),
        CustomReduce(3),
        Path("/tmp/x"),
    ):
        data = serializer.dumps(value)
        assert data[:1] == b"p"
        assert_same(serializer.loads(data), value)


def test_without_pickle_fallback_the_error_names_the_type_and_the_way_out():
    serializer = MsgpackSerializer(pickle_fallback=False)
    with pytest.raises(SerializationError) as info:
        serializer.dumps(Plain(1))
    message = str(info.value)
    assert "test_results.Plain" in message
    assert "result_serializer='pickle'" in message
    assert "MILLSTREAM_RESULTS_PICKLE=true" in message
    with pytest.raises(SerializationError, match=r"type dict .*contains a value of type .*Plain"):
        serializer.dumps({"a": [1, Plain(2)]})
    with pytest.raises(SerializationError, match=r"collections\.OrderedDict"):
        serializer.dumps(collections.OrderedDict(a=1))


def test_local_classes_are_refused_since_no_other_process_could_load_them():
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="Local"):
        MsgpackSerializer(pickle_fallback=False).dumps(Local(1))
    with pytest.raises(SerializationError, match="Local"):
        MsgpackSerializer().dumps(Local(1))  # pickle cannot either


def test_values_nothing_can_encode_name_their_type():
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        MsgpackSerializer().dumps(threading.Lock())
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        MsgpackSerializer(pickle_fallback=False).dumps([threading.Lock()])


def test_self_referencing_values_fall_back_to_pickle():
    value: list[typing.Any] = [1]
    value.append(value)
    serializer = MsgpackSerializer()
    back = serializer.loads(serializer.dumps(value))
    assert back[0] == 1 and back[1] is back
    with pytest.raises(SerializationError, match="refers to itself"):
        MsgpackSerializer(pickle_fallback=False).dumps(value)


def _ext_blob(code: int, payload: typing.Any) -> bytes:
    inner = msgspec.msgpack.encode(payload)
    return b"m" + msgspec.msgpack.encode(msgspec.msgpack.Ext(code, inner))


def test_loading_refuses_names_that_are_not_the_kind_of_class_written():
    serializer = MsgpackSerializer()
    # A crafted payload naming a function must not get it called.
    with pytest.raises(SerializationError, match="not a dataclass"):
        serializer.loads(_ext_blob(21, ["os:getcwd", {}]))
    with pytest.raises(SerializationError, match="not a msgspec Struct"):
        serializer.loads(_ext_blob(22, ["builtins:dict", {}]))
    with pytest.raises(SerializationError, match="not a Enum"):
        serializer.loads(_ext_blob(20, ["builtins:int", 1]))
    with pytest.raises(SerializationError, match="cannot be imported"):
        serializer.loads(_ext_blob(21, ["no_such_module_xyz:Thing", {}]))
    with pytest.raises(SerializationError, match="unknown msgpack extension code 99"):
        serializer.loads(_ext_blob(99, []))


def test_loading_bad_data_raises_serialization_error():
    serializer = MsgpackSerializer()
    with pytest.raises(SerializationError, match="unknown encoding tag"):
        serializer.loads(b"zzz")
    with pytest.raises(SerializationError, match="corrupt"):
        serializer.loads(b"m\xc1")
    with pytest.raises(SerializationError, match="corrupt"):
        JSONSerializer().loads(b"{nope")


JSON_VALUES = [0, -5, 2.5, "text é", None, True, [], [1, "a", None], {"a": {"b": [1.5, False]}}]


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_json_round_trips_json_values(value):
    serializer = JSONSerializer()
    assert serializer.type == "json"
    assert_same(serializer.loads(serializer.dumps(value)), value)


def test_json_is_not_type_faithful_and_refuses_what_json_cannot_hold():
    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps((1, 2))) == [1, 2]
    assert serializer.loads(serializer.dumps(Point(1, 2))) == {"x": 1, "y": 2}
    with pytest.raises(SerializationError, match="type object"):
        serializer.dumps(object())
    with pytest.raises(SerializationError, match=r"type dict as JSON.*_thread\.lock"):
        serializer.dumps({"lock": threading.Lock()})


def _stable_id(value: object) -> str:
    # The same id in every process (pytest-xdist workers collect separately): no addresses.
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


@pytest.mark.parametrize("value", [*FAITHFUL, Plain(3), collections.Counter("aab")], ids=_stable_id)
def test_pickle_round_trips(value):
    serializer = PickleSerializer()
    assert serializer.type == "pickle"
    assert_same(serializer.loads(serializer.dumps(value)), value)


def test_pickle_refusals_name_the_type():
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        PickleSerializer().dumps(threading.Lock())
    with pytest.raises(SerializationError, match="type function"):
        PickleSerializer().dumps(lambda: 1)


def test_msgpack_pickle_body_is_plain_pickle():
    data = MsgpackSerializer().dumps(Plain(5))
    assert pickle.loads(data[1:]) == Plain(5)


def test_resolve_serializer_names_objects_and_refusals():
    assert isinstance(resolve_serializer(None), MsgpackSerializer)
    assert resolve_serializer(None).pickle_fallback is True  # type: ignore[attr-defined]
    strict = resolve_serializer("msgpack", pickle_fallback=False)
    assert isinstance(strict, MsgpackSerializer) and strict.pickle_fallback is False
    assert isinstance(resolve_serializer("json"), JSONSerializer)
    assert isinstance(resolve_serializer("pickle"), PickleSerializer)
    mine = MsgpackSerializer(pickle_fallback=False)
    assert resolve_serializer(mine, pickle_fallback=True) is mine

    class Custom:
        type = "custom"

        def dumps(self, obj: typing.Any) -> bytes:
            return repr(obj).encode()

        def loads(self, data: bytes) -> typing.Any:
            return data.decode()

    custom = Custom()
    assert resolve_serializer(custom) is custom

    with pytest.raises(ValueError, match=r"'yaml'.*json, msgpack, pickle"):
        resolve_serializer("yaml")
    with pytest.raises(ValueError, match="pass an instance"):
        resolve_serializer(JSONSerializer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attribute 'type'"):
        resolve_serializer(type("NoType", (), {"dumps": repr, "loads": repr})())
    with pytest.raises(ValueError, match="42"):
        resolve_serializer(42)  # type: ignore[arg-type]


# --- storage --------------------------------------------------------------------------------


def test_local_file_system_round_trip(tmp_path):
    storage = LocalFileSystem(tmp_path / "results")
    assert not storage.exists("a/b.bin")
    storage.write("a/b.bin", b"first")
    storage.write("a/b.bin", b"second")  # replaces
    assert storage.read("a/b.bin") == b"second"
    assert storage.exists("a/b.bin")
    assert sorted(p.name for p in (tmp_path / "results" / "a").iterdir()) == ["b.bin"]
    storage.delete("a/b.bin")
    storage.delete("a/b.bin")  # deleting what is absent is fine
    assert not storage.exists("a/b.bin")
    with pytest.raises(FileNotFoundError):
        storage.read("a/b.bin")


def test_local_file_system_basepath_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = LocalFileSystem(basepath="relative")
    assert storage.basepath == tmp_path / "relative"
    assert storage == LocalFileSystem(tmp_path / "relative")
    assert "relative" in repr(storage)


@pytest.mark.parametrize("broken", ["replace", "fsync"])
def test_failed_write_leaves_no_temp_file_and_keeps_the_old_file(broken, tmp_path):
    base = tmp_path / "store"
    storage = LocalFileSystem(base)
    storage.write("key.bin", b"old")

    def fail(*args: typing.Any) -> None:
        raise OSError("disk on fire")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(results.os, broken, fail)
        with pytest.raises(OSError, match="disk on fire"):
            storage.write("key.bin", b"new")
    assert [p.name for p in base.iterdir()] == ["key.bin"]
    assert storage.read("key.bin") == b"old"


def test_write_of_non_bytes_fails_cleanly(tmp_path):
    base = tmp_path / "store"
    storage = LocalFileSystem(base)
    with pytest.raises(TypeError):
        storage.write("key.bin", "not bytes")  # type: ignore[arg-type]
    assert list(base.iterdir()) == []


BAD_KEYS = [
    "",
    "/abs/path",
    "\\abs",
    "C:/x",
    "..",
    "../up",
    "a/../../b",
    "a/..",
    "a\\..\\b",
    "dir/",
    "a\x00b",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_storage_keys_are_rejected_naming_the_key(key, tmp_path):
    with pytest.raises(StorageKeyError) as info:
        validate_storage_key(key)
    assert repr(key) in str(info.value)
    storage = LocalFileSystem(tmp_path / "store")
    for call in (
        lambda: storage.write(key, b"x"),
        lambda: storage.read(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
    ):
        with pytest.raises(StorageKeyError):
            call()
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("key", ["a", "a/b.bin", "a/./b", "..hidden", "a..b/c"])
def test_good_storage_keys_pass(key):
    assert validate_storage_key(key) == key


def test_render_storage_key_both_forms():
    params = {"x": 1, "name": "run", "n": 7}
    assert render_storage_key("results/{parameters[x]}-{parameters[name]}.bin", params) == (
        "results/1-run.bin"
    )
    assert render_storage_key("{x}", params) == "1"
    assert render_storage_key("{name}/{parameters[x]}-{n:03d}", params) == "run/1-007"


def test_render_storage_key_errors_name_the_problem():
    with pytest.raises(StorageKeyError, match=r"'missing'.*parameters: x"):
        render_storage_key("{missing}", {"x": 1})
    with pytest.raises(StorageKeyError, match="'gone'"):
        render_storage_key("{parameters[gone]}", {"x": 1})
    with pytest.raises(StorageKeyError, match="positional"):
        render_storage_key("{}", {"x": 1})
    with pytest.raises(StorageKeyError, match=r"'\.\./etc'"):
        render_storage_key("{x}/etc", {"x": ".."})
    with pytest.raises(StorageKeyError, match="cannot be rendered"):
        render_storage_key("{x:d}", {"x": "text"})


def test_resolve_storage(tmp_path):
    default = resolve_storage(None, tmp_path / "default")
    assert isinstance(default, LocalFileSystem) and default.basepath == tmp_path / "default"
    assert resolve_storage(str(tmp_path), tmp_path / "d").basepath == tmp_path
    assert resolve_storage(tmp_path / "p", tmp_path / "d").basepath == tmp_path / "p"
    existing = LocalFileSystem(tmp_path)
    assert resolve_storage(existing, tmp_path / "d") is existing

    class Custom:
        basepath = tmp_path

        def write(self, key: str, data: bytes) -> None: ...

        def read(self, key: str) -> bytes:
            return b""

        def exists(self, key: str) -> bool:
            return False

        def delete(self, key: str) -> None: ...

    custom = Custom()
    assert resolve_storage(custom, tmp_path) is custom
    with pytest.raises(ValueError, match="URL"):
        resolve_storage("s3://bucket/prefix", tmp_path)
    with pytest.raises(ValueError, match="42"):
        resolve_storage(42, tmp_path)  # type: ignore[arg-type]


def test_storage_and_serializer_together(tmp_path):
    storage = resolve_storage(None, tmp_path)
    serializer = resolve_serializer(None)
    value = {"points": [Point(1, 2)], "when": dt.date(2024, 1, 1)}
    key = render_storage_key("{name}.bin", {"name": "out"})
    storage.write(key, serializer.dumps(value))
    assert os.path.exists(tmp_path / "out.bin")
    assert_same(serializer.loads(storage.read(key)), value)
