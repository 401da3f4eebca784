"""Durable recovery with real processes: SIGKILL mid-run, then resume without redoing work."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from millstream import flow, task
from millstream.recovery import recover

FLOW_SCRIPT = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    from millstream import flow, task

    COUNTS = Path(os.environ["COUNTS_FILE"])


    @task
    def step(i: int, acc: int) -> int:
        with COUNTS.open("a") as f:
            f.write(f"{i}\\n")
        if i == 6 and os.environ.get("BLOCK_AT_6") == "1":
            Path(os.environ["MARKER"]).write_text("task 6 is running")
            time.sleep(120)
        return acc + i * i


    @flow
    def ten_steps(n: int = 10) -> int:
        acc = 0
        for i in range(1, n + 1):
            acc = step(i, acc)
        return acc


    if __name__ == "__main__":
        print(ten_steps())
    """
)

RECOVER = (
    "from millstream.recovery import recover; r = recover(); print(len(r.resumed), len(r.crashed))"
)


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def task_runs(db: Path) -> int:
    """Task runs recorded so far (0 while the file or its schema does not exist yet)."""
    try:
        return query(db, "SELECT count(*) FROM task_run")[0][0]
    except sqlite3.OperationalError:
        return 0


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def kill_while_task_6_runs(
    path: Path, env: dict[str, str], tmp_path: Path, db_path: Path, completed: int = 5
) -> None:
    """Run the ten-step flow in a process and SIGKILL it while task 6 runs (tasks 1-5 durable,
    ``completed`` task runs in all)."""
    proc = subprocess.Popen(
        [sys.executable, str(path)], env={**env, "BLOCK_AT_6": "1"}, cwd=tmp_path
    )
    try:
        wait_until(lambda: (tmp_path / "marker").exists())
        wait_until(
            lambda: (
                task_runs(db_path) >= completed
                and query(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'")
                == [(completed,)]
            )
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


@pytest.fixture
def script(tmp_path: Path, millstream_home: Path) -> tuple[Path, dict[str, str], Path]:
    path = tmp_path / "ten_steps.py"
    path.write_text(FLOW_SCRIPT)
    counts = tmp_path / "counts.txt"
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(millstream_home),
        "COUNTS_FILE": str(counts),
        "MARKER": str(tmp_path / "marker"),
    }
    return path, env, counts


def test_sigkill_mid_flow_then_recover_runs_only_unfinished_tasks(script, db_path, tmp_path):
    path, env, counts = script
    kill_while_task_6_runs(path, env, tmp_path, db_path)
    assert query(db_path, "SELECT state_type FROM flow_run") == [("RUNNING",)]

    out = subprocess.run(
        [sys.executable, "-c", RECOVER],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "0"]
    executions = Counter(int(line) for line in counts.read_text().split())
    assert executions == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 1, 8: 1, 9: 1, 10: 1}
    ((state, run_count),) = query(db_path, "SELECT state_type, run_count FROM flow_run")
    assert state == "COMPLETED" and run_count == 2

    # The final result equals an uninterrupted run's.
    counts.write_text("")
    clean = subprocess.run(
        [sys.executable, str(path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert clean.stdout.strip() == "385"
    from millstream._engine.results.refs import decode

    results = query(db_path, "SELECT result FROM flow_run ORDER BY created")
    assert [decode(r[0]) for r in results] == [385, 385]


def test_recovery_of_an_unimportable_flow_marks_it_crashed_saying_why(script, db_path, tmp_path):
    path, env, _ = script
    kill_while_task_6_runs(path, env, tmp_path, db_path)
    path.unlink()
    out = subprocess.run(
        [sys.executable, "-c", RECOVER], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1"]
    ((state, message),) = query(db_path, "SELECT state_type, state_message FROM flow_run")
    assert state == "CRASHED"
    assert "no longer exists" in message


def test_recover_leaves_live_and_finished_runs_alone(db_path):
    @flow
    def quick() -> int:
        return 1

    quick()
    report = recover()
    assert (report.resumed, report.crashed) == ([], [])


def test_kill_during_heavy_writes_never_leaves_completed_without_result(
    tmp_path, db_path, millstream_home
):
    script = tmp_path / "busy.py"
    script.write_text(
        textwrap.dedent(
            """
            from millstream import flow, task

            @task
            def work(i: int) -> dict:
                return {"i": i, "payload": "x" * 200}

            @flow
            def busy() -> None:
                for i in range(100000):
                    work(i)

            busy()
            """
        )
    )
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script)], env=env)
        wait_until(lambda: task_runs(db_path) > 200)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    missing = query(
        db_path,
        "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED' AND result IS NULL",
    )
    assert missing == [(0,)]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


def test_calling_again_with_the_id_of_a_finished_run_returns_its_result(db_path):
    calls = []

    @task
    def expensive(x: int) -> int:
        calls.append(x)
        return x * 10

    @flow
    def order(x: int) -> int:
        return expensive(x)

    key = uuid.uuid4()
    assert order(4, flow_run_id=key) == 40
    assert order(4, flow_run_id=key) == 40
    assert calls == [4]
    assert query(db_path, "SELECT count(*) FROM flow_run") == [(1,)]


def _two_steps_failing_once():
    """A flow of two tasks whose second fails until ``fail[0]`` is cleared; ``calls`` logs
    every body run."""
    calls: list[str] = []
    fail = [True]

    @task
    def first() -> str:
        calls.append("first")
        return "a"

    @task
    def second(prev: str) -> str:
        calls.append("second")
        if fail[0]:
            raise RuntimeError("transient")
        return prev + "b"

    @flow
    def two_steps() -> str:
        return second(first())

    return two_steps, calls, fail


def test_calling_again_after_a_failure_resumes_in_the_same_run(db_path):
    two_steps, calls, fail = _two_steps_failing_once()
    key = uuid.uuid4()
    with pytest.raises(RuntimeError):
        two_steps(flow_run_id=key)
    fail[0] = False
    assert two_steps(flow_run_id=key) == "ab"
    assert calls == ["first", "second", "second"]
    assert query(db_path, "SELECT state_type, run_count FROM flow_run") == [("COMPLETED", 2)]


def test_results_recorded_without_a_code_fingerprint_are_not_reused(db_path):
    # Task runs recorded before fingerprints were kept (NULL): the code they ran is unknown.
    two_steps, calls, fail = _two_steps_failing_once()
    key = uuid.uuid4()
    with pytest.raises(RuntimeError):
        two_steps(flow_run_id=key)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE task_run SET code_fingerprint = NULL")
    fail[0] = False
    assert two_steps(flow_run_id=key) == "ab"
    assert calls == ["first", "second", "first", "second"]
    messages = [m for (m,) in query(db_path, "SELECT message FROM log WHERE level >= 30")]
    assert any("'first-" in m and "no code fingerprint" in m for m in messages), messages


def test_arecover_from_async_code_resumes_sync_flows(script, db_path, tmp_path):
    import asyncio

    from millstream import arecover

    path, env, counts = script
    kill_while_task_6_runs(path, env, tmp_path, db_path)
    os.environ["COUNTS_FILE"] = str(counts)  # the resumed flow runs in this process
    try:
        report = asyncio.run(arecover())
    finally:
        del os.environ["COUNTS_FILE"]
    assert len(report.resumed) == 1
    assert query(db_path, "SELECT state_type FROM flow_run") == [("COMPLETED",)]


# The ten-step flow with a second task, so that editing one task leaves another unchanged.
TWO_TASK_SCRIPT = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    from millstream import flow, task

    COUNTS = Path(os.environ["COUNTS_FILE"])


    @task
    def prep(n: int) -> int:
        with COUNTS.open("a") as f:
            f.write("prep\\n")
        return n


    @task
    def step(i: int, acc: int) -> int:
        with COUNTS.open("a") as f:
            f.write(f"{i}\\n")
        if i == 6 and os.environ.get("BLOCK_AT_6") == "1":
            Path(os.environ["MARKER"]).write_text("task 6 is running")
            time.sleep(120)
        return acc + i * i


    @flow
    def ten_steps(n: int = 10) -> int:
        acc = 0
        for i in range(1, prep(n) + 1):
            acc = step(i, acc)
        return acc


    if __name__ == "__main__":
        print(ten_steps())
    """
)


def _recover_in(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-c", RECOVER],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_recovery_runs_again_the_tasks_whose_code_changed_and_says_why(script, db_path, tmp_path):
    path, env, counts = script
    path.write_text(TWO_TASK_SCRIPT)
    kill_while_task_6_runs(path, env, tmp_path, db_path, completed=6)  # prep and steps 1-5
    # The flow is fixed while it is down: step's results recorded so far are stale.
    path.write_text(TWO_TASK_SCRIPT.replace("return acc + i * i", "return acc + 10 * i * i"))

    out = _recover_in(tmp_path, env)
    assert out.stdout.split() == ["1", "0"]
    executions = Counter(counts.read_text().split())
    # prep is unchanged: its recorded result is reused; every step call runs the new code.
    assert executions == {
        "prep": 1,
        **{str(i): 2 for i in range(1, 7)},
        **{str(i): 1 for i in range(7, 11)},
    }
    from millstream._engine.results.refs import decode

    ((state, result),) = query(db_path, "SELECT state_type, result FROM flow_run")
    assert state == "COMPLETED" and decode(result) == 3850
    warnings = [m for (m,) in query(db_path, "SELECT message FROM log WHERE level >= 30")]
    changed = [m for m in warnings if "code has changed" in m]
    assert len(changed) == 5, warnings  # steps 1-5, each named
    assert all("'step-" in m for m in changed)
    assert not any("prep" in m for m in warnings)


def test_recovery_from_a_moved_checkout_reuses_the_recorded_results(script, db_path, tmp_path):
    path, env, counts = script
    kill_while_task_6_runs(path, env, tmp_path, db_path)
    moved = tmp_path / "elsewhere" / "checkout"
    moved.mkdir(parents=True)
    (moved / path.name).write_text(path.read_text())
    path.unlink()  # the checkout moved: only the new copy exists

    out = _recover_in(moved, env)
    assert out.stdout.split() == ["1", "0"]
    executions = Counter(int(line) for line in counts.read_text().split())
    assert executions == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 1, 8: 1, 9: 1, 10: 1}
    from millstream._engine.results.refs import decode

    ((state, result),) = query(db_path, "SELECT state_type, result FROM flow_run")
    assert state == "COMPLETED" and decode(result) == 385
    # Every task run of the resumed attempt has the task keys of the first one.
    keys = query(db_path, "SELECT DISTINCT task_key FROM task_run")
    assert len(keys) == 1
