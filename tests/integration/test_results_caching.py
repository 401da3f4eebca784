"""Persisted results and caching across runs and processes, on real SQLite files."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from millstream import flow, task
from millstream._engine.results.refs import decode
from millstream._engine.store import get_store
from millstream.cache_policies import DEFAULT, INPUTS, NO_CACHE, NONE, RUN_ID, TASK_SOURCE, Inputs
from millstream.exceptions import SerializationError, StorageKeyError, UnhashableInputError
from millstream.tasks import task_input_hash


@dataclasses.dataclass
class Point:
    x: int
    y: int


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_persisted_result_reads_back_through_the_store(db_path):
    @task(persist_result=True)
    def make_point(x: int) -> Point:
        return Point(x, x + 1)

    state = make_point(3, return_state=True)
    run = asyncio.run(get_store(db_path).read_task_run(state.state_details.task_run_id))
    ((blob,),) = query(db_path, "SELECT result FROM task_run WHERE id = ?", run.id.bytes)
    assert decode(blob) == Point(3, 4)


@pytest.mark.parametrize("serializer", ["msgpack", "json", "pickle"])
def test_result_serializers(db_path, serializer):
    @task(persist_result=True, result_serializer=serializer)
    def value() -> dict:
        return {"a": [1, 2], "b": "text"}

    state = value(return_state=True)
    ((blob,),) = query(
        db_path, "SELECT result FROM task_run WHERE id = ?", state.state_details.task_run_id.bytes
    )
    assert decode(blob) == {"a": [1, 2], "b": "text"}


def test_unencodable_value_without_pickle_fails_naming_the_type(db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_RESULTS_PICKLE", "false")

    @task(persist_result=True)
    def locky() -> object:
        return threading.Lock()

    state = locky(return_state=True)
    assert state.is_failed()
    with pytest.raises(SerializationError, match="lock"):
        state.result()
    rows = query(db_path, "SELECT state_type, result FROM task_run")
    assert rows == [("FAILED", None)]


def test_large_results_go_to_files_and_storage_keys_render(db_path, millstream_home, tmp_path):
    @task(persist_result=True, result_storage=str(tmp_path / "res"), result_storage_key="r-{x}.bin")
    def big(x: int) -> bytes:
        return b"z" * 200_000

    assert big(7) == b"z" * 200_000
    assert (tmp_path / "res" / "r-7.bin").is_file()


@pytest.mark.parametrize("key", ["../escape", "/abs/path"])
def test_storage_keys_escaping_the_directory_are_rejected(db_path, key):
    @task(persist_result=True, result_storage_key=key)
    def t() -> int:
        return 1

    state = t(return_state=True)
    assert state.is_failed()
    with pytest.raises(StorageKeyError):
        state.result()


def test_cache_result_in_memory_false_loads_from_storage(db_path):
    @task(persist_result=True, cache_result_in_memory=False)
    def value() -> list[int]:
        return [1, 2, 3]

    state = value(return_state=True)
    assert state.result() == [1, 2, 3]


def test_no_caching_unless_configured():
    calls = []

    @task
    def plain(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def f() -> None:
        plain(1)
        plain(1)

    f()
    assert calls == [1, 1]


def test_cache_key_fn_and_cached_state(db_path):
    calls = []

    @task(cache_key_fn=task_input_hash)
    def slow_square(x: int) -> int:
        calls.append(x)
        return x * x

    @flow
    def f() -> list:
        first = slow_square(4, return_state=True)
        second = slow_square(4, return_state=True)
        other = slow_square(5, return_state=True)
        return [(s.name, s.result()) for s in (first, second, other)]

    assert f() == [("Completed", 16), ("Cached", 16), ("Completed", 25)]
    assert calls == [4, 5]
    # ...and across flow runs (the cache is persisted).
    assert f()[0] == ("Cached", 16)
    assert calls == [4, 5]


def test_none_key_means_no_cache():
    calls = []

    @task(cache_key_fn=lambda ctx, params: None)
    def t() -> int:
        calls.append(1)
        return 1

    t()
    t()
    assert len(calls) == 2


def test_failed_runs_are_never_cached():
    calls = []

    @task(cache_policy=INPUTS)
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("first fails")
        return x

    with pytest.raises(ValueError):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert calls == [1, 1]


def test_equal_keys_are_shared_between_tasks():
    @task(cache_key_fn=lambda ctx, p: "shared-key")
    def a() -> str:
        return "from a"

    @task(cache_key_fn=lambda ctx, p: "shared-key")
    def b() -> str:
        return "from b"

    assert a() == "from a"
    assert b() == "from a"


def test_cache_expiration_and_refresh_cache():
    calls = []

    @task(cache_policy=INPUTS, cache_expiration=dt.timedelta(microseconds=1))
    def short(x: int) -> int:
        calls.append(x)
        return x

    short(1)
    short(1)
    assert calls == [1, 1]

    @task(cache_policy=INPUTS, refresh_cache=True)
    def refreshed(x: int) -> int:
        calls.append(x)
        return x

    refreshed(2)
    refreshed(2)
    assert calls == [1, 1, 2, 2]


def test_policies_inputs_minus_and_compound():
    calls = []

    @task(cache_policy=INPUTS - "noise")
    def f(x: int, noise: int) -> int:
        calls.append((x, noise))
        return x

    assert f(1, 100) == 1
    assert f(1, 200) == 1
    assert calls == [(1, 100)]

    @task(cache_policy=Inputs(exclude=["noise"]) + TASK_SOURCE)
    def g(x: int, noise: int) -> int:
        calls.append(("g", x))
        return x

    g(1, 1)
    g(1, 2)
    assert calls.count(("g", 1)) == 1


def test_run_id_policy_caches_within_a_flow_run_only():
    calls = []

    @task(cache_policy=RUN_ID + INPUTS)
    def t(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def f() -> None:
        t(1)
        t(1)

    f()
    f()
    assert calls == [1, 1]


def test_none_and_no_cache_policies_disable_caching():
    for policy in (NONE, NO_CACHE):
        calls: list[int] = []

        @task(cache_policy=policy)
        def t(calls: list[int] = calls) -> int:
            calls.append(1)
            return 1

        t()
        t()
        assert len(calls) == 2


def test_persist_result_alone_uses_default_policy_within_the_run():
    calls = []

    @task(persist_result=True)
    def t(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def f() -> None:
        t(1)
        t(1)

    f()
    assert calls == [1]
    assert DEFAULT is not None


def test_unhashable_input_fails_naming_the_parameter():
    @task(cache_policy=INPUTS)
    def t(lock: object) -> int:
        return 1

    state = t(threading.Lock(), return_state=True)
    assert state.is_failed()
    with pytest.raises(UnhashableInputError, match="lock"):
        state.result()


def test_conflicting_cache_options_are_errors():
    with pytest.raises(ValueError, match="persist_result=False"):
        task(cache_policy=INPUTS, persist_result=False)(lambda: 1)
    with pytest.raises(ValueError, match="cache_key_fn"):
        task(cache_policy=INPUTS, cache_key_fn=task_input_hash)(lambda: 1)


CACHE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from millstream import flow, task
    from millstream.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def expensive(payload: dict) -> str:
        with open(sys.argv[1], "a") as f:
            f.write("ran\\n")
        return "-".join(sorted(payload["tags"]))

    @flow
    def job() -> str:
        return expensive({"tags": {"b", "a", "c"}, "n": 1})

    print(job())
    """
)


def test_cache_written_by_one_process_is_used_by_another(tmp_path, millstream_home):
    script = tmp_path / "cached.py"
    script.write_text(CACHE_SCRIPT)
    counter = tmp_path / "ran.txt"
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home), "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, str(script), str(counter)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.strip())
    assert outputs == ["a-b-c", "a-b-c"]
    assert counter.read_text().split() == ["ran"]


READER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store

    store = get_store(get_current_settings().database_path)
    run = asyncio.run(store.read_task_run(sys.argv[1]))
    print(repr(run.state.result()))
    """
)


def test_a_persisted_result_reads_back_in_another_process(tmp_path, millstream_home):
    @task(persist_result=True)
    def make() -> Point:
        return Point(5, 6)

    state = make(return_state=True)
    script = tmp_path / "reader.py"
    script.write_text(READER_SCRIPT)
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(millstream_home),
        "PYTHONPATH": str(Path(__file__).parent),
    }
    out = subprocess.run(
        [sys.executable, str(script), str(state.state_details.task_run_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Point(x=5, y=6)"
