"""Cancelling and pausing flow runs from another process, through the database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pg_fixtures import rows_of

try:
    from psycopg import DatabaseError
except ImportError:  # without the postgres extra only SQLite runs

    class DatabaseError(Exception):  # type: ignore[no-redef]
        pass


from millstream import get_client

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    from millstream import flow, task
    from millstream.flow_runs import pause_flow_run

    MARK = Path(os.environ["MARK"])
    HOOKED = Path(os.environ["HOOKED"])

    def note(flow, flow_run, state):
        HOOKED.write_text(state.type.value)

    @task
    async def forever(i: int) -> None:
        await asyncio.sleep(3600)

    @flow(on_cancellation=[note])
    async def async_long() -> None:
        MARK.write_text("started")
        await forever.map(range(3))

    @task
    def tick(i: int) -> int:
        time.sleep(0.05)
        return i

    @flow(on_cancellation=[note])
    def sync_long() -> None:
        MARK.write_text("started")
        for i in range(10_000):
            tick(i)

    @flow
    def pausing() -> str:
        MARK.write_text("started")
        answer = pause_flow_run(wait_for_input=dict, timeout=60, poll_interval=0.05)
        return answer["word"]

    @flow
    def pausing_times_out() -> None:
        pause_flow_run(timeout=0.3, poll_interval=0.05)

    if __name__ == "__main__":
        call = globals()[sys.argv[1]](return_state=True)
        state = asyncio.run(call) if asyncio.iscoroutine(call) else call
        print(state.type.value, state.message)
        if state.is_completed():
            print(state.result())
    """
)


def query(db: Path, sql: str) -> list[tuple]:
    # From whichever database the test's backend uses (see tests/postgres/pg_fixtures.py).
    return rows_of(db, sql)


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def paused_runs(db: Path) -> int:
    try:
        return int(query(db, "SELECT count(*) FROM flow_run WHERE state_type = 'PAUSED'")[0][0])
    except (sqlite3.OperationalError, DatabaseError):  # the file exists before its tables do
        return 0


def running_run_id(db: Path) -> str | None:
    try:
        rows = query(db, "SELECT id FROM flow_run WHERE state_type IN ('RUNNING', 'PAUSED')")
    except (sqlite3.OperationalError, DatabaseError):
        return None
    return rows[0][0] if rows else None


@pytest.fixture
def start(backend, tmp_path, millstream_home):
    # Against SQLite and PostgreSQL; with PostgreSQL the flow's process is a host of its own
    # (its own home), sharing only the server with this one.
    script = tmp_path / "long.py"
    script.write_text(SCRIPT)
    home = millstream_home
    if backend == "postgres":
        home = tmp_path / "other-host"
        home.mkdir()
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(home),
        "MARK": str(tmp_path / "mark"),
        "HOOKED": str(tmp_path / "hooked"),
        "MILLSTREAM_SERVE_POLL_INTERVAL": "0.1",
    }

    def run(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return run


@pytest.mark.parametrize("flow_name", ["async_long", "sync_long"])
def test_cancel_a_running_flow_from_another_process(start, tmp_path, db_path, flow_name):
    proc = start(flow_name)
    wait_until(lambda: running_run_id(db_path) is not None)
    run_id = running_run_id(db_path)
    with get_client(sync_client=True) as client:
        assert client.cancel_flow_run(run_id).type.value == "CANCELLING"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split()[0] == "CANCELLED"
    assert (tmp_path / "hooked").read_text() == "CANCELLED"
    assert query(db_path, "SELECT state_type FROM flow_run") == [("CANCELLED",)]


def test_pause_and_resume_with_input_from_another_process(start, db_path):
    proc = start("pausing")
    wait_until(lambda: paused_runs(db_path) == 1)
    run_id = running_run_id(db_path)
    with get_client(sync_client=True) as client:
        client.resume_flow_run(run_id, run_input={"word": "onwards"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["COMPLETED", "None", "onwards"]


def test_a_pause_that_is_never_resumed_fails(start):
    proc = start("pausing_times_out")
    out, err = proc.communicate(timeout=60)
    assert out.split()[0] == "FAILED", err
