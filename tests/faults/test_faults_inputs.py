"""Hostile input: rows that cannot be encoded are refused where they are made, with an error
naming the field, and never poison another run's batch or kill the writer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from fault_tools import ledger_lines, query

from millstream import flow, task
from millstream._engine.store import get_store


def _append(ledger: Path, line: str) -> None:
    with ledger.open("a") as f:
        f.write(line + "\n")


def test_a_lone_surrogate_print_never_loses_another_thread_s_task(db_path, ledger, monkeypatch):
    monkeypatch.setenv("LEDGER", str(ledger))
    go = threading.Barrier(2)

    @task
    def noted(name: str, i: int) -> int:
        _append(ledger, f"{name} {i}")
        return i

    @flow(log_prints=True)
    def printer() -> int:
        go.wait(10)
        print("bad \udc80 surrogate")
        return noted("printer", 0)

    @flow
    def steady() -> int:
        go.wait(10)
        return sum(noted("steady", i) for i in range(20))

    results: dict[str, object] = {}

    def call(fn) -> None:  # type: ignore[no-untyped-def]
        results[fn.__name__] = fn()

    threads = [threading.Thread(target=call, args=(f,)) for f in (printer, steady)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"printer": 0, "steady": 190}
    done = {tuple(line.split()) for line in ledger_lines(ledger)}
    on_disk = {
        (row[0], row[1])
        for row in query(
            db_path,
            "SELECT f.flow_name, t.dynamic_key FROM task_run t JOIN flow_run f"
            " ON t.flow_run_id = f.id WHERE t.state_type = 'COMPLETED'",
        )
    }
    assert len(done) == 21 and len(on_disk) == 21
    (message,) = query(db_path, "SELECT message FROM log WHERE message LIKE 'bad %'")[0]
    assert message == "bad \\udc80 surrogate"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("lone \udc80", "lone surrogate"),
        ("recursive", "contains itself"),
    ],
)
def test_a_parameter_that_cannot_be_recorded_is_refused_at_the_call(value, why, db_path):
    if value == "recursive":
        value = []
        value.append(value)

    @flow
    def takes(x: object) -> int:
        return 1

    with pytest.raises(ValueError, match=rf"parameter 'x' cannot be recorded: .*{why}"):
        takes(value)
    # The writer lives on: the next call returns and is on disk.
    assert takes(2) == 1
    assert query(db_path, "SELECT state_type FROM flow_run") == [("COMPLETED",)]


def test_a_parameter_whose_repr_raises_is_recorded_and_the_writer_lives(db_path):
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    @task
    def inner(h: object) -> int:
        return 2

    @flow
    def takes(h: object) -> int:
        return inner(h)

    assert takes(Hostile()) == 2
    assert takes(Hostile()) == 2
    rows = query(db_path, "SELECT state_type, parameters FROM flow_run")
    assert [r[0] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert all("Hostile object: repr() raised RuntimeError" in r[1] for r in rows)
    assert query(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'") == [(2,)]


def test_task_parameters_that_json_cannot_hold_never_poison_the_batch(db_path):
    @task
    def inner(x: object) -> int:
        return 3

    @flow
    def outer() -> int:
        loop: list[object] = []
        loop.append(loop)
        return inner(loop) + inner("lone \udc80") + inner({"k": loop})

    assert outer() == 9
    states = query(db_path, "SELECT state_type FROM task_run")
    assert states == [("COMPLETED",)] * 3


def test_a_lone_surrogate_in_a_run_name_is_a_value_error_naming_flow_run_name(db_path):
    @flow(flow_run_name="run-\udc80")
    def named() -> int:
        return 1

    with pytest.raises(ValueError, match="flow_run_name"):
        named()

    @flow
    def plain() -> int:
        return 1

    with pytest.raises(ValueError, match="flow_run_name"):
        plain.with_options(flow_run_name="x\ud800y")()
    assert plain() == 1


def test_a_huge_log_line_is_stored_cut_with_a_marker(db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_LOGGING_MAX_LINE_CHARS", "1000")

    @flow(log_prints=True)
    def loud() -> int:
        print("x" * 10_000_000)
        return 1

    assert loud() == 1
    ((message,),) = query(db_path, "SELECT message FROM log WHERE message LIKE 'xxx%'")
    assert message.startswith("x" * 1000)
    assert "[truncated 9999000 characters: MILLSTREAM_LOGGING_MAX_LINE_CHARS]" in message
    assert len(message) < 1100


def test_one_bad_orphan_never_blocks_recover_for_the_others(db_path, tmp_path):
    import subprocess
    import sys

    from millstream.recovery import recover

    script = tmp_path / "orphans.py"
    script.write_text(
        "import os, signal\n"
        "from millstream import flow\n"
        "@flow\n"
        "def orphan(n: int) -> int:\n"
        "    from millstream._engine.settings import get_current_settings\n"
        "    from millstream._engine.store import get_store\n"
        "    get_store(get_current_settings().database_path).flush_sync()\n"
        "    if os.environ.get('KILL') == '1':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return n\n"
        "if __name__ == '__main__':\n"
        "    import sys; orphan(int(sys.argv[1]))\n"
    )
    env = {**os.environ, "KILL": "1"}
    for n in (1, 2, 3):
        subprocess.run([sys.executable, str(script), str(n)], env=env, timeout=60, check=False)
    assert query(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'RUNNING'") == [(3,)]
    # Damage the oldest orphan's recorded parameters (as an older version or a bad disk might).
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE flow_run SET parameters = '\"junk\"', parameters_blob = x'00ff'"
            " WHERE id = (SELECT id FROM flow_run ORDER BY created LIMIT 1)"
        )
    report = recover()
    assert len(report.resumed) == 2
    assert len(report.crashed) == 1
    states = sorted(r[0] for r in query(db_path, "SELECT state_type FROM flow_run"))
    assert states == ["COMPLETED", "COMPLETED", "CRASHED"]
    # Nothing poisoned is left behind: a flush succeeds (it raises for rows kept from a failed
    # batch) and then nothing is carried. (Lines queued after recover returned, such as the
    # resumed runs' last log lines, may still be on their way before the flush.)
    store = get_store(db_path)
    store.flush_sync()
    assert store.has_unwritten() is False
