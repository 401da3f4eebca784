"""Suspend, resume from elsewhere, continue without re-running completed tasks; pauses that
survive their process; durable sleep; waiting for a flow run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from millstream import flow, get_client, recover, task
from millstream.exceptions import FlowRunWaitTimeout, NotPausedError, PausedRun
from millstream.flow_runs import (
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
    wait_for_flow_run,
)

_APPROVAL = """
import os, sys, time
from millstream import flow, task
from millstream.flow_runs import suspend_flow_run, pause_flow_run, sleep

LEDGER = {ledger!r}

def note(text):
    with open(LEDGER, "a") as f:
        f.write(text + "\\n")

@task
def step(name: str) -> str:
    note(name)
    return name

@flow
def approval() -> list:
    first = step("before")
    answer = suspend_flow_run(wait_for_input=dict, timeout=600)
    return [first, step("after-" + answer["ok"])]

@flow
def waiting() -> list:
    first = step("before")
    answer = pause_flow_run(wait_for_input=dict, timeout=600, poll_interval=0.05)
    return [first, step("after-" + answer["ok"])]

@flow
def napping(seconds: float) -> str:
    step("before")
    sleep(seconds)
    return step("after")

if __name__ == "__main__":
    which = sys.argv[1]
    if which == "approval":
        state = approval(return_state=True)
        print(state.state_details.flow_run_id, state.name, flush=True)
        time.sleep(600)
    elif which == "waiting":
        waiting()
    else:
        napping(float(sys.argv[2]))
"""


@contextlib.contextmanager
def _child(tmp_path: Path, home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Run one of the script's flows (``args``) in a child process sharing ``home``, and the
    ledger its tasks write to; the child is killed with SIGKILL when the block ends."""
    ledger = tmp_path / "ledger.txt"
    script = tmp_path / "approval_flows.py"
    script.write_text(_APPROVAL.format(ledger=str(ledger)))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "MILLSTREAM_HOME": str(home), "PYTHONPATH": str(root)}
    child = subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield child, ledger
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _wait_for_runs(
    in_state: Callable[[Any], bool], timeout: float = 30, interval: float = 0.01
) -> list[Any]:
    """Poll the flow runs until some have a state ``in_state`` accepts; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            found = [r for r in client.read_flow_runs() if r.state and in_state(r.state)]
        if found:
            return found
        assert time.monotonic() < deadline, "no flow run reached the awaited state in time"
        time.sleep(interval)


def _resume_once_paused(paused_flow: Callable[[], None], run_input: dict[str, Any]) -> float:
    """Call ``paused_flow`` in a thread, resume its run with ``run_input`` once it is paused and
    wait for it: the seconds from the resume until the flow returned."""
    thread = threading.Thread(target=paused_flow)
    thread.start()
    paused = _wait_for_runs(lambda state: state.is_paused())
    resumed_at = time.monotonic()
    resume_flow_run(paused[0].id, run_input=run_input)
    thread.join(30)
    return time.monotonic() - resumed_at


@pytest.mark.slow
def test_suspend_kill_resume_elsewhere_completes_without_rerunning_tasks(
    tmp_path: Path, millstream_home: Path
) -> None:
    with _child(tmp_path, millstream_home, "approval") as (child, ledger):
        assert child.stdout is not None
        run_id, state_name = child.stdout.readline().split()
        assert state_name == "Suspended"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert (run.state.type.value, run.state.name) == ("PAUSED", "Suspended")
    resume_flow_run(run_id, run_input={"ok": "yes"})
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state.name == "Resuming"
    report = recover()
    assert [str(r) for r in report.resumed] == [run_id]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert run.state.is_completed()
        assert run.state.result() == ["before", "after-yes"]
    # "before" ran once: the second execution reused its recorded result.
    assert _ledger(ledger) == ["before", "after-yes"]
    with pytest.raises(NotPausedError):
        resume_flow_run(run_id)


@pytest.mark.slow
def test_a_paused_run_whose_process_died_is_recovered_once_resumed(
    tmp_path: Path, millstream_home: Path
) -> None:
    with _child(tmp_path, millstream_home, "waiting") as (_, ledger):
        run_id = _wait_for_runs(lambda state: state.is_paused(), timeout=60, interval=0.05)[0].id
    resume_flow_run(run_id, run_input={"ok": "later"})
    report = recover()
    assert report.resumed == [run_id]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state.result() == ["before", "after-later"]
    assert _ledger(ledger) == ["before", "after-later"]


@pytest.mark.slow
def test_durable_sleep_after_a_crash_waits_only_the_time_left(
    tmp_path: Path, millstream_home: Path
) -> None:
    with _child(tmp_path, millstream_home, "napping", "3") as (child, ledger):
        deadline = time.monotonic() + 60
        while not _ledger(ledger):
            assert time.monotonic() < deadline
            assert child.poll() is None, child.communicate()[1]
            time.sleep(0.02)
        # The wake-up time is recorded before the sleep starts.
        with get_client(sync_client=True) as client:
            while True:
                runs = client.read_task_runs()
                if any(r.name.startswith("sleep-") and r.state.is_completed() for r in runs):
                    break
                assert time.monotonic() < deadline
                time.sleep(0.02)
        # Let half of the 3 s sleep pass before the crash.
        time.sleep(1.5)
    started = time.monotonic()
    report = recover(lease_seconds=0)
    took = time.monotonic() - started
    assert len(report.resumed) == 1
    # About the 1.5 s left, not a new 3 s sleep.
    assert 1.0 <= took < 2.7, took
    assert _ledger(ledger) == ["before", "after"]


def test_pause_is_woken_at_once_by_a_resume_in_the_same_process() -> None:
    answers: list[object] = []

    @flow
    def waits() -> None:
        # A poll every minute: only the in-process wake-up can finish this quickly.
        answers.append(pause_flow_run(wait_for_input=dict, timeout=60, poll_interval=60))

    assert _resume_once_paused(waits, {"value": {"go": 1}}) < 5
    assert answers == [{"go": 1}]


def test_suspend_outside_a_top_level_flow_is_refused_and_returns_paused_state() -> None:
    @task
    def inner() -> None:
        suspend_flow_run()

    @flow
    def calls_in_task() -> None:
        inner()

    with pytest.raises(RuntimeError, match="Cannot suspend task runs"):
        calls_in_task()
    with pytest.raises(RuntimeError, match="within a flow run"):
        suspend_flow_run()

    @flow
    def stops() -> int:
        suspend_flow_run(timeout=60)
        return 1

    with pytest.raises(PausedRun):
        stops()


def test_wait_for_flow_run_returns_the_final_run_or_times_out() -> None:
    @flow
    def quick() -> int:
        return 3

    state = quick(return_state=True)
    run = wait_for_flow_run(state.state_details.flow_run_id, timeout=5)
    assert run.state.is_completed()

    @flow
    def stuck() -> None:
        suspend_flow_run(timeout=60)

    paused = stuck(return_state=True)
    with pytest.raises(FlowRunWaitTimeout):
        wait_for_flow_run(paused.state_details.flow_run_id, timeout=0.1, poll_interval=0.02)


def test_run_input_models_need_the_pydantic_extra_and_validate() -> None:
    pydantic = pytest.importorskip("pydantic")
    from millstream.input import RunInput

    class Approval(RunInput):
        approved: bool
        note: str = ""

    got: list[object] = []

    @flow
    def review() -> None:
        got.append(pause_flow_run(wait_for_input=Approval, timeout=60, poll_interval=0.02))

    _resume_once_paused(review, {"approved": True})
    assert got == [Approval(approved=True)]
    with pytest.raises(pydantic.ValidationError):
        Approval(approved=True, extra=1)
    prefilled = Approval.with_initial_data(note="looks fine")
    assert prefilled(approved=False).note == "looks fine"


def test_send_input_and_receive_input_between_runs() -> None:
    pytest.importorskip("pydantic")
    from millstream.input import RunInput, receive_input, send_input

    class Number(RunInput):
        n: int

    seen: list[object] = []
    ready = threading.Event()

    @flow
    def receiver() -> None:
        ready.set()
        # A poll a minute: only the in-process wake-up can deliver these in time.
        for value in receive_input(int, timeout=10, poll_interval=60):
            seen.append(value)
            if value == 3:
                break
        seen.extend(n.n for n in Number.receive(timeout=0.2, poll_interval=0.05))

    run_ids: list[object] = []

    def run_receiver() -> None:
        state = receiver(return_state=True)
        run_ids.append(state.state_details.flow_run_id)

    thread = threading.Thread(target=run_receiver)
    thread.start()
    assert ready.wait(30)
    running = _wait_for_runs(lambda state: state.is_running())
    target = running[0].id
    Number(n=7).send_to(target)
    for value in (1, 2, 3):
        send_input(value, flow_run_id=target)
    thread.join(30)
    assert seen == [1, 2, 3, 7]
    with pytest.raises(TimeoutError):
        next(
            iter(
                receive_input(
                    int,
                    timeout=0.05,
                    raise_timeout_error=True,
                    flow_run_id=target,
                    exclude_keys=set(),
                    key_prefix="nothing-here",
                )
            )
        )
