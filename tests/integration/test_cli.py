"""The millstream command: tables and JSON, filters, exit codes, following logs, subprocesses."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import millstream.cli
from millstream import flow, get_run_logger, tags, task
from millstream.cli import main


@task
def double(x: int) -> int:
    get_run_logger().info("doubled %d", x)
    return 2 * x


@flow(flow_run_name="cli-{n}")
def cli_flow(n: int) -> int:
    get_run_logger().info("doubling %d", n)
    return double(n)


@flow
def cli_fails() -> None:
    raise RuntimeError("nope")


def run_id_of(state) -> str:
    return str(state.state_details.flow_run_id)


def run_json(capsys, *argv: str):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_runs_ls_table_and_json_with_filters(capsys):
    with tags("nightly"):
        cli_flow(1)
    cli_fails(return_state=True)
    cli_flow(2)
    assert main(["runs", "ls"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "FLOW", "NAME", "STATE", "STARTED", "DURATION"]
    assert [line.split()[2] for line in table[1:]][::2] == ["cli-2", "cli-1"]
    assert "Failed" in table[2] and "cli-fails" in table[2]
    rows = run_json(capsys, "runs", "ls", "--json")
    assert [r["state_type"] for r in rows] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert rows[2]["tags"] == ["nightly"] and rows[2]["parameters"] == {"n": 1}
    assert set(rows[0]) >= {"id", "name", "flow_name", "state", "start_time", "end_time"}
    failed = run_json(capsys, "runs", "ls", "--state", "failed", "--json")
    assert [r["flow_name"] for r in failed] == ["cli-fails"]
    either = run_json(capsys, "runs", "ls", "--state", "FAILED", "--state", "completed", "--json")
    assert len(either) == 3
    assert [r["name"] for r in run_json(capsys, "runs", "ls", "--flow", "cli-flow", "--json")] == [
        "cli-2",
        "cli-1",
    ]
    assert len(run_json(capsys, "runs", "ls", "--since", "1h", "--json")) == 3
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    assert run_json(capsys, "runs", "ls", "--since", soon, "--json") == []
    assert len(run_json(capsys, "runs", "ls", "--limit", "1", "--json")) == 1
    assert main(["runs", "ls", "--flow", "nothing-here"]) == 0
    assert capsys.readouterr().out.strip() == "(none)"


def test_runs_inspect_shows_states_and_task_runs(capsys):
    state = cli_flow(3, return_state=True)
    assert main(["runs", "inspect", run_id_of(state)]) == 0
    out = capsys.readouterr().out
    assert "cli-3" in out and "double-0" in out and "Completed" in out and "Running" in out
    assert "Task runs:" in out and "States:" in out
    body = run_json(capsys, "runs", "inspect", run_id_of(state), "--json")
    assert [s["name"] for s in body["states"]] == ["Pending", "Running", "Completed"]
    assert all(s["timestamp"] for s in body["states"])
    [task_run] = body["task_runs"]
    assert (task_run["name"], task_run["state"], task_run["task_name"]) == (
        "double-0",
        "Completed",
        "double",
    )
    assert task_run["start_time"] <= task_run["end_time"]


def test_runs_logs_prints_every_line_in_order(capsys):
    state = cli_flow(4, return_state=True)
    assert main(["runs", "logs", run_id_of(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "Beginning flow run 'cli-4' for flow 'cli-flow'",
        "doubling 4",
        "doubled 4",
        "Finished in state Completed()",  # the task run's
        "Finished in state Completed()",  # the flow run's
    ]
    assert "INFO" in lines[0]


def test_runs_logs_follow_a_run_in_another_process(capsys, millstream_home, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from millstream import flow, get_run_logger
            from millstream.runtime import flow_run

            @flow
            def slow() -> None:
                print(flow_run.id, flush=True)
                for i in range(5):
                    get_run_logger().info("tick %d", i)
                    time.sleep(0.1)
                get_run_logger().info("done")

            slow()
            """
        )
    )
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    with subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        deadline = time.monotonic() + 30
        # The run's first states are written behind; wait until the row is there.
        while main(["runs", "inspect", run_id, "--json"]) != 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        capsys.readouterr()
        code = main(["runs", "logs", run_id, "--follow", "--interval", "0.05", "--timeout", "60"])
        assert code == 0
        assert proc.wait(timeout=60) == 0
    messages = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    # Every line up to the run's last one, the engine's "Finished in state" line.
    assert messages[0].startswith("Beginning flow run ")
    assert messages[1:] == [f"tick {i}" for i in range(5)] + [
        "done",
        "Finished in state Completed()",
    ]


def test_runs_logs_follow_gives_up_after_its_timeout(capsys):
    from millstream._engine.model.records import FlowRun
    from millstream._engine.model.states import Running
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store

    store = get_store(get_current_settings().database_path)
    running = Running()
    run = FlowRun(id=uuid.uuid4(), name="stuck", flow_id=store.flow_id("stuck"), flow_name="stuck")
    store.put_flow_run_state(run, running)
    store.flush_sync()
    started = time.monotonic()
    code = main(["runs", "logs", str(run.id), "--follow", "--interval", "0.05", "--timeout", "0.3"])
    assert code == 0 and 0.3 <= time.monotonic() - started < 10
    assert "stopped following after 0.3 s" in capsys.readouterr().err
    assert main(["runs", "logs", str(run.id), "--follow", "--interval", "0"]) == 2


def test_exit_codes(capsys):
    missing = str(uuid.uuid4())
    assert main(["runs", "inspect", missing]) == 1
    assert missing in capsys.readouterr().err
    assert main(["runs", "inspect", "not-an-id"]) == 1
    assert main(["runs", "logs", missing]) == 1
    assert main(["runs", "ls", "--state", "sleepy"]) == 2
    assert "sleepy" in capsys.readouterr().err
    assert main(["runs", "ls", "--since", "yesterday-ish"]) == 2
    assert main(["runs", "ls", "--limit", "-1"]) == 2
    for argv in (["runs", "frobnicate"], ["runs"], [], ["runs", "ls", "--limit", "many"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(millstream.cli.db, "cmd_db_path", interrupted)
    assert main(["db", "path"]) == 130


def test_runs_delete(capsys):
    state = cli_flow(5, return_state=True)
    assert main(["runs", "delete", run_id_of(state)]) == 0
    assert run_id_of(state) in capsys.readouterr().out
    assert main(["runs", "delete", run_id_of(state)]) == 1
    assert main(["runs", "inspect", run_id_of(state)]) == 1
    assert main(["runs", "delete", "not-an-id"]) == 1


def test_variables_commands(capsys):
    assert main(["variables", "set", "limit", "10", "--tag", "ops", "--tag", "prod"]) == 0
    assert main(["variables", "set", "limit", "11"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["variables", "set", "limit", "11", "--overwrite"]) == 0
    assert main(["variables", "set", "greeting", "hello there"]) == 0  # plain text: a string
    assert main(["variables", "set", "config", '{"retries": 3}']) == 0
    capsys.readouterr()
    assert main(["variables", "get", "limit"]) == 0
    assert capsys.readouterr().out.strip() == "11"
    assert run_json(capsys, "variables", "get", "greeting") == "hello there"
    assert run_json(capsys, "variables", "ls", "--json") == [
        {"name": "config", "value": {"retries": 3}, "tags": []},
        {"name": "greeting", "value": "hello there", "tags": []},
        {"name": "limit", "value": 11, "tags": []},
    ]
    assert main(["variables", "ls"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "VALUE", "TAGS"]
    assert table[1].split() == ["config", '{"retries":3}']
    from millstream.variables import Variable

    assert Variable.get("config") == {"retries": 3}  # the same encoding as Variable's
    assert main(["variables", "unset", "limit"]) == 0
    assert main(["variables", "get", "limit"]) == 1
    assert main(["variables", "unset", "limit"]) == 1
    assert main(["variables", "set", "Bad Name", "1"]) == 2


def test_variables_tags_are_kept(capsys):
    assert main(["variables", "set", "region", '"eu"', "--tag", "ops"]) == 0
    assert capsys.readouterr().out.strip() == "Set variable 'region'"
    assert run_json(capsys, "variables", "ls", "--json") == [
        {"name": "region", "value": "eu", "tags": ["ops"]}
    ]


def test_db_commands_and_recover(capsys, db_path):
    assert main(["db", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(db_path)
    assert main(["db", "vacuum"]) == 1  # nothing recorded yet: no file
    cli_flow(1)
    assert main(["db", "vacuum"]) == 0
    assert str(db_path) in capsys.readouterr().out
    assert main(["recover", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out) == {"resumed": [], "crashed": [], "skipped": []}


def test_the_console_script_runs_in_a_subprocess(millstream_home: Path):
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "millstream.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("runs", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    missing = cli("runs", "inspect", str(uuid.uuid4()))
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert cli("runs", "ls", "--state", "sleepy").returncode == 2


def test_serve_deployments_and_cancel_commands(tmp_path, millstream_home, db_path, capsys):
    import signal
    import sqlite3
    import time

    flow_file = tmp_path / "served.py"
    flow_file.write_text(
        "from millstream import flow\n"
        "@flow\n"
        "def greet(name: str = 'world') -> str:\n"
        "    return f'hello {name}'\n"
    )
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(millstream_home),
        "MILLSTREAM_SERVE_POLL_INTERVAL": "0.05",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "millstream.cli",
            "serve",
            f"{flow_file}:greet",
            "--name",
            "hi",
            "--interval",
            "3600",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            main(["deployments", "ls", "--json"]) != 0 or "greet/hi" not in capsys.readouterr().out
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert main(["deployments", "run", "greet/hi", "-p", 'name="you"', "--watch"]) == 0
        assert "Completed" in capsys.readouterr().out
        assert main(["deployments", "run", "greet/hi", "-p", "nope=1"]) == 2
        assert main(["deployments", "run", "greet/missing"]) == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert main(["deployments", "run", "greet/hi"]) == 0  # nobody serves it now: stays Scheduled
    run_id = capsys.readouterr().out.split("(")[1].split(")")[0]
    assert main(["runs", "cancel", run_id]) == 0
    assert "Cancelled" in capsys.readouterr().out
    with sqlite3.connect(db_path) as conn:
        results = [r[0] for r in conn.execute("SELECT state_type FROM flow_run ORDER BY created")]
    assert results == ["COMPLETED", "CANCELLED"]
