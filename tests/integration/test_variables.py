"""Variables: set/get/unset, async twins, rules, other processes, inside runs, on real files."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from millstream import flow, get_client, task
from millstream.variables import Variable


def test_set_get_unset_and_overwrite(db_path):
    value = {"value": 42, "list": [1, "a", None, 2.5, True], "nested": {"é": "ü"}}
    created = Variable.set("answer", value, tags=["t", "u"])
    assert created == Variable(name="answer", value=value, tags=["t", "u"])
    assert Variable.get("answer") == value
    with sqlite3.connect(db_path) as conn:
        text, tags = conn.execute("SELECT value, tags FROM variable").fetchone()
    assert json.loads(text) == value and json.loads(tags) == ["t", "u"]
    with pytest.raises(ValueError, match=r"'answer' already exists\. Use `overwrite=True`"):
        Variable.set("answer", 1)
    assert Variable.get("answer") == value  # a refused set changes nothing
    assert Variable.set("answer", 2**70, overwrite=True).tags == []
    assert Variable.get("answer") == 2**70
    assert Variable.unset("answer") is True
    assert Variable.unset("answer") is False
    assert Variable.get("answer") is None
    assert Variable.get("answer", default="dflt") == "dflt"


def test_async_twins():
    async def main():
        created = await Variable.aset("async-var", [1, 2], tags=("a",))
        value = await Variable.aget("async-var")
        gone = await Variable.aunset("async-var")
        return created, value, gone, await Variable.aget("async-var", default=0)

    created, value, gone, after = asyncio.run(main())
    assert (created.tags, value, gone, after) == (["a"], [1, 2], True, 0)


@pytest.mark.parametrize("name", ["UPPER", "has space", "dot.ted", "x" * 256, "", "ünï"])
def test_bad_names(name):
    with pytest.raises(ValueError, match="Variable name") as caught:
        Variable.set(name, 1)
    assert repr(name[:40]) in str(caught.value)


def test_name_limits():
    longest = "a" * 255
    assert Variable.set(longest, 1).name == longest
    assert Variable.set("under_score-dash-09", 1).name == "under_score-dash-09"
    with pytest.raises(TypeError, match="must be a string"):
        Variable.set(5, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ({1, 2}, TypeError, "got set"),
        ((1, 2), TypeError, "got tuple"),
        ({"when": dt.datetime(2024, 1, 1)}, TypeError, "got datetime"),
        (b"bytes", TypeError, "got bytes"),
        ({1: "int key"}, TypeError, "Keys .* must be strings, got int"),
        (float("nan"), ValueError, "nan is not"),
        ([float("inf")], ValueError, "inf is not"),
        ("x" * 70_000, ValueError, "70002 bytes as JSON; the limit is 65536"),
    ],
)
def test_bad_values_name_what_is_wrong(value, error, match):
    with pytest.raises(error, match=match) as caught:
        Variable.set("bad", value)
    assert "'bad'" in str(caught.value)
    assert Variable.get("bad", default="unset") == "unset"


def test_value_size_limit_and_nesting():
    Variable.set("fits", "x" * (64 * 1024 - 2))  # the quotes count: exactly 64 KB of JSON
    deep: list = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than 100 deep"):
        Variable.set("deep", deep)
    with pytest.raises(TypeError, match="list of strings"):
        Variable.set("tags", 1, tags="one")  # type: ignore[arg-type]


def test_usable_inside_flows_and_tasks_sync_and_async():
    @task
    def reads() -> int:
        return Variable.get("threshold", default=0)

    @task
    async def areads() -> int:
        return await Variable.aget("threshold", default=0)

    @flow
    async def f() -> tuple[int, int]:
        await Variable.aset("threshold", 7)
        return reads(), await areads()

    @flow
    def g() -> int:
        Variable.set("threshold", 8, overwrite=True)
        return reads()

    assert asyncio.run(f()) == (7, 7)
    assert g() == 8


def test_visible_through_the_client():
    Variable.set("seen", "by the client", tags=["c"])
    with get_client(sync_client=True) as client:
        found = client.read_variable_by_name("seen")
    assert (found.name, found.value, found.tags) == ("seen", "by the client", ["c"])


def run_python(code: str, home) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MILLSTREAM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_shared_with_another_process(millstream_home):
    Variable.set("shared", {"from": "parent"})
    code = (
        "from millstream.variables import Variable\n"
        "print(Variable.get('shared'))\n"
        "Variable.set('back', [1, 'child'])\n"
        "try:\n"
        "    Variable.set('shared', 0)\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = run_python(code, millstream_home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "{'from': 'parent'}",
        "Variable 'shared' already exists. Use `overwrite=True` to update it.",
    ]
    assert Variable.get("back") == [1, "child"]
