"""The transition decisions, with no loop, thread or database: what each next state is."""

from __future__ import annotations

import ast
import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from millstream._engine.exceptions import UpstreamTaskError
from millstream._engine.model import transitions as tr
from millstream._engine.model.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Running,
    StateType,
)

ROOT = Path(__file__).resolve().parents[2]


def test_first_attempt_runs_and_later_ones_retry():
    assert (tr.attempt_state(1).type, tr.attempt_state(1).name) == (StateType.RUNNING, "Running")
    assert (tr.attempt_state(2).type, tr.attempt_state(2).name) == (StateType.RUNNING, "Retrying")


@pytest.mark.parametrize(
    ("state", "run_count", "retries", "expected"),
    [
        (Failed(), 1, 1, True),
        (Failed(), 2, 1, False),
        (Failed(), 1, 0, False),
        (Completed(), 1, 3, False),
        (Crashed(), 1, 3, False),  # a crash is not retried
    ],
)
def test_only_failed_attempts_within_their_retries_may_retry(state, run_count, retries, expected):
    assert tr.may_retry(state, run_count, retries) is expected


def test_a_retry_waits_its_delay_in_awaiting_retry():
    failed = Failed(message="boom")
    before = dt.datetime.now(dt.UTC)
    delay, waiting = tr.retry(failed, 2, [1.0, 5.0, 9.0], None)
    assert delay == 5.0
    assert (waiting.type, waiting.name, waiting.message) == (
        StateType.SCHEDULED,
        "AwaitingRetry",
        "boom",
    )
    scheduled = waiting.state_details.scheduled_time
    assert scheduled is not None and scheduled - before >= dt.timedelta(seconds=5)


def test_upstream_not_ready_names_the_failed_runs_and_is_none_without_them():
    assert tr.upstream_not_ready([]) is None
    run_id = uuid.uuid4()
    state = tr.upstream_not_ready([run_id])
    assert state is not None
    assert (state.type, state.name) == (StateType.PENDING, "NotReady")
    assert str(run_id) in (state.message or "")
    assert isinstance(state.data, UpstreamTaskError)


def test_a_cache_hit_is_completed_named_cached_with_its_key_and_data():
    state = tr.cache_hit(9, "key-1")
    assert (state.type, state.name, state.data) == (StateType.COMPLETED, "Cached", 9)
    assert state.state_details.cache_key == "key-1"


def test_validation_failure_is_worded_as_prefect():
    state = tr.validation_failed(TypeError("x: not an int"))
    assert state.type is StateType.FAILED
    assert state.message == (
        "Validation of flow parameters failed with error: TypeError: x: not an int"
    )


@pytest.mark.parametrize(
    ("state", "flow", "expected"),
    [
        (Completed(), True, "on_completion"),
        (Failed(), True, "on_failure"),
        (Crashed(), True, "on_crashed"),
        (Crashed(), False, "on_failure"),
        (Cancelled(), True, None),  # a returned Cancelled fires no hook, as in Prefect
        (Pending(), False, None),
    ],
)
def test_which_hooks_a_final_state_fires(state, flow, expected):
    assert tr.hook_kind(state, flow=flow) == expected


@pytest.mark.parametrize(
    ("persist_result", "by_default", "cache_key", "expected"),
    [
        (None, False, None, False),
        (None, True, None, True),
        (False, True, None, False),
        (True, False, None, True),
        (None, False, "k", True),  # a cached result is always persisted
    ],
)
def test_what_is_persisted(persist_result, by_default, cache_key, expected):
    assert tr.should_persist(Completed(), persist_result, by_default, cache_key) is expected
    assert tr.should_persist(Failed(), True, True, "k") is False


def test_final_state_from_returned_states_follows_prefects_rules():
    # Checked on prefect 3.9.1 (return_value_to_state): a hand-made state is used as given;
    # a run's state or a list/tuple/set of states is aggregated (Cancelled if any cancelled,
    # else Failed counting failed+crashed), the returned value kept as the data.
    assert tr.final_from_return(5).type is StateType.COMPLETED
    failed = Failed(message="no")
    assert tr.final_from_return(failed) is failed
    states = [Completed(), Failed()]
    final = tr.final_from_return(states)
    assert (final.type, final.message, final.data) == (
        StateType.FAILED,
        "1/2 states failed.",
        states,
    )
    assert tr.final_from_return({"a": Failed()}).type is StateType.COMPLETED  # dicts are data
    cancelled = tr.final_from_states([Completed(), Cancelled()], None)
    assert (cancelled.type, cancelled.message) == (StateType.CANCELLED, "1/2 states cancelled.")
    crashed = tr.final_from_states([Crashed(), Completed()], None)
    assert (crashed.type, crashed.message) == (StateType.FAILED, "1/2 states failed.")
    ok = tr.final_from_states([Completed(), Completed()], None)
    assert (ok.type, ok.message) == (StateType.COMPLETED, "All states completed.")
    running = tr.final_from_states([Running()], None)
    assert (running.type, running.message) == (StateType.FAILED, "1/1 states are not final.")
    of_a_run = Completed(data=3)
    of_a_run.state_details.task_run_id = uuid.uuid4()
    aggregated = tr.final_from_return(of_a_run)
    assert aggregated is not of_a_run and aggregated.data is of_a_run


def test_the_run_path_reads_as_a_short_sequence():
    # Orchestration and the model stay small: no function over 60 lines, none more complex
    # than 10 (McCabe, as ruff counts it).
    long = []
    for folder in ("orchestrate", "model"):
        for path in (ROOT / "engine" / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    assert node.end_lineno is not None
                    if node.end_lineno - node.lineno + 1 > 60:
                        long.append(f"{path.name}:{node.name}")
    assert long == []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "C901",
            "--config",
            "lint.mccabe.max-complexity=10",
            "engine/orchestrate",
            "engine/model",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
