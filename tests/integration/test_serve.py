"""Serving deployments: in-process workers, real worker processes, schedules, webserver."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_fixtures import database_ready, rows_of
from serving_tools import with_worker

from millstream import flow, get_client, task
from millstream.deployments import arun_deployment, run_deployment
from millstream.exceptions import NotSupportedError, ObjectNotFound, ParameterTypeError
from millstream.runtime import deployment as runtime_deployment
from millstream.states import StateType


@task
def add(x: int, y: int) -> int:
    return x + y


@flow
def adder(x: int, y: int = 10) -> dict:
    return {"sum": add(x, y), "deployment": runtime_deployment.name}


@flow
async def async_adder(x: int) -> int:
    return x + 1


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    # From whichever database the test's backend uses (see tests/postgres/pg_fixtures.py).
    return rows_of(db, sql, *params)


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_to_deployment_apply_and_read_back():
    dep = adder.to_deployment("nightly", parameters={"y": 5}, tags=["t"], cron="0 3 * * *")
    assert (dep.name, dep.flow_name, dep.parameters, dep.tags) == (
        "nightly",
        "adder",
        {"y": 5},
        ["t"],
    )
    dep_id = dep.apply()
    assert dep.apply() == dep_id  # applying again updates in place
    with pytest.raises(ValueError, match="'z'"):
        adder.to_deployment("bad", parameters={"z": 1})
    with pytest.raises(NotSupportedError, match="work_pool_name"):
        adder.to_deployment("x", work_pool_name="pool")


def test_run_deployment_in_process_worker(db_path):
    dep = adder.to_deployment("inproc", parameters={"y": 5})

    async def body():
        done = await arun_deployment("adder/inproc", parameters={"x": 1}, poll_interval=0.02)
        scheduled = await arun_deployment("adder/inproc", parameters={"x": 2}, timeout=0)
        return done, scheduled

    done, scheduled = asyncio.run(with_worker([dep], body))
    assert done.state_type is StateType.COMPLETED
    assert done.parameters == {"x": 1, "y": 5}
    assert done.state.result() == {"sum": 6, "deployment": "inproc"}
    assert scheduled.state_type is StateType.SCHEDULED
    assert done.deployment_id == dep.id


def test_run_deployment_errors_and_idempotency():
    dep = adder.to_deployment("checks")
    dep.apply()
    with pytest.raises(ObjectNotFound):
        run_deployment("adder/missing", timeout=0)
    with pytest.raises(ParameterTypeError, match="'x'"):
        run_deployment("adder/checks", parameters={"x": "not a number"}, timeout=0)
    with pytest.raises(ParameterTypeError, match="'nope'"):
        run_deployment("adder/checks", parameters={"x": 1, "nope": 2}, timeout=0)
    first = run_deployment("adder/checks", parameters={"x": 1}, timeout=0, idempotency_key="k1")
    again = run_deployment("adder/checks", parameters={"x": 1}, timeout=0, idempotency_key="k1")
    assert first.id == again.id


def test_shutdown_cancels_running_flows_and_pauses_schedules(db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_SERVE_SHUTDOWN_GRACE_SECONDS", "0.1")
    cancelled = []

    @flow(on_cancellation=[lambda f, r, s: cancelled.append(s.type)])
    async def sleeper() -> None:
        await asyncio.sleep(3600)

    dep = sleeper.to_deployment("sleepy", interval=3600)

    async def body():
        run = await arun_deployment("sleeper/sleepy", timeout=0)
        async with get_client() as client:
            while (await client.read_flow_run(run.id)).state_type is not StateType.RUNNING:
                await asyncio.sleep(0.02)
        return run

    run = asyncio.run(with_worker([dep], body))
    assert cancelled == [StateType.CANCELLED]
    assert query(db_path, "SELECT state_type FROM flow_run WHERE id = ?", run.id.bytes) == [
        ("CANCELLED",)
    ]
    assert query(db_path, "SELECT paused FROM deployment WHERE name = 'sleepy'") == [(1,)]


WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from millstream import flow, serve, task

    LOG = Path(os.environ["EXEC_LOG"])

    @task
    def step(i: int) -> int:
        with LOG.open("a") as f:
            f.write(f"step {os.environ.get('FLOW_RUN', '')}{i}\\n")
        if i == 2 and os.environ.get("BLOCK") == "1":
            Path(os.environ["MARK"]).write_text("blocked")
            time.sleep(120)
        return i

    @flow
    def counted(n: int = 0) -> int:
        from millstream.runtime import flow_run
        with LOG.open("a") as f:
            f.write(f"run {flow_run.id}\\n")
        return n

    @flow
    def three_steps() -> int:
        return sum(step(i) for i in range(4))

    @flow
    def ticking() -> None:
        pass

    if __name__ == "__main__":
        which = sys.argv[1]
        if which == "counted":
            serve(counted.to_deployment("many"), limit=8, print_starting_message=False)
        elif which == "steps":
            serve(three_steps.to_deployment("steps"), print_starting_message=False)
        elif which == "ticking":
            serve(ticking.to_deployment("tick", interval=0.5), print_starting_message=False)
        elif which == "web":
            serve(counted.to_deployment("web"), webserver=True, print_starting_message=False)
    """
)


@pytest.fixture
def worker_env(tmp_path, millstream_home):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(millstream_home),
        "EXEC_LOG": str(tmp_path / "exec.log"),
        "MARK": str(tmp_path / "mark"),
        "MILLSTREAM_SERVE_POLL_INTERVAL": "0.05",
        "MILLSTREAM_SERVE_SHUTDOWN_GRACE_SECONDS": "1",
        "PYTHONPATH": str(tmp_path),
    }

    procs: list[subprocess.Popen[str]] = []
    outputs: list[Any] = []

    def start(which: str, **extra: str) -> subprocess.Popen[str]:
        # Output to a file, not an undrained pipe: every run logs lines to the console, and a
        # full pipe would block the worker's writes (and with them its runs).
        output = open(tmp_path / f"worker-{len(procs)}.log", "w")
        outputs.append(output)
        url = os.environ.get("MILLSTREAM_DATABASE_URL")
        own = {"MILLSTREAM_DATABASE_URL": url} if url else {}
        if url:
            # A host of its own: only the PostgreSQL server is shared.
            home = tmp_path / f"host-{len(procs)}"
            home.mkdir()
            own["MILLSTREAM_HOME"] = str(home)
        proc = subprocess.Popen(
            [sys.executable, str(script), which],
            env={**env, **own, **extra},
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start, tmp_path
    for proc in procs:  # a failed test must not leave its process behind
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    for output in outputs:
        output.close()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def test_two_worker_processes_run_each_triggered_run_exactly_once(backend, worker_env, db_path):
    start, tmp_path = worker_env
    workers = [start("counted"), start("counted")]
    try:
        wait_until(lambda: _has_deployment(db_path, "many"))
        ids = {
            str(run_deployment("counted/many", parameters={"n": i}, timeout=0).id)
            for i in range(1000)
        }
        wait_until(
            lambda: (
                query(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")
                == [(1000,)]
            ),
            timeout=240,
        )
    finally:
        for proc in workers:
            stop(proc)
    executions = Counter(
        line.split()[1] for line in (tmp_path / "exec.log").read_text().splitlines()
    )
    assert set(executions) == ids
    assert set(executions.values()) == {1}
    pids = {r[0] for r in query(db_path, "SELECT DISTINCT pid FROM flow_run")}
    assert len(pids) == 2  # both workers took part


def _has_deployment(db: Path, name: str) -> bool:
    if not database_ready(db):
        return False
    return bool(query(db, "SELECT 1 FROM deployment WHERE name = ?", name))


def test_a_killed_worker_s_run_is_finished_by_another_without_rerunning_tasks(
    backend, worker_env, db_path, monkeypatch
):
    start, tmp_path = worker_env
    first = start("steps", BLOCK="1")
    try:
        wait_until(lambda: _has_deployment(db_path, "steps"))
        run = run_deployment("three-steps/steps", timeout=0)
        wait_until(lambda: (tmp_path / "mark").exists())
        wait_until(
            lambda: (
                query(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'")
                == [(2,)]
            )
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    second = start("steps")
    try:
        wait_until(
            lambda: (
                query(db_path, "SELECT state_type FROM flow_run WHERE id = ?", run.id.bytes)
                == [("COMPLETED",)]
            ),
            timeout=120,
        )
    finally:
        stop(second)
    steps = Counter((tmp_path / "exec.log").read_text().split("\n"))
    assert steps["step 0"] == 1 and steps["step 1"] == 1
    assert steps["step 2"] == 2 and steps["step 3"] == 1


def test_an_interval_schedule_creates_each_due_run_once_with_two_workers(
    backend, worker_env, db_path
):
    start, _ = worker_env
    workers = [start("ticking"), start("ticking")]
    try:
        wait_until(
            lambda: (
                _has_deployment(db_path, "tick")
                and query(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'")[
                    0
                ][0]
                >= 4
            ),
            timeout=60,
        )
    finally:
        for proc in workers:
            stop(proc)
    times = [r[0] for r in query(db_path, "SELECT expected_start_time FROM flow_run")]
    assert len(times) == len(set(times))
    assert query(db_path, "SELECT paused FROM deployment") == [(1,)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_webserver_triggers_runs(worker_env, db_path, token):
    start, _ = worker_env
    port = _free_port()
    extra = {"MILLSTREAM_SERVE_WEBSERVER_PORT": str(port)}
    if token:
        extra["MILLSTREAM_SERVE_TOKEN"] = token
    proc = start("web", **extra)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/health", headers=headers, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up)
        if token:
            # /health answers without the token (issue 15) and says nothing else.
            assert httpx.get(f"{base}/health").json() == {"status": "ok"}
            assert httpx.get(f"{base}/deployments").status_code == 401
            assert httpx.post(f"{base}/deployments/counted/web/run", json={}).status_code == 401
        listed = httpx.get(f"{base}/deployments", headers=headers).json()
        assert [d["name"] for d in listed] == ["counted/web"]
        bad = httpx.post(
            f"{base}/deployments/counted/web/run",
            headers=headers,
            json={"parameters": {"n": "x"}},
        )
        assert bad.status_code == 422 and "'n'" in bad.json()["detail"]
        assert httpx.post(f"{base}/deployments/nope/x/run", headers=headers).status_code == 404
        made = httpx.post(
            f"{base}/deployments/counted/web/run", headers=headers, json={"parameters": {"n": 3}}
        )
        assert made.status_code == 201
        run_id = made.json()["flow_run_id"]
        wait_until(
            lambda: (
                query(
                    db_path, "SELECT state_type FROM flow_run WHERE id = ?", uuid.UUID(run_id).bytes
                )
                == [("COMPLETED",)]
            )
        )
    finally:
        stop(proc)


def test_schedules_compute_due_times():
    from millstream._engine.serve.schedules import Schedule

    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(minutes=3)
    assert len(Schedule(interval=60).occurrences(start, end)) == 3
    assert len(Schedule(cron="* * * * *").occurrences(start, end)) == 3
    assert len(Schedule(rrule="FREQ=MINUTELY").occurrences(start, end)) == 3
    with pytest.raises(Exception, match="cron"):
        Schedule(cron="not a cron")


def test_client_reads_deployments_and_creates_runs_from_them():
    dep = adder.to_deployment("via-client", parameters={"y": 1}, interval=60)
    dep_id = dep.apply()
    with get_client(sync_client=True) as client:
        read = client.read_deployment_by_name("adder/via-client")
        assert (read.id, read.parameters, read.schedules[0].interval) == (dep_id, {"y": 1}, 60)
        assert client.read_deployment(dep_id).name == "via-client"
        assert [d.name for d in client.read_deployments()] == ["via-client"]
        run = client.create_flow_run_from_deployment(dep_id, parameters={"x": 2})
        assert (run.state_type, run.parameters) == (StateType.SCHEDULED, {"x": 2, "y": 1})
        with pytest.raises(ObjectNotFound):
            client.read_deployment_by_name("adder/nope")
