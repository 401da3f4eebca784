"""The SQLite store: durability at flush points, threads and processes at once, bad paths."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from millstream import flow, task
from millstream._engine.store import get_store
from millstream._engine.store import migrations as store_module
from millstream.exceptions import StoreError
from millstream.states import StateType


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


@task
def square(x: int) -> int:
    return x * x


@flow
def squares(n: int) -> int:
    return sum(square(i) for i in range(n))


def test_terminal_state_is_durable_when_the_call_returns(db_path):
    state = squares(3, return_state=True)
    # A plain sqlite3 connection (not the store's) sees the final state at once.
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT state_type, run_count, start_time, end_time FROM flow_run WHERE id = ?",
            (state.state_details.flow_run_id.bytes,),
        ).fetchone()
    assert row[0] == "COMPLETED"
    assert row[1] == 1
    assert row[2] <= row[3]


def test_full_state_history_of_flow_and_task_runs(db_path):
    state = squares(1, return_state=True)
    store = get_store(db_path)
    flow_states = asyncio.run(store.read_flow_run_states(state.state_details.flow_run_id))
    assert [s.type for s in flow_states] == [
        StateType.PENDING,
        StateType.RUNNING,
        StateType.COMPLETED,
    ]
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(flow_states))
    task_run = asyncio.run(store.read_task_runs_of(state.state_details.flow_run_id))[0]
    task_states = asyncio.run(store.read_task_run_states(task_run.id))
    assert [s.name for s in task_states] == ["Pending", "Running", "Completed"]


def test_schema_is_versioned(db_path):
    squares(1)
    with sqlite3.connect(db_path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert version == store_module.SCHEMA_VERSION
    assert mode == "wal"


def test_a_version_1_database_is_migrated_keeping_its_runs(db_path):
    # A file written before task runs recorded their code fingerprint.
    version_1 = dict(store_module.MIGRATIONS)[1]
    with sqlite3.connect(db_path) as conn:
        conn.executescript(version_1)
        conn.execute(
            "INSERT INTO task_run (id, name, task_key, task_name, dynamic_key, created, updated) "
            "VALUES ('old', 'old-0', 'k', 'old', '0', 'now', 'now')"
        )
        conn.execute("PRAGMA user_version = 1")
    squares(2)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
        rows = conn.execute("SELECT id, code_fingerprint FROM task_run ORDER BY rowid").fetchall()
    assert rows[0] == ("old", None)
    assert len(rows) == 3 and all(isinstance(fp, str) and fp for _, fp in rows[1:])


def test_many_threads_running_flows_at_once_never_lock(db_path):
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                assert squares(5) == 30
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'") == 40
    assert count(db_path, "SELECT count(*) FROM task_run") == 200


def test_concurrent_async_flows_in_one_loop_are_all_recorded(db_path):
    @task
    async def hop(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @flow
    async def hopper(n: int) -> int:
        return sum([await hop(i) for i in range(n)])

    async def main() -> list[int]:
        return await asyncio.gather(*(hopper(10) for _ in range(20)))

    assert asyncio.run(main()) == [45] * 20
    assert count(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'") == 200


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from millstream import flow, task

    @task
    def step(i: int) -> int:
        return i

    @flow(name=f"proc-{sys.argv[1]}")
    def many(n: int) -> int:
        return sum(step(i) for i in range(n))

    for _ in range(int(sys.argv[2])):
        assert many(20) == 190
    print("done", sys.argv[1])
    """
)


def test_two_processes_write_the_same_file_at_once(db_path, tmp_path, millstream_home):
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), "15"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "database is locked" not in err
    assert count(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'") == 30
    assert count(db_path, "SELECT count(*) FROM flow_run WHERE flow_name = 'proc-0'") == 15
    assert count(db_path, "SELECT count(*) FROM flow_run WHERE flow_name = 'proc-1'") == 15
    assert count(db_path, "SELECT count(*) FROM task_run") == 600


def test_a_run_finished_in_another_process_is_readable_at_once(db_path, tmp_path, millstream_home):
    script = tmp_path / "one.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    subprocess.run([sys.executable, str(script), "x", "1"], env=env, check=True, timeout=60)
    rows = asyncio.run(
        get_store(db_path).fetchall_sql("SELECT id FROM flow_run WHERE flow_name = 'proc-x'")
    )
    run = asyncio.run(get_store(db_path).read_flow_run(rows[0][0]))
    assert run.state_type is StateType.COMPLETED


def test_missing_directory_is_a_clear_error_naming_the_path(monkeypatch, tmp_path):
    missing = tmp_path / "nope" / "deeper" / "runs.db"
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(missing))
    with pytest.raises(StoreError, match="nope"):
        squares(1)
    assert not missing.parent.exists()


def test_read_only_directory_is_a_clear_error(monkeypatch, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write to read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(ro / "runs.db"))
    try:
        with pytest.raises(StoreError, match="not writable"):
            squares(1)
    finally:
        ro.chmod(0o755)


def test_read_only_database_file_is_a_clear_error(monkeypatch, tmp_path):
    db = tmp_path / "locked.db"
    db.write_bytes(b"")
    db.chmod(0o444)
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(db))
    if os.geteuid() == 0:
        # root ignores file modes; use an immutable-looking path instead: a directory
        db.chmod(0o644)
        db.unlink()
        db.mkdir()
        with pytest.raises(StoreError, match="not a regular file"):
            squares(1)
        return
    with pytest.raises(StoreError, match="not writable"):
        squares(1)


def test_a_file_that_is_not_sqlite_is_a_clear_error_and_is_left_untouched(monkeypatch, tmp_path):
    bogus = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 100
    bogus.write_bytes(content)
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(bogus))
    with pytest.raises(StoreError, match=r"notes\.txt"):
        squares(1)
    assert bogus.read_bytes() == content


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(monkeypatch, tmp_path):
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(foreign))
    with pytest.raises(StoreError, match="not a Millstream database"):
        squares(1)
    with sqlite3.connect(foreign) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}


def test_process_exit_flushes_runs_of_tasks_called_outside_flows(
    db_path, tmp_path, millstream_home
):
    script = tmp_path / "tasks_only.py"
    script.write_text(
        "from millstream import task\n@task\ndef t(x):\n    return x\n"
        "for i in range(50):\n    t(i)\n"
    )
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=60)
    assert count(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'") == 50


# Python 3.12+ warns about fork() in a threaded process; this test forks on purpose.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_records_its_own_runs(db_path):
    import multiprocessing

    squares(2)  # the parent's writer thread is running
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=squares, args=(3,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert count(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'") == 2


def test_a_version_2_database_is_migrated_to_compact_rows_keeping_everything(db_path):
    # Rows as version 2 wrote them: hex ids, fixed-width UTC text times, JSON state details
    # and JSON-lines histories.
    import datetime as dt
    import uuid

    from millstream._engine.store.rows import db_id, ts

    migrations = dict(store_module.MIGRATIONS)
    flow_id, run_id, task_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    states = [uuid.uuid4() for _ in range(3)]
    t = [
        "2026-01-02T03:04:05.000001Z",
        "2026-01-02T03:04:05.500000Z",
        "2026-01-02T03:04:06.000000Z",
    ]
    task_details = f'{{"task_run_id":"{task_id}"}}'
    history = "".join(
        f'["{states[i]}","{kind}","{name}",null,"{t[i]}",{task_details}]\n'
        for i, (kind, name) in enumerate(
            [("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Cached")]
        )
    )
    flow_history = f'["{states[0]}","COMPLETED","Completed","done","{t[2]}",null]\n'
    with sqlite3.connect(db_path) as conn:
        conn.executescript(migrations[1])
        conn.executescript(migrations[2])
        conn.execute("INSERT INTO flow VALUES (?, 'old-flow', ?)", (flow_id.hex, t[0]))
        conn.execute(
            "INSERT INTO flow_run (id, name, flow_id, flow_name, state_id, state_type, "
            "state_name, state_message, state_timestamp, start_time, end_time, created, updated, "
            "history, result) VALUES (?, 'old-run', ?, 'old-flow', ?, 'COMPLETED', 'Completed', "
            "'done', ?, ?, ?, ?, ?, ?, x'01')",
            (run_id.hex, flow_id.hex, states[0].hex, t[2], t[0], t[2], t[0], t[2], flow_history),
        )
        conn.execute(
            "INSERT INTO task_run (id, flow_run_id, name, task_key, task_name, dynamic_key, "
            "parameters, run_count, state_id, state_type, state_name, state_timestamp, "
            "state_details, start_time, end_time, created, updated, history, result, "
            "code_fingerprint) VALUES (?, ?, 'step-0', 'step-k', 'step', '0', '{\"x\":1}', 1, "
            "?, 'COMPLETED', 'Cached', ?, ?, ?, ?, ?, ?, ?, x'02', 'abc')",
            (
                task_id.hex,
                run_id.hex,
                states[2].hex,
                t[2],
                task_details,
                t[1],
                t[2],
                t[0],
                t[2],
                history,
            ),
        )
        conn.execute(
            "INSERT INTO log (flow_run_id, task_run_id, level, name, message, timestamp) "
            "VALUES (?, ?, 20, 'millstream.task_runs', 'hello', ?)",
            (run_id.hex, task_id.hex, t[1]),
        )
        conn.execute("INSERT INTO cache VALUES ('key', x'03', ?, ?, ?)", (t[2], task_id.hex, t[0]))
        conn.execute(
            "INSERT INTO variable VALUES ('v', '1', '[]', ?, ?)",
            ("2026-01-02T03:04:05.000001+00:00",) * 2,
        )
        conn.execute("PRAGMA user_version = 2")
    store = get_store(db_path)
    store.ensure_open_sync()
    run = asyncio.run(store.read_flow_run(run_id))
    task_run = asyncio.run(store.read_task_run(task_id))
    task_states = asyncio.run(store.read_task_run_states(task_id))
    flow_states = asyncio.run(store.read_flow_run_states(run_id))
    when = [dt.datetime.fromisoformat(x) for x in t]
    assert (run.name, run.flow_id, run.state_type, run.state_name) == (
        "old-run",
        flow_id,
        StateType.COMPLETED,
        "Completed",
    )
    assert (run.start_time, run.end_time, run.created) == (when[0], when[2], when[0])
    assert run.state is not None and run.state.message == "done" and run.state.id == states[0]
    assert [(s.id, s.name, s.timestamp) for s in flow_states] == [(states[0], "Completed", when[2])]
    assert (task_run.flow_run_id, task_run.parameters, task_run.code_fingerprint) == (
        run_id,
        {"x": 1},
        "abc",
    )
    assert task_run.state is not None and task_run.state.state_details.task_run_id == task_id
    assert [(s.id, s.type, s.name, s.timestamp) for s in task_states] == [
        (states[0], StateType.PENDING, "Pending", when[0]),
        (states[1], StateType.RUNNING, "Running", when[1]),
        (states[2], StateType.COMPLETED, "Cached", when[2]),
    ]
    assert all(s.state_details.task_run_id == task_id for s in task_states)
    assert asyncio.run(store.read_flow_run_result(run_id)) == b"\x01"
    assert asyncio.run(store.lookup_cache("key")) is None  # expired in 2026-01-02
    assert asyncio.run(store.read_variable("v")) == ("v", 1, [])
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
        assert conn.execute("SELECT id, flow_run_id FROM task_run").fetchall() == [
            (db_id(task_id), db_id(run_id))
        ]
        assert conn.execute("SELECT timestamp, task_run_id FROM log").fetchall() == [
            (ts(when[1]), db_id(task_id))
        ]
        assert conn.execute("SELECT typeof(history) FROM task_run").fetchone() == ("blob",)
    # New runs land next to the migrated ones.
    assert squares(2) == 1
    assert count(db_path, "SELECT count(*) FROM task_run") == 3
