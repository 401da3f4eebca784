"""Deployments end to end: ``run_deployment`` in async and sync code, ``deployments run
--watch`` exit codes, and parameters given by name reaching the flow by name on every path
(CLI, ``run_deployment``, the worker's HTTP API, recovery of a crashed run)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_tools import with_worker

from millstream import flow, get_client
from millstream.cli import main
from millstream.deployments import arun_deployment, run_deployment
from millstream.states import StateType


@flow
def adds(x: int, y: int = 10) -> int:
    return x + y


@flow
def triggers_a_child(x: int) -> dict[str, Any]:
    """A sync flow: run_deployment blocks in it and returns the child's FlowRun."""
    child = run_deployment("adds/child", parameters={"x": x}, timeout=30, poll_interval=0.02)
    return {"is_awaitable": inspect.isawaitable(child), "child_state": child.state_name}


@flow
async def triggers_a_child_async(x: int) -> dict[str, Any]:
    """An async flow: run_deployment returns an awaitable in it."""
    pending = run_deployment("adds/child", parameters={"x": x}, timeout=30, poll_interval=0.02)
    awaitable = inspect.isawaitable(pending)
    child = await pending
    return {"is_awaitable": awaitable, "child_state": child.state_name}


# -- run_deployment is sync-compatible --------------------------------------------------------


def test_run_deployment_in_async_code_is_awaited_and_waits_for_the_final_state():
    dep = adds.to_deployment("awaited")

    async def body() -> tuple[bool, Any, Any]:
        pending = run_deployment("adds/awaited", parameters={"x": 1}, timeout=30)
        awaitable = inspect.isawaitable(pending)
        done = await pending
        at_once = await run_deployment("adds/awaited", parameters={"x": 2}, timeout=0)
        return awaitable, done, at_once

    awaitable, done, at_once = asyncio.run(with_worker([dep], body))
    assert awaitable
    assert done.state_type is StateType.COMPLETED
    assert done.state.result() == 11
    assert at_once.state_type is StateType.SCHEDULED


def test_run_deployment_with_a_timeout_returns_the_run_unfinished_when_time_is_up():
    dep = adds.to_deployment("unserved")

    async def body() -> Any:
        await dep.aapply()  # no worker serves it: the run stays Scheduled
        started = time.monotonic()
        run = await run_deployment("adds/unserved", parameters={"x": 1}, timeout=0.3)
        return run, time.monotonic() - started

    run, took = asyncio.run(body())
    assert run.state_type is StateType.SCHEDULED
    assert 0.3 <= took < 5


def test_run_deployment_sync_form_outside_a_loop_and_forced_forms():
    dep = adds.to_deployment("forms")
    dep.apply()
    assert run_deployment.aio is arun_deployment  # type: ignore[attr-defined]
    run = run_deployment("adds/forms", parameters={"x": 1}, timeout=0)
    assert run.state_type is StateType.SCHEDULED

    async def forced() -> Any:
        return run_deployment("adds/forms", parameters={"x": 1}, timeout=0, _sync=True)

    assert asyncio.run(forced()).state_type is StateType.SCHEDULED
    pending = run_deployment("adds/forms", parameters={"x": 1}, timeout=0, _sync=False)
    assert inspect.iscoroutine(pending)
    assert asyncio.run(pending).state_type is StateType.SCHEDULED


def test_run_deployment_inside_flows_follows_the_flow_s_own_kind():
    deps = [
        adds.to_deployment("child"),
        triggers_a_child.to_deployment("parent"),
        triggers_a_child_async.to_deployment("parent"),
    ]

    async def body() -> tuple[Any, Any]:
        sync_parent = await arun_deployment(
            "triggers-a-child/parent", parameters={"x": 1}, timeout=60
        )
        async_parent = await arun_deployment(
            "triggers-a-child-async/parent", parameters={"x": 2}, timeout=60
        )
        return sync_parent, async_parent

    sync_parent, async_parent = asyncio.run(with_worker(deps, body))
    assert sync_parent.state.result() == {"is_awaitable": False, "child_state": "Completed"}
    assert async_parent.state.result() == {"is_awaitable": True, "child_state": "Completed"}


# -- a worker process ------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from millstream import flow, get_run_logger, serve
    from millstream.states import Cancelled

    def block_once() -> None:
        if os.environ.get("BLOCK") == "1":
            Path(os.environ["MARK"]).write_text("blocked")
            time.sleep(120)

    @flow(persist_result=True)
    def etl(day: int = 1, parts: int = 3) -> dict:
        block_once()
        return {"day": day, "parts": parts}

    @flow(persist_result=True)
    def kw(a: int, b: int = 10, *, c: int = 100) -> dict:
        block_once()
        return {"a": a, "b": b, "c": c}

    @flow
    def boom() -> None:
        logger = get_run_logger()
        logger.error("disk full on /data")
        try:
            raise ValueError("kaboom")
        except ValueError:
            logger.exception("while writing")
            raise

    @flow
    def stopped():
        return Cancelled(message="stopped by the operator")

    @flow
    def fine() -> int:
        return 1

    if __name__ == "__main__":
        serve(
            etl.to_deployment("nightly"),
            kw.to_deployment("k"),
            boom.to_deployment("b"),
            stopped.to_deployment("s"),
            fine.to_deployment("f"),
            webserver=os.environ.get("WEB") == "1",
            print_starting_message=False,
        )
    """
)

NAMES = ["etl/nightly", "kw/k", "boom/b", "stopped/s", "fine/f"]


def _query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def _wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_worker(
    tmp_path: Path, millstream_home: Path, db_path: Path
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a worker process serving NAMES; returns once all of them are registered."""
    script = tmp_path / "etl_worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(millstream_home),
        "MARK": str(tmp_path / "mark"),
        "MILLSTREAM_SERVE_POLL_INTERVAL": "0.05",
        "MILLSTREAM_SERVE_SHUTDOWN_GRACE_SECONDS": "1",
        "PYTHONPATH": str(tmp_path),
    }
    procs: list[subprocess.Popen[str]] = []

    def start(**extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, **extra},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        _wait_until(
            lambda: len(_query(db_path, "SELECT 1 FROM deployment WHERE paused = 0")) == len(NAMES)
        )
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _result_of(run_id: uuid.UUID | str) -> Any:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state_type is StateType.COMPLETED, run.state
    return run.state.result()


def test_run_deployment_sync_form_waits_for_a_worker_process(start_worker):
    start_worker()
    run = run_deployment("fine/f", timeout=60, poll_interval=0.05)
    assert run.state_type is StateType.COMPLETED


# -- deployments run --watch -----------------------------------------------------------------


def test_watch_exits_0_when_the_run_completes(start_worker, capsys):
    start_worker()
    assert main(["deployments", "run", "fine/f", "--watch"]) == 0
    assert "Completed" in capsys.readouterr().out


def test_watch_exits_1_and_prints_the_error_when_the_run_fails(start_worker, capsys):
    start_worker()
    assert main(["deployments", "run", "boom/b", "--watch"]) == 1
    out, err = capsys.readouterr()
    assert "Failed" in out
    assert "Flow run finished in state 'Failed'" in err
    assert "ValueError: kaboom" in err  # the state message
    assert "disk full on /data" in err  # the run's error log lines...
    assert "Traceback (most recent call last)" in err  # ...with the logged traceback


def test_watch_exits_1_when_the_run_is_cancelled(start_worker, capsys):
    start_worker()
    assert main(["deployments", "run", "stopped/s", "--watch"]) == 1
    err = capsys.readouterr().err
    assert "Flow run finished in state 'Cancelled': stopped by the operator" in err


def test_without_watch_the_command_returns_at_once(start_worker, capsys):
    # No worker running: without --watch the run is only created.
    assert main(["deployments", "run", "fine/f"]) == 1  # not registered yet: not found
    start_worker()
    assert main(["deployments", "run", "boom/b"]) == 0
    assert "Scheduled" in capsys.readouterr().out


# -- parameters by name on every path (they depend on Binder.call_args binding by name) ------

BY_NAME_CASES = [
    ("etl/nightly", {"parts": 5}, {"day": 1, "parts": 5}),
    ("etl/nightly", {"day": 2}, {"day": 2, "parts": 3}),
    ("kw/k", {"a": 1, "c": 7}, {"a": 1, "b": 10, "c": 7}),
    ("kw/k", {"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 100}),
]


def test_params_by_name_cli_deployments_run(start_worker, capsys):
    start_worker()
    results = []
    for name, given, _expected in BY_NAME_CASES:
        argv = ["deployments", "run", name, "--watch"]
        for key, value in given.items():
            argv += ["-p", f"{key}={value}"]
        assert main(argv) == 0, capsys.readouterr().err
        run_id = capsys.readouterr().out.split("(")[1].split(")")[0]
        results.append(_result_of(run_id))
    assert results == [expected for _name, _given, expected in BY_NAME_CASES]


def test_params_by_name_run_deployment(start_worker):
    start_worker()
    results = []
    for name, given, _expected in BY_NAME_CASES:
        run = run_deployment(name, parameters=given, timeout=60, poll_interval=0.05)
        assert run.parameters == given
        results.append(_result_of(run.id))
    assert results == [expected for _name, _given, expected in BY_NAME_CASES]


def test_params_by_name_http_api_trigger(start_worker, db_path):
    port = _free_port()
    start_worker(WEB="1", MILLSTREAM_SERVE_WEBSERVER_PORT=str(port))
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_until(up)
    results = []
    for name, given, _expected in BY_NAME_CASES:
        made = httpx.post(f"{base}/deployments/{name}/run", json={"parameters": given})
        assert made.status_code == 201, made.text
        run_id = made.json()["flow_run_id"]
        _wait_until(
            lambda run_id=run_id: (
                _query(
                    db_path,
                    "SELECT state_type FROM flow_run WHERE id = ?",
                    uuid.UUID(run_id).bytes,
                )
                == [("COMPLETED",)]
            )
        )
        results.append(_result_of(run_id))
    assert results == [expected for _name, _given, expected in BY_NAME_CASES]


@pytest.mark.parametrize(("name", "given", "expected"), BY_NAME_CASES[::2])
def test_params_by_name_recovery_of_a_crashed_run(
    start_worker, tmp_path, db_path, name, given, expected
):
    first = start_worker(BLOCK="1")
    run = run_deployment(name, parameters=given, timeout=0)
    _wait_until(lambda: (tmp_path / "mark").exists())
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    start_worker()  # recovers the orphaned run on start
    _wait_until(
        lambda: (
            _query(db_path, "SELECT state_type FROM flow_run WHERE id = ?", run.id.bytes)
            == [("COMPLETED",)]
        ),
        timeout=120,
    )
    assert _result_of(run.id) == expected


def test_watch_details_include_a_recorded_exception_with_its_cause():
    from millstream.cli.deployments import _failure_details

    @flow
    def fails_here() -> None:
        raise RuntimeError("outer")

    state = fails_here(return_state=True)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    # The run's own ERROR line carries the traceback of what failed it.
    logged = "\n".join(_failure_details(run))
    assert "Encountered exception during execution" in logged
    assert 'raise RuntimeError("outer")' in logged
    try:
        raise KeyError("the root cause")
    except KeyError as cause:
        recorded = ValueError("kaboom")
        recorded.__cause__ = cause
    run.state.data = recorded  # as a state whose exception was persisted reads back
    details = "\n".join(_failure_details(run))
    assert "KeyError: 'the root cause'" in details
    assert "ValueError: kaboom" in details
