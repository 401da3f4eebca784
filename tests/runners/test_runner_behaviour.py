"""The same behaviour on every task runner: the thread pool, the process pool and Dask (a real
LocalCluster). Futures, wait_for, retries, timeouts, caching, states and logs must not depend
on where a body runs; bodies on other processes never touch the database."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from millstream import flow, get_run_logger, task
from millstream._engine import logs
from millstream.exceptions import SerializationError
from millstream.futures import PrefectConcurrentFuture, PrefectFutureList, wait

# -- module-level tasks: a worker process imports them by name --------------------------------


@task
def double(x: int) -> int:
    return 2 * x


@task
async def adouble(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@task
def where(x: int) -> int:
    return os.getpid()


@task
def write_marker(path: str) -> str:
    time.sleep(0.2)
    Path(path).write_text("done")
    return path


@task
def read_marker(path: str) -> str:
    return Path(path).read_text()


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task(retries=2)
def flaky(counter: str) -> int:
    attempts = Path(counter)
    count = int(attempts.read_text()) + 1 if attempts.exists() else 1
    attempts.write_text(str(count))
    if count < 3:
        raise RuntimeError(f"attempt {count} fails")
    return count


@task(timeout_seconds=0.5)
async def slow_async(started: str) -> str:
    Path(started).write_text(str(time.time()))
    await asyncio.sleep(30)
    return "never"


@task(timeout_seconds=0.3)
def slow_sync(started: str) -> str:
    Path(started).write_text(str(time.time()))
    time.sleep(1.0)
    return "late"


@task(cache_key_fn=lambda ctx, params: f"key-{params['x']}-{params['tag']}")
def cached(x: int, tag: str, counter: str) -> int:
    attempts = Path(counter)
    attempts.write_text(str(int(attempts.read_text()) + 1 if attempts.exists() else 1))
    return x * 100


@task
def chatty(x: int) -> int:
    logger = get_run_logger()
    logger.info("working on %s", x)
    logger.warning("careful with %s", x)
    return x


@task(log_prints=True)
def printer(x: int) -> int:
    print("printed", x)
    return x


@task(retries=1, task_run_name="knows-{x}")
def knows_itself(x: int, counter: str) -> dict[str, object]:
    from millstream.runtime import task_run

    attempts = Path(counter)
    if not attempts.exists():
        attempts.write_text("1")
        raise RuntimeError("first attempt fails")
    return {
        "name": task_run.name,
        "task_name": task_run.task_name,
        "run_count": task_run.run_count,
        "parameters": task_run.parameters,
        "id": task_run.id,
    }


@task
def current_tags() -> list[str]:
    from millstream._engine.orchestrate.context import tags_var

    return sorted(tags_var.get())


@task
def open_files(db: str) -> list[str]:
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return [p for p in paths if p.startswith(db)]


@task
def nested(x: int) -> int:
    return double(x)  # a task call inside a body: refused where the body runs remotely


class Opaque:
    """A class msgpack cannot hold (not a dataclass, no encoding)."""

    def __init__(self, value: int) -> None:
        self.value = value


@dataclasses.dataclass
class Point:
    x: int
    y: int


@task
def unwrap(thing: Opaque) -> int:
    return thing.value


@task
def move(point: Point) -> Point:
    return Point(point.x + 1, point.y + 1)


def flushed() -> None:
    logs.flush()


# -- tests ------------------------------------------------------------------------------------


def test_submit_and_map_give_futures_of_sync_and_async_bodies(make_runner):
    @flow(task_runner=make_runner())
    def pipeline() -> tuple[int, int, list[int], list[int]]:
        one = double.submit(1)
        other = adouble.submit(2)
        many = double.map([1, 2, 3])
        amany = adouble.map([4, 5])
        assert isinstance(one, PrefectConcurrentFuture)
        assert isinstance(many, PrefectFutureList)
        return one.result(), other.result(), many.result(), amany.result()

    assert pipeline() == (2, 4, [2, 4, 6], [8, 10])


def test_async_flows_await_the_futures(make_runner):
    @flow(task_runner=make_runner())
    async def pipeline() -> tuple[int, list[int]]:
        one = adouble.submit(3)
        many = double.map([1, 2])
        return await one, await many

    assert asyncio.run(pipeline()) == (6, [2, 4])


@task(timeout_seconds=0.3)
def stuck(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(30)


def test_a_process_stuck_past_its_timeout_is_stopped_with_the_flow_run(tmp_path):
    from millstream._engine.bridge.pids import pid_alive
    from millstream.task_runners import ProcessPoolTaskRunner

    pid_file = tmp_path / "pid"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline():
        future = stuck.submit(str(pid_file))
        future.wait()
        return {"state": future.state}

    started = time.monotonic()
    assert pipeline()["state"].name == "TimedOut"
    assert time.monotonic() - started < 20  # the flow run does not wait for the stuck body
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        assert time.monotonic() < deadline, "the stuck worker process outlived its flow run"
        time.sleep(0.02)


def test_bodies_run_where_the_runner_says(make_runner, kind):
    @flow(task_runner=make_runner())
    def pipeline() -> list[int]:
        return where.map(range(4)).result()

    pids = set(pipeline())
    if kind == "threadpool":
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids


def test_wait_for_orders_runs_and_failed_upstreams_block(make_runner, tmp_path):
    marker = str(tmp_path / "marker")

    @flow(task_runner=make_runner())
    def pipeline():
        first = write_marker.submit(marker)
        second = read_marker.submit(marker, wait_for=[first])
        broken = fail.submit("upstream broke")
        blocked = double.submit(1, wait_for=[broken])
        wait([blocked])
        return second.result(), broken.state, blocked.state

    text, broken, blocked = pipeline()
    assert text == "done"
    assert broken.is_failed()
    assert blocked.name == "NotReady" and not blocked.is_completed()


def test_exceptions_cross_with_their_type_and_fail_the_run(make_runner):
    @flow(task_runner=make_runner())
    def pipeline():
        future = fail.submit("bad input")
        future.wait()
        return {"state": future.state}

    state = pipeline()["state"]
    assert state.is_failed()
    assert state.message == "Task run encountered an exception ValueError: bad input"
    with pytest.raises(ValueError, match="bad input"):
        state.result()


def test_retries_run_again_until_the_body_succeeds(make_runner, tmp_path):
    counter = str(tmp_path / "count")

    @flow(task_runner=make_runner())
    def pipeline():
        future = flaky.submit(counter)
        return future.result(), future.task_run_id

    value, run_id = pipeline()
    assert value == 3
    from millstream import get_client

    with get_client(sync_client=True) as client:
        run = client.read_task_run(run_id)
        names = [s.name for s in client.read_task_run_states(run_id)]
    assert run.run_count == 3
    assert names.count("Retrying") == 2 and names[-1] == "Completed"


def test_timeouts_end_the_run_at_the_deadline(make_runner, kind, tmp_path):
    marks = [str(tmp_path / "async"), str(tmp_path / "sync")]

    @flow(task_runner=make_runner())
    def pipeline():
        futures = [slow_async.submit(marks[0]), slow_sync.submit(marks[1])]
        wait(futures)
        return {"states": [f.state for f in futures]}

    states = pipeline()["states"]
    assert [s.name for s in states] == ["TimedOut", "TimedOut"]
    assert all(s.is_failed() for s in states)
    # Counted from the body's start (not while a worker process starts): the run ends at the
    # deadline, not when the sync body's second is over (nor the async body's 30).
    after = [
        s.timestamp.timestamp() - float(Path(m).read_text())
        for s, m in zip(states, marks, strict=True)
    ]
    assert after[0] < 0.5 + 0.4
    if kind == "dask":
        # Dask cannot say when a body starts: its worker enforces the timeout, stopping the
        # async body at it and failing the sync one when it returns (as Prefect's threads do).
        assert after[1] < 5
    else:
        assert after[1] < 0.3 + 0.4


def test_cached_results_skip_the_body(make_runner, tmp_path):
    counter = tmp_path / "count"

    @flow(task_runner=make_runner())
    def pipeline(tag: str):
        future = cached.submit(7, tag, str(counter))
        return future.result(), future.state.name

    tag = uuid.uuid4().hex
    assert pipeline(tag) == (700, "Completed")
    assert pipeline(tag) == (700, "Cached")
    assert counter.read_text() == "1"


def test_run_logger_lines_reach_the_runs_logs(make_runner, db_path):
    @flow(task_runner=make_runner())
    def pipeline():
        futures = chatty.map([1, 2])
        futures.wait()
        return [f.task_run_id for f in futures]

    run_ids = pipeline()
    flushed()
    with sqlite3.connect(db_path) as conn:
        found = conn.execute(
            "SELECT task_run_id, level, message FROM log WHERE name = 'millstream.task_runs' "
            "AND (message LIKE 'working on%' OR message LIKE 'careful%') ORDER BY id"
        ).fetchall()
    by_run: dict[bytes, list[tuple[int, str]]] = {}
    for run_id, level, message in found:
        by_run.setdefault(run_id, []).append((level, message))
    assert by_run == {
        run_ids[0].bytes: [(20, "working on 1"), (30, "careful with 1")],
        run_ids[1].bytes: [(20, "working on 2"), (30, "careful with 2")],
    }


def test_prints_of_log_prints_tasks_reach_the_runs_logs(make_runner, db_path):
    @flow(task_runner=make_runner())
    def pipeline():
        return printer.submit(3).task_run_id

    run_id = pipeline()
    flushed()
    with sqlite3.connect(db_path) as conn:
        found = conn.execute(
            "SELECT level, message FROM log WHERE task_run_id = ? AND message LIKE 'printed%'",
            (run_id.bytes,),
        ).fetchall()
    assert found == [(20, "printed 3")]


def test_bodies_see_their_task_run_through_runtime(make_runner, tmp_path):
    counter = str(tmp_path / "count")

    @flow(task_runner=make_runner())
    def pipeline():
        future = knows_itself.submit(5, counter)
        return future.result(), str(future.task_run_id)

    seen, run_id = pipeline()
    assert seen == {
        "name": "knows-5",
        "task_name": "knows_itself",
        "run_count": 2,
        "parameters": {"x": 5, "counter": counter},
        "id": run_id,
    }


def test_tags_around_a_submit_reach_the_body(make_runner):
    from millstream import tags

    @flow(task_runner=make_runner())
    def pipeline():
        with tags("a", "b"):
            return current_tags.submit().result()

    assert pipeline() == ["a", "b"]


def test_workers_never_open_the_database(make_runner, kind, db_path):
    @flow(task_runner=make_runner())
    def pipeline():
        return open_files.submit(str(db_path)).result()

    # The orchestrating process (this one) has the database open; a worker process never does
    # (a thread of this process shares its descriptors, so there the file shows).
    opened = pipeline()
    if kind == "threadpool":
        assert opened  # same process: the store's connection is visible
    else:
        assert opened == []


def test_task_calls_inside_remote_bodies_are_refused_by_name(make_runner, kind):
    @flow(task_runner=make_runner())
    def pipeline():
        future = nested.submit(2)
        future.wait()
        return {"state": future.state}

    state = pipeline()["state"]
    if kind == "threadpool":
        assert state.result() == 4
        return
    from millstream.exceptions import NotSupportedError

    with pytest.raises(NotSupportedError, match="Task 'nested' runs in a worker process"):
        state.result()


def test_values_msgpack_cannot_hold_need_allow_pickle(make_runner, kind):
    @flow(task_runner=make_runner())
    def strict():
        return unwrap.submit(Opaque(5)).result(), move.submit(Point(1, 2)).result()

    if kind == "threadpool":
        assert strict() == (5, Point(2, 3))
        return
    with pytest.raises(
        SerializationError, match=r"Parameter 'thing' of task 'unwrap'.*allow_pickle"
    ):
        strict()

    @flow(task_runner=make_runner(allow_pickle=True))
    def lenient():
        return unwrap.submit(Opaque(5)).result(), move.submit(Point(1, 2)).result()

    assert lenient() == (5, Point(2, 3))


def test_a_runner_used_on_its_own(make_runner):
    runner = make_runner()
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        runner.submit(double, {"x": 1})
    with runner:
        one = runner.submit(double, {"x": 1})
        other = runner.submit(adouble, {"x": one}, wait_for=[one])
        many = runner.map(double, {"x": [1, 2, 3]})
        assert one.result() == 2 and other.result() == 4
        assert many.result() == [2, 4, 6]
        assert one.state.is_completed()
    assert not runner._started
