"""Cache-key hashes: deterministic in every process, type-aware, and explicit about failures."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import types
import typing
import uuid
import zoneinfo

import msgspec
import pytest

from millstream._engine.exceptions import UnhashableInputError
from millstream._engine.results.hashing import hash_inputs, hash_objects, stable_hash

HEX32 = re.compile(r"[0-9a-f]{32}")


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Box(msgspec.Struct):
    x: int
    y: int


class Pair(typing.NamedTuple):
    x: int
    y: int


class Bag:
    """A plain object: hashed through what pickle would record (its __dict__)."""

    def __init__(self, *items: str) -> None:
        self.items = set(items)
        self.me = self  # a cycle, which pickle (and the hash) handle with a back-reference


def module_function(x: int) -> int:
    return x


# --- stable_hash ----------------------------------------------------------------------------


def test_stable_hash_is_hex_and_sized():
    digest = stable_hash("a", b"b")
    assert HEX32.fullmatch(digest)
    assert stable_hash("a", b"b") == digest
    assert stable_hash("a", "b") == digest  # str parts are their UTF-8 bytes
    assert stable_hash("a", b"b", size=8) == digest[:8]
    assert len(stable_hash("a", size=64)) == 64
    # Parts are length-prefixed: moving a boundary changes the digest.
    assert stable_hash("ab", "c") != stable_hash("a", "bc")
    assert stable_hash("") != stable_hash()


@pytest.mark.parametrize("size", [0, -1, 65])
def test_stable_hash_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match=str(size)):
        stable_hash("a", size=size)


# --- hash_objects ---------------------------------------------------------------------------


def test_hash_objects_is_a_32_char_hex_digest():
    assert HEX32.fullmatch(hash_objects(1, "a", None))
    assert HEX32.fullmatch(hash_objects({"a": [Point(1, 2)]}))


def test_dict_and_set_order_do_not_matter():
    # 1, 9 and 17 collide in a small set table: insertion order decides iteration order.
    first, second = set(), set()
    for a, b in zip([1, 9, 17], [17, 9, 1], strict=True):
        first.add(a)
        second.add(b)
    assert list(first) != list(second)
    assert hash_objects(first) == hash_objects(second)
    assert hash_objects(frozenset(first)) == hash_objects(frozenset(second))
    assert hash_objects({"a": 1, "b": {2, 3}}) == hash_objects({"b": {3, 2}, "a": 1})
    assert hash_objects({1: "x", "b": 2, (3,): 4}) == hash_objects({(3,): 4, "b": 2, 1: "x"})
    assert hash_objects({"s": {"x", 1, (2, "y")}}) == hash_objects({"s": {(2, "y"), 1, "x"}})


DISTINCT = [
    1,
    1.0,
    True,
    "1",
    b"1",
    None,
    [1, 2],
    (1, 2),
    {1, 2},
    frozenset({1, 2}),
    {"x": 1, "y": 2},
    Point(1, 2),
    Point(2, 1),
    Box(1, 2),
    Pair(1, 2),
    collections.OrderedDict(x=1, y=2),
    Colour.RED,
    dt.datetime(2024, 1, 1),
    "2024-01-01T00:00:00",
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/London")),
    dt.date(2024, 1, 1),
    dt.time(0, 0),
    dt.timedelta(0),
    uuid.UUID(int=1),
    str(uuid.UUID(int=1)),
    decimal.Decimal("1"),
    1 + 0j,
    bytearray(b"1"),
    2**64,
    2**65,
    int,
    module_function,
]


def test_different_types_with_the_same_contents_hash_differently():
    digests = [hash_objects(value) for value in DISTINCT]
    assert len(set(digests)) == len(DISTINCT)


def test_equal_values_hash_equally():
    assert hash_objects(Point(1, 2)) == hash_objects(Point(1, 2))
    assert hash_objects(Box(1, 2)) == hash_objects(Box(1, 2))
    assert hash_objects(Bag("a", "b")) == hash_objects(Bag("b", "a"))
    assert hash_objects(Bag("a")) != hash_objects(Bag("b"))
    assert hash_objects(uuid.UUID(int=5)) == hash_objects(uuid.UUID(int=5))
    assert hash_objects([1, 2], (3,)) != hash_objects([[1, 2], (3,)])


def test_values_msgspec_cannot_encode_natively_still_hash():
    # Integers beyond 64 bits and lone surrogates take the slow path, deterministically.
    assert hash_objects([1, 2**70]) == hash_objects([1, 2**70])
    assert hash_objects([1, 2**70]) != hash_objects([1, 2**70 + 1])
    assert hash_objects({"n": -(2**100)}) != hash_objects({"n": -(2**100) + 1})
    assert hash_objects("\ud800") != hash_objects("\ud801")
    assert hash_objects({"\ud800": 1}) == hash_objects({"\ud800": 1})
    assert hash_inputs({"x": 2**70}) != hash_inputs({"x": 2**71})


def test_functions_hash_by_name_or_by_what_they_do():
    assert hash_objects(module_function) == hash_objects(module_function)
    assert hash_objects(lambda x: x + 1) == hash_objects(lambda x: x + 1)
    assert hash_objects(lambda x: x + 1) != hash_objects(lambda x: x + 2)

    def adder(n: int) -> typing.Callable[[int], int]:
        def add(x: int) -> int:
            return x + n

        return add

    assert hash_objects(adder(1)) == hash_objects(adder(1))
    assert hash_objects(adder(1)) != hash_objects(adder(2))

    def make_recursive() -> typing.Callable[[int], int]:
        def countdown(n: int) -> int:
            return n if n <= 0 else countdown(n - 1)

        return countdown

    assert hash_objects(make_recursive()) == hash_objects(make_recursive())


def test_builtins_partials_patterns_and_methods_hash():
    assert hash_objects(len) == hash_objects(len)
    assert hash_objects(functools.partial(int, base=2)) != hash_objects(
        functools.partial(int, base=8)
    )
    assert hash_objects(re.compile("a+")) != hash_objects(re.compile("b+"))
    assert hash_objects(Point(1, 2).__eq__) == hash_objects(Point(1, 2).__eq__)
    assert hash_objects(types) == hash_objects(types)
    assert hash_objects(module_function.__code__) == hash_objects(module_function.__code__)


def test_self_containing_list_is_unhashable():
    looped: list[typing.Any] = []
    looped.append(looped)
    with pytest.raises(UnhashableInputError, match="contains itself"):
        hash_objects(looped)


def _generator() -> typing.Iterator[int]:
    yield 1


def test_objects_that_cannot_be_hashed_raise_naming_their_type(tmp_path):
    with pytest.raises(UnhashableInputError, match=r"_thread\.lock"):
        hash_objects(threading.Lock())
    with pytest.raises(UnhashableInputError, match="generator"):
        hash_objects(_generator())
    with (tmp_path / "f.txt").open("w") as handle:
        with pytest.raises(UnhashableInputError, match="TextIOWrapper"):
            hash_objects(handle)
    with socket.socket() as sock:
        with pytest.raises(UnhashableInputError, match="socket"):
            hash_objects({"conn": sock})
    with pytest.raises(UnhashableInputError, match=r"type dict .*contains a _thread\.RLock"):
        hash_objects({"deep": [{"lock": threading.RLock()}]})


# --- hash_inputs ----------------------------------------------------------------------------


def test_hash_inputs_ignores_order_and_counts_names():
    assert hash_inputs({"a": 1, "b": [2]}) == hash_inputs({"b": [2], "a": 1})
    assert hash_inputs({"a": 1}) != hash_inputs({"b": 1})
    assert hash_inputs({"a": 1}) != hash_inputs({"a": 2})
    assert hash_inputs({}) == hash_inputs({})
    assert HEX32.fullmatch(hash_inputs({"p": Point(1, 2)}))


def test_hash_inputs_fast_and_slow_paths_agree():
    # A plain dict of scalars skips the walk; any other Mapping takes it: same digest.
    plain = {"x": 1, "name": "n", "flag": True, "none": None}
    assert hash_inputs(plain) == hash_inputs(types.MappingProxyType(plain))
    nested = {"x": [1, 2], "y": {"z": "w"}}
    assert hash_inputs(nested) == hash_inputs(types.MappingProxyType(nested))


def test_unhashable_parameter_is_named():
    with pytest.raises(UnhashableInputError) as info:
        hash_inputs({"ok": 1, "lock": threading.Lock()})
    assert str(info.value).startswith(
        "Cannot compute a cache key: parameter 'lock' of type _thread.lock cannot be hashed"
    )
    assert str(info.value).endswith(
        "Exclude it with cache_policy=INPUTS - 'lock' or give a cache_key_fn."
    )
    with pytest.raises(UnhashableInputError, match=r"parameter 'cfg' of type dict .*_thread\.lock"):
        hash_inputs({"cfg": {"inner": [threading.Lock()]}})
    with pytest.raises(UnhashableInputError, match="flow parameter 'gen'"):
        hash_inputs({"gen": _generator()}, kind="flow parameter")


# --- across processes -----------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import dataclasses, datetime as dt
    from millstream._engine.results.hashing import hash_inputs, hash_objects

    @dataclasses.dataclass
    class Point:
        x: int
        tags: set

    class Bag:
        def __init__(self):
            self.items = {"alpha", "beta", "gamma", "delta"}

    value = {
        "tags": {"alpha", "beta", "gamma", "delta", "epsilon"},
        "point": Point(1, {"north", "south", "east", "west"}),
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
        "frozen": frozenset({("a", 1), ("b", 2)}),
        "bag": Bag(),
    }
    builtin_only = {"tags": {"x", "y", "z"}, "when": dt.date(2024, 1, 1), "t": ("a", 1.5)}
    print(hash_objects(value), hash_inputs(value), hash_objects(builtin_only))
    """
)


def test_hashes_are_the_same_in_every_process_whatever_the_hash_seed():
    outputs = {
        subprocess.run(
            [sys.executable, "-c", CHILD],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("0", "1", "4242")
    }
    assert len(outputs) == 1
    here = hash_objects({"tags": {"x", "y", "z"}, "when": dt.date(2024, 1, 1), "t": ("a", 1.5)})
    assert outputs.pop().split()[2] == here
