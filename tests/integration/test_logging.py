"""Run loggers, print capture, stdlib capture, rendering and the per-run cap, on real files."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import time
import uuid

import pytest

from millstream import flow, get_run_logger, task
from millstream._engine import logs
from millstream.exceptions import MissingContextError
from millstream.logging import disable_run_logger, get_logger
from millstream.runtime import flow_run, task_run


@pytest.fixture(autouse=True)
def no_engine_lines(monkeypatch):
    """These tests count the lines runs log themselves (and the cap on them): the engine's own
    lines about each run (start, retries, final state) are tested in test_run_visibility."""
    monkeypatch.setattr(logs, "task_line_enabled", lambda level: False)
    monkeypatch.setattr(logs, "flow_line_enabled", lambda level: False)


def rows(db, where="1", params=()):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(f"SELECT * FROM log WHERE {where} ORDER BY id", params).fetchall()


def messages(db, where="1", params=()):
    return [r["message"] for r in rows(db, where, params)]


def hexid(text):
    return uuid.UUID(text).bytes  # ids are stored as 16 bytes


def test_lines_carry_the_run_fields_and_extras(db_path, capsys):
    ids = {}

    @task
    def t() -> None:
        ids["task"], ids["flow_in_task"] = task_run.id, flow_run.id
        get_run_logger(step="one").info("hello %s", "from task")

    @flow(flow_run_name="logged-run")
    def f() -> None:
        ids["flow"] = flow_run.id
        get_run_logger().warning("hello from flow")
        t()

    f()
    flow_line, task_line = rows(db_path)
    assert (flow_line["name"], flow_line["message"], flow_line["level"]) == (
        "millstream.flow_runs",
        "hello from flow",
        logging.WARNING,
    )
    assert flow_line["flow_run_id"] == hexid(ids["flow"]) and flow_line["task_run_id"] is None
    assert (task_line["name"], task_line["message"]) == ("millstream.task_runs", "hello from task")
    assert task_line["flow_run_id"] == hexid(ids["flow"]) == hexid(ids["flow_in_task"])
    assert task_line["task_run_id"] == hexid(ids["task"])
    err = capsys.readouterr().err
    assert "| WARNING | Flow run 'logged-run' - hello from flow" in err
    assert "| INFO    | Task run 't-0' - hello from task step=one" in err


def test_other_handlers_get_each_line_once_with_fields_and_caller(db_path, caplog):
    caplog.set_level(logging.INFO)

    @task
    def t() -> None:
        get_run_logger(component="x").info("for caplog", extra={"attempt": 2})

    @task(log_prints=True)
    def printer() -> None:
        print("printed for caplog")

    @flow
    def f() -> None:
        t()
        printer()
        get_run_logger().info("with its stack", stack_info=True)

    f()
    [printed] = [r for r in caplog.records if r.getMessage() == "printed for caplog"]
    assert printed.funcName == "printer" and printed.task_name == "printer"
    [record] = [r for r in caplog.records if r.getMessage() == "for caplog"]
    assert record.name == "millstream.task_runs"
    assert (record.task_name, record.flow_name, record.component, record.attempt) == (
        "t",
        "f",
        "x",
        2,
    )
    assert record.funcName == "t" and record.filename == "test_logging.py"
    stacked = messages(db_path)[-1]
    assert stacked.startswith("with its stack\nStack (most recent call last):")
    assert stacked.splitlines()[-2].endswith(", in f")  # the stack ends at the logging call
    assert messages(db_path)[:2] == ["for caplog", "printed for caplog"]


def test_an_application_console_handler_shows_lines_instead_of_ours(db_path, capsys):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("APP %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:

        @flow
        def f() -> None:
            get_run_logger().info("shown once")

        f()
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("shown once") == 1 and "APP millstream.flow_runs shown once" in err
    assert messages(db_path) == ["shown once"]


def test_the_console_handler_level_silences_the_console_only(db_path, capsys):
    [console] = get_logger().handlers  # Millstream's console handler, set up on first use
    console.setLevel(logging.ERROR)
    try:

        @flow
        def f() -> None:
            get_run_logger().warning("kept, not shown")
            get_run_logger().error("kept and shown")
            get_logger("engine-part").warning("also kept, not shown")

        f()
    finally:
        console.setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert "kept and shown" in err and "not shown" not in err
    assert messages(db_path) == ["kept, not shown", "kept and shown", "also kept, not shown"]


def test_other_loggers_warnings_still_show_when_nothing_else_would(db_path, capsys):
    # Without Millstream's root handler the standard library would print these itself (its
    # last resort); pytest's own handlers are set aside to see that.
    root = logging.getLogger()
    saved = root.handlers[:]

    @flow
    def f() -> None:
        logging.getLogger("lib").warning("lib warning in a run")

    f()  # installs Millstream's handlers
    root.handlers = [h for h in saved if h.__module__.startswith("millstream._engine.logs.")]
    try:
        f()
        logging.getLogger("lib").warning("lib warning outside runs")
        logs.flush()
    finally:
        root.handlers = saved
    err = capsys.readouterr().err
    assert "| WARNING | lib - lib warning in a run" in err
    assert "| WARNING | lib - lib warning outside runs" in err
    assert messages(db_path) == ["lib warning in a run"] * 2


def test_exceptions_are_kept_with_their_traceback(db_path, capsys):
    @task
    def t() -> None:
        try:
            raise KeyError("missing")
        except KeyError:
            get_run_logger().exception("lookup failed")

    @flow
    def f() -> None:
        t()

    f()
    [line] = rows(db_path)
    assert line["level"] == logging.ERROR
    assert line["message"].startswith("lookup failed\nTraceback (most recent call last):")
    assert "KeyError: 'missing'" in line["message"]
    assert "KeyError: 'missing'" in capsys.readouterr().err


def test_outside_a_run_get_run_logger_raises():
    with pytest.raises(MissingContextError, match="no active flow or task run"):
        get_run_logger()
    assert isinstance(MissingContextError("x"), RuntimeError)
    assert get_logger().name == "millstream"
    assert get_logger("custom").name == "millstream.custom"
    assert get_logger("millstream.engine").name == "millstream.engine"
    assert isinstance(get_logger("x"), logging.Logger)


def test_reserved_extra_names_are_refused():
    @flow
    def f() -> None:
        get_run_logger(name="clash")

    with pytest.raises(ValueError, match="'name' clashes"):
        f()


def test_disable_run_logger(db_path):
    @task
    def t() -> None:
        get_run_logger().info("silenced")
        print("silenced print")

    @flow(log_prints=True)
    def f() -> None:
        t()

    with disable_run_logger():
        t.fn()  # outside a run: a silent logger, no MissingContextError
        f()
    f()
    assert messages(db_path) == ["silenced", "silenced print"]  # only from the second call


def test_log_prints_is_inherited_by_tasks_unless_they_opt_out(db_path, capsys):
    @task
    def inherits() -> None:
        print("printed", "in task", sep="-")

    @task(log_prints=False)
    def opts_out() -> None:
        print("plain print")

    @flow(log_prints=True)
    def f() -> None:
        print("printed in flow")
        print("to stderr", file=sys.stderr)
        inherits()
        opts_out()

    f()
    lines = rows(db_path)
    assert [(r["message"], r["task_run_id"] is not None) for r in lines] == [
        ("printed in flow", False),
        ("printed-in task", True),
    ]
    assert all(r["level"] == logging.INFO for r in lines)
    out, err = capsys.readouterr()
    assert out == "plain print\n"
    assert "to stderr\n" in err and "Task run 'inherits-0' - printed-in task" in err


def test_a_task_can_turn_log_prints_on_in_a_flow_without_it(db_path, capsys):
    @task(log_prints=True)
    def loud() -> None:
        print("captured")

    @flow
    def f() -> None:
        print("not captured")
        loud()

    f()
    assert messages(db_path) == ["captured"]
    assert capsys.readouterr().out == "not captured\n"


def test_stdlib_logging_inside_a_run_is_captured(db_path):
    user_logger = logging.getLogger("my.app")
    user_logger.setLevel(logging.INFO)

    @task
    def t() -> None:
        user_logger.info("from user code")
        get_logger("custom").warning("from a millstream logger")

    @flow
    def f() -> None:
        user_logger.info("from the flow body")
        t()

    user_logger.warning("outside any run")
    f()
    user_logger.setLevel(logging.NOTSET)
    lines = [(r["name"], r["message"], r["task_run_id"] is not None) for r in rows(db_path)]
    assert lines == [
        ("my.app", "from the flow body", False),
        ("my.app", "from user code", True),
        ("millstream.custom", "from a millstream logger", True),
    ]


def test_concurrent_tasks_keep_their_own_lines(db_path):
    @task
    async def worker(n: int) -> str:
        logger = get_run_logger()
        for i in range(50):
            logger.info("worker %d line %d", n, i)
            if i % 10 == 0:
                await asyncio.sleep(0)
        return task_run.id

    @flow
    async def f() -> list[str]:
        return list(await asyncio.gather(*(worker(n) for n in range(10))))

    task_ids = asyncio.run(f())
    for n, task_id in enumerate(task_ids):
        mine = messages(db_path, "task_run_id = ?", (hexid(task_id),))
        assert mine == [f"worker {n} line {i}" for i in range(50)]


def test_json_format(db_path, monkeypatch, capsys):
    monkeypatch.setenv("MILLSTREAM_LOGGING_FORMAT", "json")

    @task
    def t() -> None:
        get_run_logger(component="x").warning("as json")

    @flow(flow_run_name="json-run")
    def f() -> None:
        t()

    f()
    err = capsys.readouterr().err.splitlines()
    lines = [json.loads(line) for line in err if line.startswith("{")]
    line = next(entry for entry in lines if entry["event"] == "as json")
    assert line["level"] == "warning" and line["logger"] == "millstream.task_runs"
    assert (line["component"], line["flow_name"], line["flow_run_name"]) == ("x", "f", "json-run")
    assert (line["task_name"], line["task_run_name"]) == ("t", "t-0")
    assert line["timestamp"].endswith("Z") and uuid.UUID(line["task_run_id"])
    assert messages(db_path) == ["as json"]


def test_level_setting(db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_LOGGING_LEVEL", "WARNING")

    @flow
    def f() -> None:
        logger = get_run_logger()
        logger.debug("debug")
        logger.info("info")
        logger.warning("warning")

    f()
    assert messages(db_path) == ["warning"]


def test_a_log_flood_is_capped_and_says_what_was_dropped(db_path, monkeypatch, capsys):
    monkeypatch.setenv("MILLSTREAM_LOGGING_MAX_LINES_PER_RUN", "50")

    @task
    def noisy_task() -> None:
        logger = get_run_logger()
        for i in range(200):
            logger.info("task line %d", i)

    @flow
    def noisy() -> None:
        logger = get_run_logger()
        for i in range(30):
            logger.info("line %d", i)
        noisy_task()  # its lines count towards the flow run's limit
        for i in range(30, 50):
            logger.info("line %d", i)

    noisy()
    lines = rows(db_path)
    assert len(lines) == 51
    assert [r["message"] for r in lines[:30]] == [f"line {i}" for i in range(30)]
    assert [r["message"] for r in lines[30:50]] == [f"task line {i}" for i in range(20)]
    last = lines[-1]
    # The marker belongs to the flow run, though a task line was the first one dropped.
    assert (last["name"], last["level"], last["task_run_id"]) == (
        "millstream.logs",
        logging.WARNING,
        None,
    )
    assert last["flow_run_id"] == lines[0]["flow_run_id"]
    assert last["message"].startswith("200 log lines of this run were dropped")
    assert "MILLSTREAM_LOGGING_MAX_LINES_PER_RUN" in last["message"]
    # The console still shows every line, and says once that storing stopped.
    err = capsys.readouterr().err
    assert "task line 199" in err and "line 49" in err
    assert err.count("limit of 50 stored log lines") == 1


def wait_for_message(db, where, params, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = messages(db, where, params)
        if (found and found[-1].startswith(expected)) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_cap_needs_no_end_of_run_call(db_path, monkeypatch):
    # Subflows and task runs outside flows end without telling the logs: the dropped count
    # still reaches their last row.
    monkeypatch.setenv("MILLSTREAM_LOGGING_MAX_LINES_PER_RUN", "10")

    @flow
    def child() -> str:
        for i in range(25):
            get_run_logger().info("child %d", i)
        return flow_run.id

    @flow
    def parent() -> str:
        get_run_logger().info("parent")
        return child()

    @task
    def alone() -> str:
        for i in range(40):
            get_run_logger().info("alone %d", i)
        return task_run.id

    child_id = parent()
    task_id = alone()
    found = wait_for_message(
        db_path, "flow_run_id = ?", (hexid(child_id),), "15 log lines of this run were dropped"
    )
    assert len(found) == 11 and found[-1].startswith("15 log lines")
    found = wait_for_message(
        db_path, "task_run_id = ?", (hexid(task_id),), "30 log lines of this run were dropped"
    )
    assert len(found) == 11 and found[-1].startswith("30 log lines")
    assert messages(db_path, "flow_run_id != ?", (hexid(child_id),))[0] == "parent"


def test_run_finished_writes_queued_lines_and_the_final_count(db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_LOGGING_MAX_LINES_PER_RUN", "5")

    @task
    def alone() -> str:
        for i in range(8):
            get_run_logger().info("line %d", i)
        return task_run.id

    task_id = uuid.UUID(alone())
    logs.run_finished(task_id)
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store

    get_store(get_current_settings().database_path).flush_sync()
    found = messages(db_path, "task_run_id = ?", (task_id.bytes,))
    assert found[:5] == [f"line {i}" for i in range(5)]
    assert found[5].startswith("3 log lines of this run were dropped")
