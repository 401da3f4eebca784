"""Variables: set/get/unset, async twins, rules, other processes, inside runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from sdk import flow, task
from sdk.variables import Variable


def test_set_get_unset_and_overwrite():
    created = Variable.set("answer", {"value": 42, "list": [1, "a", None]}, tags=["t"])
    assert created.name == "answer" and created.tags == ["t"]
    assert Variable.get("answer") == {"value": 42, "list": [1, "a", None]}
    with pytest.raises(ValueError, match="already exists"):
        Variable.set("answer", 1)
    Variable.set("answer", 2, overwrite=True)
    assert Variable.get("answer") == 2
    assert Variable.unset("answer") is True
    assert Variable.unset("answer") is False
    assert Variable.get("answer", default="dflt") == "dflt"


def test_async_twins():
    async def main():
        await Variable.aset("async-var", [1, 2])
        value = await Variable.aget("async-var")
        gone = await Variable.aunset("async-var")
        return value, gone

    assert asyncio.run(main()) == ([1, 2], True)


@pytest.mark.parametrize("name", ["UPPER", "has space", "x" * 256, ""])
def test_bad_names(name):
    with pytest.raises(ValueError, match="name"):
        Variable.set(name, 1)


def test_bad_values():
    with pytest.raises(TypeError, match="set"):
        Variable.set("bad", {1, 2})
    with pytest.raises(ValueError, match="bytes"):
        Variable.set("huge", "x" * 70_000)


def test_usable_inside_flows_and_tasks():
    @task
    def reads() -> int:
        return Variable.get("threshold", default=0)

    @flow
    async def f() -> int:
        await Variable.aset("threshold", 7)
        return reads()

    assert asyncio.run(f()) == 7


def test_visible_from_another_process(millstream_home):
    Variable.set("shared", {"from": "parent"})
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sdk.variables import Variable; print(Variable.get('shared'))",
        ],
        env={**os.environ, "MILLSTREAM_HOME": str(millstream_home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "{'from': 'parent'}"
