"""Serializers round-trip values type-faithfully; input hashes are the same in every process."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import os
import subprocess
import sys
import threading
import uuid

import msgspec
import pytest

from millstream._engine.exceptions import SerializationError, StorageKeyError, UnhashableInputError
from millstream._engine.results import (
    JSONSerializer,
    LocalFileSystem,
    MsgpackSerializer,
    PickleSerializer,
    render_storage_key,
    resolve_serializer,
)
from millstream._engine.results.hashing import hash_inputs, hash_objects


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Box(msgspec.Struct):
    size: int


VALUES = [
    1,
    2.5,
    "text",
    b"bytes",
    None,
    True,
    [1, (2, 3)],
    {"a": {1, 2}},
    (1, [2, frozenset({3})]),
    dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
    dt.date(2024, 1, 1),
    dt.timedelta(hours=3),
    uuid.UUID(int=7),
    decimal.Decimal("1.10"),
    Colour.RED,
    Point(1, 2),
    Box(3),
    1 + 2j,
    {1: "int key", "s": "str key"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_msgpack_round_trips_type_faithfully(value):
    serializer = MsgpackSerializer(pickle_fallback=False)
    back = serializer.loads(serializer.dumps(value))
    assert back == value and type(back) is type(value)


def test_pickle_fallback_and_its_refusal():
    lock_type = threading.Lock
    assert MsgpackSerializer().loads(MsgpackSerializer().dumps(lock_type)) is lock_type
    with pytest.raises(SerializationError, match="lock"):
        MsgpackSerializer(pickle_fallback=False).dumps(threading.Lock())
    with pytest.raises(SerializationError, match="lock"):
        PickleSerializer().dumps(threading.Lock())
    with pytest.raises(SerializationError, match="object"):
        JSONSerializer().dumps(object())


def test_resolve_serializer():
    assert resolve_serializer("json").type == "json"
    assert resolve_serializer(None).type == "msgpack"
    with pytest.raises(ValueError, match="yaml"):
        resolve_serializer("yaml")


def test_storage_keys_and_atomic_files(tmp_path):
    storage = LocalFileSystem(tmp_path)
    storage.write("a/b.bin", b"data")
    assert storage.read("a/b.bin") == b"data"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]  # no temp file left
    assert render_storage_key("out/{x}-{parameters[y]}", {"x": 1, "y": "z"}) == "out/1-z"
    for bad in ("../up", "/abs", "a/../../b", ""):
        with pytest.raises(StorageKeyError):
            storage.write(bad, b"x")
    with pytest.raises(StorageKeyError, match="missing"):
        render_storage_key("{missing}", {})


def test_hashes_ignore_dict_order_and_set_order():
    assert hash_objects({"a": 1, "b": {2, 3}}) == hash_objects({"b": {3, 2}, "a": 1})
    assert hash_objects((1, 2)) != hash_objects([1, 2])
    assert hash_inputs({"p": Point(1, 2)}) != hash_inputs({"p": Point(2, 1)})


def test_unhashable_inputs_name_the_parameter():
    with pytest.raises(UnhashableInputError, match="'guard'"):
        hash_inputs({"ok": 1, "guard": threading.Lock()})


HASH_CHILD = (
    "import datetime as dt\n"
    "from millstream._engine.results.hashing import hash_inputs\n"
    "print(hash_inputs({'tags': {'alpha', 'beta', 'gamma'}, 'when': dt.date(2024, 1, 1),"
    " 'nested': {'z': [1, 2], 'a': ('x', 'y')}}))\n"
)


def test_hashes_are_the_same_in_other_processes_whatever_the_hash_seed():
    digests = {
        subprocess.run(
            [sys.executable, "-c", HASH_CHILD],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert len(digests) == 1
