"""What a run shows when it fails or retries (its log lines, the traceback kept with the failed
state), subflow runs linked to a task run of their parent, and read-your-writes for the client
inside a running flow. Expected texts are Prefect 3.9.1's."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import pytest

from millstream import flow, get_client, task
from millstream._engine import logs
from millstream._engine.model.states import State, StateType
from millstream.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from millstream.runtime import flow_run


def run_logs(flow_run_id: Any) -> list[tuple[str, str, str]]:
    """(level, logger, message) of every stored line of a flow run, in order."""
    with get_client(sync_client=True) as client:
        lines = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [(logging.getLevelName(line.level), line.name, line.message) for line in lines]


def first_lines(lines: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The lines with only the first line of each message (tracebacks checked apart)."""
    return [(level, name, message.split("\n", 1)[0]) for level, name, message in lines]


TASK, FLOW = "millstream.task_runs", "millstream.flow_runs"
TASK_MESSAGE = "Task run encountered an exception ValueError: boom"
FLOW_MESSAGE = "Flow run encountered an exception: ValueError: boom"


# -- failures and retries, as lines --------------------------------------------------------------
def test_task_retries_failure_and_final_states_are_logged_and_stored(capsys):
    @task(retries=2)
    def flaky() -> None:
        raise ValueError("boom")

    @task
    def ok(x: int) -> int:
        return x

    @flow(flow_run_name="visible")
    def failing() -> None:
        ok(1)
        flaky()

    state = failing(return_state=True)
    assert state.is_failed()
    lines = run_logs(state.state_details.flow_run_id)
    assert first_lines(lines) == [
        ("INFO", FLOW, "Beginning flow run 'visible' for flow 'failing'"),
        ("INFO", TASK, "Finished in state Completed()"),
        (
            "INFO",
            TASK,
            "Task run failed with exception: ValueError('boom') - Retry 1/2 will start immediately",
        ),
        (
            "INFO",
            TASK,
            "Task run failed with exception: ValueError('boom') - Retry 2/2 will start immediately",
        ),
        (
            "ERROR",
            TASK,
            "Task run failed with exception: ValueError('boom') - Retries are exhausted",
        ),
        ("ERROR", TASK, f"Finished in state Failed('{TASK_MESSAGE}')"),
        ("ERROR", FLOW, "Encountered exception during execution: ValueError('boom')"),
        ("INFO", FLOW, f"Finished in state Failed('{FLOW_MESSAGE}')"),
    ]
    # The failure lines carry the traceback down to the raising line of the task.
    for _, _, message in (lines[4], lines[6]):
        assert message.split("\n")[1] == "Traceback (most recent call last):"
        assert 'raise ValueError("boom")' in message
        assert message.endswith("ValueError: boom")
    err = capsys.readouterr().err
    assert "| INFO    | Flow run 'visible' - Beginning flow run 'visible' for flow 'failing'" in err
    assert "| INFO    | Task run 'ok-0' - Finished in state Completed()" in err
    assert (
        "| ERROR   | Task run 'flaky-0' - Task run failed with exception: ValueError('boom') - "
        "Retries are exhausted\nTraceback (most recent call last):" in err
    )
    assert f"| INFO    | Flow run 'visible' - Finished in state Failed('{FLOW_MESSAGE}')" in err


def test_retry_delay_no_retries_and_flow_retries_are_logged():
    attempts = {"n": 0}

    @task(retries=1, retry_delay_seconds=0.05)
    def second_time_lucky() -> int:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("first")
        return 1

    @task
    def no_retries() -> None:
        raise ValueError("boom")

    @flow(flow_run_name="again", retries=1)
    def retried() -> None:
        second_time_lucky()
        no_retries()

    state = retried(return_state=True)
    lines = first_lines(run_logs(state.state_details.flow_run_id))
    attempt = [
        ("INFO", FLOW, "Beginning flow run 'again' for flow 'retried'"),
        (
            "INFO",
            TASK,
            "Task run failed with exception: RuntimeError('first') - "
            "Retry 1/1 will start 0.05 second(s) from now",
        ),
        ("INFO", TASK, "Finished in state Completed()"),
        ("ERROR", TASK, "Task run failed with exception: ValueError('boom')"),
        ("ERROR", TASK, f"Finished in state Failed('{TASK_MESSAGE}')"),
        ("ERROR", FLOW, "Encountered exception during execution: ValueError('boom')"),
    ]
    second = [
        ("INFO", FLOW, "Beginning flow run 'again' for flow 'retried'"),
        ("INFO", TASK, "Finished in state Completed()"),
        *attempt[3:],
    ]
    assert lines == [
        *attempt,
        (
            "INFO",
            FLOW,
            "Received non-final state 'AwaitingRetry' when proposing final state 'Failed' "
            "and will attempt to run again...",
        ),
        *second,
        ("INFO", FLOW, f"Finished in state Failed('{FLOW_MESSAGE}')"),
    ]


def test_a_returned_failed_state_and_a_timeout_are_logged_as_prefect_does():
    @task
    def gives_up() -> State:
        from millstream.states import Failed

        return Failed(message="nope")

    @task(timeout_seconds=0.05)
    def too_slow() -> None:
        time.sleep(2)

    @flow(flow_run_name="odd")
    def odd() -> str:
        gives_up(return_state=True)
        too_slow(return_state=True)
        return "done"

    state = odd(return_state=True)
    lines = first_lines(run_logs(state.state_details.flow_run_id))
    assert lines[1][0] == "ERROR" and lines[1][2].startswith(
        "Task run failed with state: Failed(message='nope', type=FAILED"
    )
    assert lines[2] == ("ERROR", TASK, "Finished in state Failed('nope')")
    assert lines[3][0] == "ERROR" and lines[3][2].startswith(
        "Task run failed with exception: TaskRunTimeoutError("
    )
    assert lines[4] == ("ERROR", TASK, "Task run exceeded timeout of 0.05 second(s)")
    assert lines[5] == (
        "ERROR",
        TASK,
        "Finished in state TimedOut('Task run exceeded timeout of 0.05 second(s)', type=FAILED)",
    )
    assert lines[-1] == ("INFO", FLOW, "Finished in state Completed()")


def test_the_traceback_is_kept_with_the_failed_states():
    @task
    def bad() -> None:
        raise ValueError("boom")

    @flow
    def failing() -> None:
        bad()

    state = failing(return_state=True)
    tb = state.state_details.traceback
    assert tb is not None and tb.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("boom")' in tb and tb.endswith("ValueError: boom")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.state is not None and run.state.message == FLOW_MESSAGE
        assert run.state.state_details.traceback == tb
        assert client.read_flow_run_states(run.id)[-1].state_details.traceback == tb
        (task_run,) = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        assert task_run.state is not None and task_run.state.message == TASK_MESSAGE
        task_tb = task_run.state.state_details.traceback
        assert task_tb is not None and task_tb.endswith("ValueError: boom")


def test_cli_runs_logs_and_inspect_show_the_traceback(capsys):
    from millstream.cli import main

    @task
    def bad() -> None:
        raise ValueError("boom")

    @flow
    def failing() -> None:
        bad()

    run_id = str(failing(return_state=True).state_details.flow_run_id)
    capsys.readouterr()
    assert main(["runs", "logs", run_id]) == 0
    shown = capsys.readouterr().out
    assert "Task run failed with exception: ValueError('boom')" in shown
    assert "Traceback (most recent call last):" in shown and "ValueError: boom" in shown
    assert "Finished in state Failed(" in shown
    assert main(["runs", "inspect", run_id]) == 0
    inspected = capsys.readouterr().out
    assert f"Flow run {failing_name(run_id)!r} Failed: {FLOW_MESSAGE}" in inspected
    assert f"Task run 'bad-0' Failed: {TASK_MESSAGE}" in inspected
    assert inspected.count("Traceback (most recent call last):") == 2
    assert 'raise ValueError("boom")' in inspected
    assert main(["runs", "inspect", run_id, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["traceback"].endswith("ValueError: boom")
    assert body["states"][-1]["traceback"] == body["traceback"]
    assert body["task_runs"][0]["traceback"].endswith("ValueError: boom")


def failing_name(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).name


def test_nothing_is_built_for_the_lines_above_the_level(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_LOGGING_LEVEL", "WARNING")
    built: list[str] = []
    real_str = State.__str__

    def counting_str(self: State) -> str:
        built.append(self.name or "")
        return real_str(self)

    monkeypatch.setattr(State, "__str__", counting_str)
    calls: list[str] = []
    real_line = logs.task_run_line
    monkeypatch.setattr(
        logs, "task_run_line", lambda *a, **k: (calls.append(a[2]), real_line(*a, **k))[1]
    )

    @task
    def ok(x: int) -> int:
        return x

    @flow
    def quiet() -> int:
        return sum(ok(i) for i in range(20))

    state = quiet(return_state=True)
    assert state.result() == sum(range(20))
    assert calls == [] and built == []
    assert run_logs(state.state_details.flow_run_id) == []


# -- subflows ------------------------------------------------------------------------------------
def test_a_subflow_run_is_linked_to_a_task_run_of_its_parent():
    seen: dict[str, Any] = {}

    @flow
    def child(x: int) -> int:
        seen.setdefault("children", []).append(flow_run.id)
        return x + 1

    @flow
    def bad_child() -> None:
        raise ValueError("child boom")

    @flow
    def parent() -> int:
        seen["parent"] = flow_run.id
        total = child(1) + child(2)
        bad_child(return_state=True)
        return total

    assert parent() == 5
    with get_client(sync_client=True) as client:
        first, second = (client.read_flow_run(i) for i in seen["children"])
        bad = next(
            r
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [seen["parent"]]})
            )
            if r.flow_name == "bad-child"
        )
        trackers = [client.read_task_run(r.parent_task_run_id) for r in (first, second, bad)]
        assert [t.name for t in trackers] == ["child-0", "child-1", "bad-child-0"]
        assert [t.dynamic_key for t in trackers] == ["0", "1", "0"]
        assert all(str(t.flow_run_id) == seen["parent"] for t in trackers)
        assert trackers[0].task_key == trackers[1].task_key != trackers[2].task_key
        assert trackers[0].task_key.startswith("test_a_subflow_run_is_linked")
        # The task run follows its subflow's states, each naming the subflow run.
        for tracker, run in zip(trackers, (first, second, bad), strict=True):
            states = client.read_task_run_states(tracker.id)
            assert [s.name for s in states] == [s.name for s in client.read_flow_run_states(run.id)]
            assert all(s.state_details.child_flow_run_id == run.id for s in states)
            assert tracker.state is not None and run.state is not None
            assert (tracker.state.type, tracker.state.message) == (
                run.state.type,
                run.state.message,
            )
            assert tracker.run_count == run.run_count == 1
            assert tracker.end_time is not None
        assert trackers[2].state is not None and trackers[2].state.type is StateType.FAILED
        assert trackers[2].state.state_details.traceback is not None
    lines = first_lines(run_logs(first.id))
    assert lines[0] == ("INFO", FLOW, f"Beginning subflow run {first.name!r} for flow 'child'")


# -- read-your-writes ----------------------------------------------------------------------------
def test_the_sync_client_in_a_flow_reads_what_the_flow_wrote():
    @task
    def ok(x: int) -> int:
        return x

    @flow(flow_run_name="reader")
    def reader() -> tuple[Any, ...]:
        ok(3)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run.id)
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            lines = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        return (
            run.name,
            run.state_name,
            [(t.name, t.state_name) for t in task_runs],
            [line.message for line in lines],
        )

    assert reader() == (
        "reader",
        "Running",
        [("ok-0", "Completed")],
        ["Beginning flow run 'reader' for flow 'reader'", "Finished in state Completed()"],
    )


def test_the_async_client_in_an_async_flow_reads_what_the_flow_wrote():
    @task
    async def ok(x: int) -> int:
        return x

    @flow
    async def reader() -> tuple[Any, ...]:
        await ok(3)
        async with get_client() as client:
            run = await client.read_flow_run(flow_run.id)
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
        return run.state_name, [(t.name, t.state_name) for t in task_runs]

    assert asyncio.run(reader()) == ("Running", [("ok-0", "Completed")])


def test_a_read_waits_for_the_batch_the_writer_is_committing(db_path, monkeypatch):
    """The queue is empty while the writer holds what it took off it: a read still waits."""
    from millstream._engine.store import get_store

    store = get_store(db_path)
    store.ensure_open_sync()
    entered, release, flushing = threading.Event(), threading.Event(), threading.Event()

    def held_insert(conn: Any) -> None:
        conn.execute(
            "INSERT INTO flow (id, name, created) VALUES (?, ?, ?)",
            ("ab" * 16, "held", "2024-01-01T00:00:00+00:00"),
        )
        entered.set()
        release.wait(10)

    store.put_call(held_insert)
    assert entered.wait(10)
    assert not store._queue  # taken by the writer, not committed
    real_flush = store.flush

    async def watched_flush() -> None:
        flushing.set()
        await real_flush()

    monkeypatch.setattr(store, "flush", watched_flush)
    found: list[Any] = []
    query = "SELECT name FROM flow WHERE name = 'held'"
    reader = threading.Thread(target=lambda: found.extend(asyncio.run(store.fetchall_sql(query))))
    reader.start()
    # Either the read waits for the commit, or it has already returned without the row.
    deadline = time.monotonic() + 10
    while reader.is_alive() and not flushing.is_set() and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    reader.join(10)
    assert [row[0] for row in found] == ["held"]


@pytest.mark.parametrize("level", ["INFO"])
def test_the_level_is_applied_again_after_a_quiet_test(level, monkeypatch):
    # The previous test ran at WARNING: a new top-level flow applies the current level.
    monkeypatch.setenv("MILLSTREAM_LOGGING_LEVEL", level)

    @flow(flow_run_name="loud")
    def loud() -> None:
        return None

    state = loud(return_state=True)
    assert first_lines(run_logs(state.state_details.flow_run_id))[-1] == (
        "INFO",
        FLOW,
        "Finished in state Completed()",
    )
