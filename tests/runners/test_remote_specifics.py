"""What only runners with worker processes have: a worker that dies, functions that cannot be
found by name, the worker initializer, context carried to workers, Dask's own code shipping."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from millstream import flow, task
from millstream._engine.orchestrate import remote
from millstream.task_runners import DaskTaskRunner, ProcessPoolTaskRunner


@task
def die(code: int) -> None:
    os._exit(code)


@task
def fine(x: int) -> int:
    return x + 1


@task
def read_env(name: str) -> str | None:
    return os.environ.get(name)


def set_env(name: str, value: str) -> None:
    os.environ[name] = value


@pytest.mark.slow
def test_a_dead_worker_fails_its_run_and_the_pool_goes_on():
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline():
        dead = die.submit(3)
        dead.wait()
        return {"dead": dead.state}, fine.submit(1).result()

    states, after = pipeline()
    assert states["dead"].is_failed()
    assert "ended abruptly" in states["dead"].message
    assert after == 2


def test_functions_not_importable_by_name_are_refused_by_the_process_pool():
    @task
    def local(x: int) -> int:
        return x

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline():
        future = local.submit(1)
        future.wait()
        return {"state": future.state}

    state = pipeline()["state"]
    assert state.is_failed()
    with pytest.raises(TypeError, match="cannot be imported there by module and name"):
        state.result()


def test_the_initializer_runs_in_each_worker_first():
    runner = ProcessPoolTaskRunner(
        max_workers=1, initializer=set_env, initargs=("MILLSTREAM_TEST_INIT", "yes")
    )

    @flow(task_runner=runner)
    def pipeline():
        return read_env.submit("MILLSTREAM_TEST_INIT").result()

    assert pipeline() == "yes"
    assert os.environ.get("MILLSTREAM_TEST_INIT") is None


_seen: list[dict[str, str]] = []


@contextlib.contextmanager
def _enter(carrier: dict[str, str]) -> Iterator[None]:
    os.environ["MILLSTREAM_TEST_TRACE"] = carrier.get("trace", "")
    yield


@pytest.fixture
def propagator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(remote, "_propagators", [(lambda: {"trace": "abc"}, _enter)])
    yield


def test_context_propagators_carry_context_to_workers(propagator):
    # The worker process has no propagator registered; the thread-free way to see the carrier
    # arrive is a pool whose initializer registers the same pair there.
    runner = ProcessPoolTaskRunner(max_workers=1, initializer=_register_in_worker)

    @flow(task_runner=runner)
    def pipeline():
        return read_env.submit("MILLSTREAM_TEST_TRACE").result()

    assert pipeline() == "abc"


def _register_in_worker() -> None:
    remote.add_context_propagator(dict, _enter)


def test_dask_ships_functions_it_cannot_import_by_name(dask_cluster, tmp_path: Path):
    offset = 10

    @task
    def closure(x: int) -> int:
        return x + offset

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        return closure.map([1, 2]).result()

    assert pipeline() == [11, 12]
    # The flow run's thread fetching outcomes ends with it.
    import threading
    import time

    deadline = time.monotonic() + 5
    while any(t.name == "millstream-dask" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the outcome thread outlived its flow run"
        time.sleep(0.02)


@task
def plus_one(x: int) -> int:
    return x + 1


def test_dask_writes_its_performance_report_of_the_flow_run(dask_cluster, tmp_path: Path):
    # The runner's client is not Dask's default one: the report must still find it (before,
    # the flow failed with "No global client found and no address provided").
    report = tmp_path / "dask-report.html"
    runner = DaskTaskRunner(
        address=dask_cluster.scheduler_address, performance_report_path=str(report)
    )

    @flow(task_runner=runner)
    def reported() -> list[int]:
        return plus_one.map([1, 2]).result()

    assert reported() == [2, 3]
    assert "Dask Performance Report" in report.read_text()


def test_a_performance_report_without_bokeh_is_refused_when_the_runner_is_made(
    monkeypatch: pytest.MonkeyPatch,
):
    import importlib.util

    from millstream.exceptions import MissingExtraError

    real_find_spec = importlib.util.find_spec
    # As on a machine where bokeh is not installed (the one import the report needs).
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bokeh" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingExtraError, match=r"performance_report_path='r.html'.*bokeh"):
        DaskTaskRunner(performance_report_path="r.html")


@pytest.mark.slow
def test_dask_runner_starts_and_closes_a_temporary_cluster():
    pytest.importorskip("distributed")
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 1,
            "threads_per_worker": 1,
            "processes": False,
            "dashboard_address": "127.0.0.1:0",
        }
    )

    @flow(task_runner=runner)
    def pipeline():
        return fine.map([1, 2]).result()

    assert pipeline() == [2, 3]


@task
def say(words: list[str]) -> None:
    from millstream import get_run_logger

    for word in words:
        get_run_logger().info(word)


def _dedupe_and_shout():
    seen: set[str] = set()

    def processor(kind, payload):
        if payload["message"] in seen:
            return None
        seen.add(payload["message"])
        return kind, {**payload, "message": payload["message"].upper()}

    return processor


def test_message_processors_change_and_drop_lines_from_workers(db_path):
    import sqlite3

    from millstream._engine import logs

    runner = ProcessPoolTaskRunner(
        max_workers=1, subprocess_message_processor_factories=[_dedupe_and_shout]
    )

    @flow(task_runner=runner)
    def pipeline():
        return say.submit(["hello", "hello", "bye"]).task_run_id

    run_id = pipeline()
    logs.flush()
    with sqlite3.connect(db_path) as conn:
        found = conn.execute(
            "SELECT message FROM log WHERE task_run_id = ? AND level = 20 "
            "AND name = 'millstream.task_runs' AND message NOT LIKE 'Finished%' ORDER BY id",
            (run_id.bytes,),
        ).fetchall()
    assert [m for (m,) in found] == ["HELLO", "BYE"]


def test_a_missing_dask_install_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    import sys

    from millstream.exceptions import MissingExtraError

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed

    @flow(task_runner=DaskTaskRunner())
    def pipeline():
        future = fine.submit(1)
        future.wait()
        return {"state": future.state}

    state = pipeline()["state"]
    with pytest.raises(MissingExtraError, match=r"pip install 'millstream\[dask\]'"):
        state.result()
