"""Run loggers, print capture and persisted run logs."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from sdk import flow, get_run_logger, task
from sdk.exceptions import MissingContextError
from sdk.logging import disable_run_logger, get_logger


def rows(db, sql="SELECT name, message, task_run_id IS NOT NULL FROM log ORDER BY id"):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_run_logger_records_carry_the_run_and_are_persisted(db_path, capsys):
    @task
    def t() -> None:
        get_run_logger(step="one").info("hello from task")

    @flow(flow_run_name="logged-run")
    def f() -> None:
        get_run_logger().warning("hello from flow")
        t()

    f()
    persisted = rows(db_path)
    assert ("millstream.flow_runs", "hello from flow", 0) in persisted
    assert ("millstream.task_runs", "hello from task", 1) in persisted
    err = capsys.readouterr().err
    assert "hello from task" in err and "logged-run" in err and "step" in err


def test_outside_a_run_get_run_logger_raises():
    with pytest.raises(MissingContextError):
        get_run_logger()
    assert isinstance(get_logger("x"), logging.Logger)


def test_log_prints_is_inherited_by_tasks_unless_they_opt_out(db_path, capsys):
    @task
    def inherits() -> None:
        print("printed in task")

    @task(log_prints=False)
    def opts_out() -> None:
        print("plain print")

    @flow(log_prints=True)
    def f() -> None:
        print("printed in flow")
        inherits()
        opts_out()

    f()
    messages = [r[1] for r in rows(db_path)]
    assert "printed in flow" in messages and "printed in task" in messages
    assert "plain print" not in messages
    assert "plain print" in capsys.readouterr().out


def test_stdlib_logging_inside_a_run_is_captured(db_path):
    user_logger = logging.getLogger("my.app")
    user_logger.setLevel(logging.INFO)

    @task
    def t() -> None:
        user_logger.info("from user code")

    @flow
    def f() -> None:
        t()

    f()
    assert ("my.app", "from user code", 1) in rows(db_path)


def test_disable_run_logger():
    @task
    def t() -> None:
        get_run_logger().info("silenced")

    with disable_run_logger():
        t.fn()


def test_a_log_flood_is_capped_and_says_what_was_dropped(db_path, monkeypatch):
    monkeypatch.setattr(
        "engine.logs._settings",
        lambda _ctx: type(
            "S",
            (),
            {"logging": type("L", (), {"max_lines_per_run": 50})(), "database_path": db_path},
        )(),
    )

    @flow
    def noisy() -> None:
        logger = get_run_logger()
        for i in range(500):
            logger.info("line %d", i)

    noisy()
    messages = [r[1] for r in rows(db_path)]
    assert len(messages) == 51
    assert "450 log lines of this run were dropped" in messages[-1]


def test_json_format(monkeypatch, capsys):
    import json

    monkeypatch.setenv("MILLSTREAM_LOGGING_FORMAT", "json")

    @flow
    def f() -> None:
        get_run_logger(component="x").warning("as json")

    f()
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    line = next(entry for entry in lines if entry.get("event") == "as json")
    assert line["component"] == "x" and line["flow_name"] == "f" and line["level"] == "warning"
