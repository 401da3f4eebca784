"""Result persistence options: ``result_storage`` / ``result_serializer`` imply persisting.

As in Prefect 3.9.1, giving a task or flow somewhere (or some way) to store its result means
``persist_result=True`` when ``persist_result`` is left unset, and the result is written there.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from millstream import flow, task
from millstream._engine.results import resolve_serializer
from millstream._engine.results.refs import decode
from millstream.cache_policies import INPUTS


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


def recorded(db: Path, table: str) -> list[bytes | None]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(f"SELECT result FROM {table} ORDER BY created")]


@pytest.mark.parametrize("as_type", [Path, str])
def test_task_result_storage_implies_persist_and_writes_there(tmp_path, db_path, as_type):
    d = tmp_path / "results"

    @task(result_storage=as_type(d))
    def add(x: int) -> dict[str, int]:
        return {"sum": x + 1}

    assert add.persist_result is True

    @flow
    def calls() -> dict[str, int]:
        return add(41)

    assert calls() == {"sum": 42}
    (written,) = files_under(d)
    (blob,) = recorded(db_path, "task_run")
    assert blob is not None and decode(blob) == {"sum": 42}
    # The file itself holds the result, in the default serializer's encoding.
    assert resolve_serializer("msgpack").loads(written.read_bytes()) == {"sum": 42}


def test_task_result_serializer_implies_persist(tmp_path, db_path):
    d = tmp_path / "results"

    @task(result_serializer="json", result_storage=d)
    def pair(x: int) -> list[int]:
        return [x, x * 2]

    @task(result_serializer="json")
    def single(x: int) -> int:
        return x

    assert pair.persist_result is True and single.persist_result is True

    @flow
    def calls() -> int:
        return single(pair(3)[1])

    assert calls() == 6
    (written,) = files_under(d)
    assert json.loads(written.read_bytes()) == [3, 6]  # an independent decoder
    assert [decode(b) for b in recorded(db_path, "task_run") if b is not None] == [[3, 6], 6]


def test_task_persist_result_reads_as_in_prefect():
    def fn(x: int) -> int:
        return x

    assert task(fn).persist_result is None
    assert task(persist_result=False, result_storage="somewhere")(fn).persist_result is False
    # Options that only make sense for a stored result imply it, as in Prefect 3.9.1.
    assert task(result_storage_key="k-{x}")(fn).persist_result is True
    assert task(cache_key_fn=lambda ctx, p: "k")(fn).persist_result is True
    assert task(cache_policy=INPUTS)(fn).persist_result is True
    assert task(fn).with_options(result_storage="somewhere").persist_result is True


def test_task_persist_result_false_with_storage_writes_nothing(tmp_path, db_path):
    d = tmp_path / "results"

    @task(persist_result=False, result_storage=d)
    def one() -> int:
        return 1

    @flow
    def calls() -> int:
        return one()

    assert calls() == 1
    assert files_under(d) == []


@pytest.mark.parametrize("as_type", [Path, str])
def test_flow_result_storage_implies_persist_and_writes_there(tmp_path, db_path, as_type):
    d = tmp_path / "flow-results"

    @flow(result_storage=as_type(d))
    def answer(x: int) -> dict[str, int]:
        return {"answer": x}

    assert answer.persist_result is True
    assert answer(42) == {"answer": 42}
    (written,) = files_under(d)
    (blob,) = recorded(db_path, "flow_run")
    assert blob is not None and decode(blob) == {"answer": 42}
    assert resolve_serializer("msgpack").loads(written.read_bytes()) == {"answer": 42}


def test_flow_result_serializer_implies_persist(tmp_path, db_path):
    d = tmp_path / "flow-results"

    @flow(result_serializer="json", result_storage=d)
    def listing() -> list[str]:
        return ["a", "b"]

    @flow(result_serializer="json")
    def plain_json() -> int:
        return 5

    assert listing.persist_result is True and plain_json.persist_result is True
    assert listing() == ["a", "b"]
    (written,) = files_under(d)
    assert json.loads(written.read_bytes()) == ["a", "b"]
    assert plain_json() == 5


def test_flow_persist_result_reads_as_in_prefect(tmp_path):
    def fn() -> int:
        return 1

    assert flow(fn).persist_result is None
    assert flow(persist_result=False, result_storage=tmp_path)(fn).persist_result is False
    assert flow(fn).with_options(result_storage=tmp_path).persist_result is True


def test_flow_persist_result_false_with_storage_writes_nothing(tmp_path, db_path):
    d = tmp_path / "flow-results"

    @flow(persist_result=False, result_storage=d)
    def seven() -> int:
        return 7

    assert seven() == 7
    assert files_under(d) == []


def test_tasks_inherit_the_flow_result_storage(tmp_path, db_path):
    # Prefect 3.9.1: a task with no result options persists into its flow's result storage.
    d = tmp_path / "flow-results"

    @task
    def hundred(x: int) -> int:
        return x * 100

    @flow(result_storage=d)
    def outer(x: int) -> int:
        return hundred(x)

    assert outer(5) == 500
    written = files_under(d)
    assert len(written) == 2  # the task's result and the flow's
    (task_blob,) = recorded(db_path, "task_run")
    assert task_blob is not None and decode(task_blob) == 500
