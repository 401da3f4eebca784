"""The millstream command: tables and JSON, exit codes, a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sdk import flow, get_run_logger, task
from sdk.cli import main


@task
def double(x: int) -> int:
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


def test_runs_ls_table_and_json_with_filters(capsys):
    cli_flow(1)
    cli_fails(return_state=True)
    assert main(["runs", "ls"]) == 0
    table = capsys.readouterr().out
    assert "cli-1" in table and "STATE" in table and "Failed" in table
    assert main(["runs", "ls", "--state", "failed", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["flow_name"] for r in rows] == ["cli-fails"]
    assert main(["runs", "ls", "--flow", "cli-flow", "--since", "1h", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["cli-1"]


def test_runs_inspect_and_logs(capsys):
    state = cli_flow(3, return_state=True)
    assert main(["runs", "inspect", run_id_of(state)]) == 0
    out = capsys.readouterr().out
    assert "double-0" in out and "Completed" in out and "Running" in out
    assert main(["runs", "inspect", run_id_of(state), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in body["states"]] == ["Pending", "Running", "Completed"]
    assert main(["runs", "logs", run_id_of(state), "--follow"]) == 0
    assert "doubling 3" in capsys.readouterr().out


def test_exit_codes(capsys):
    assert main(["runs", "inspect", "01a20e00-0000-7000-8000-000000000000"]) == 1
    assert main(["runs", "ls", "--state", "sleepy"]) == 2
    assert main(["runs", "ls", "--since", "yesterday-ish"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["runs", "frobnicate"])
    assert info.value.code == 2


def test_runs_delete(capsys):
    state = cli_flow(4, return_state=True)
    assert main(["runs", "delete", run_id_of(state)]) == 0
    assert main(["runs", "delete", run_id_of(state)]) == 1


def test_variables_commands(capsys):
    assert main(["variables", "set", "limit", "10"]) == 0
    assert main(["variables", "set", "limit", "11"]) == 2
    assert main(["variables", "set", "limit", "11", "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["variables", "get", "limit"]) == 0
    assert capsys.readouterr().out.strip() == "11"
    assert main(["variables", "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "limit", "value": 11, "tags": []}]
    assert main(["variables", "unset", "limit"]) == 0
    assert main(["variables", "get", "limit"]) == 1
    assert main(["variables", "set", "Bad Name", "1"]) == 2


def test_db_commands_and_recover(capsys, db_path):
    assert main(["db", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(db_path)
    cli_flow(1)
    assert main(["db", "vacuum"]) == 0
    assert main(["recover", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out) == {"resumed": [], "crashed": [], "skipped": []}


def test_the_console_script_runs_in_a_subprocess(millstream_home):
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    out = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "runs", "ls", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_serve_deployments_and_cancel_commands(tmp_path, millstream_home, db_path, capsys):
    import signal
    import sqlite3
    import time

    flow_file = tmp_path / "served.py"
    flow_file.write_text(
        "from sdk import flow\n"
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
            "sdk.cli",
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
