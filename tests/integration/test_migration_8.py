"""A database made at schema 7 (before task runs kept their inputs and log lines their extra
fields) opens with migration 8: its rows read back as before (no upstream runs, no extra
fields) and new runs store both."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path

from millstream import flow, get_run_logger, task
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.states import State, StateType
from millstream._engine.store import SCHEMA_VERSION, get_store
from millstream._engine.store.migrations import MIGRATIONS, Q, _register_converters, statements
from millstream._engine.store.rows import encode_history, flow_run_row, history_entry, ts
from millstream.client.orchestration import get_client
from millstream.client.schemas.objects import TaskRunResult

# The task_run and log columns of schema 7, as its writers filled them.
_TASK_RUN_7 = (
    "id, flow_run_id, name, task_key, task_name, dynamic_key, task_version, cache_key, "
    "cache_expiration, parameters, tags, run_count, state_type, state_name, state_message, "
    "start_time, end_time, expected_start_time, created, history, result, code_fingerprint"
)


def _database_at_schema_7(path: Path) -> tuple[uuid.UUID, uuid.UUID]:
    conn = sqlite3.connect(path, isolation_level=None)
    _register_converters(conn)
    for number, ddl in MIGRATIONS:
        if number <= 7:
            for statement in statements(ddl):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    now = dt.datetime.now(dt.UTC)
    done = State(type=StateType.COMPLETED, timestamp=now)
    run = FlowRun(id=uuid.uuid4(), name="old-run", flow_id=uuid.uuid4(), flow_name="old")
    history = encode_history([history_entry(done, run.id, "flow_run_id")])
    conn.execute(Q["upsert_flow_run"], flow_run_row(run, done, history, None))
    task_run = TaskRun(
        id=uuid.uuid4(),
        flow_run_id=run.id,
        name="old-task",
        task_key="old-task-key",
        task_name="old_task",
        dynamic_key="0",
        parameters={"x": 1},
    )
    task_history = encode_history([history_entry(done, task_run.id, "task_run_id")])
    conn.execute(
        f"INSERT INTO task_run ({_TASK_RUN_7}) VALUES ({', '.join('?' * 22)})",
        (
            task_run.id.bytes,
            run.id.bytes,
            task_run.name,
            task_run.task_key,
            task_run.task_name,
            "0",
            None,
            None,
            None,
            '{"x": 1}',
            "[]",
            1,
            "COMPLETED",
            None,
            None,
            ts(now),
            ts(now),
            None,
            ts(now),
            task_history,
            None,
            None,
        ),
    )
    conn.execute(
        "INSERT INTO log (flow_run_id, task_run_id, level, name, message, timestamp) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run.id.bytes, None, 20, "millstream.flow_runs", "an old line", ts(now)),
    )
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    conn.close()
    return run.id, task_run.id


@task
def source() -> int:
    return 1


@task
def sink(x: int) -> int:
    get_run_logger().info("new line", extra={"batch": 3})
    return x


@flow
def fresh() -> tuple[uuid.UUID, uuid.UUID]:
    upstream = source.submit()
    downstream = sink.submit(upstream)
    downstream.wait()
    return upstream.task_run_id, downstream.task_run_id


def test_a_database_made_at_schema_7_opens_and_keeps_working(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    old_run_id, old_task_id = _database_at_schema_7(db_path)
    get_store(db_path).ensure_open_sync()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 8
    with get_client(sync_client=True) as client:
        old_task = client.read_task_run(old_task_id)
        assert old_task.name == "old-task" and old_task.task_inputs == {"x": []}
        (old_line,) = [line for line in client.read_logs() if line.flow_run_id == old_run_id]
        assert (old_line.message, old_line.extra) == ("an old line", None)
    upstream, downstream = fresh()
    with get_client(sync_client=True) as client:
        assert client.read_task_run(downstream).task_inputs == {"x": [TaskRunResult(id=upstream)]}
        extras = {line.message: line.extra for line in client.read_logs()}
    assert extras["new line"] == {"batch": 3}
