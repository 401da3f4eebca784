"""Retry histories, subflow wait_for and returned Cancelling, as Prefect 3.9.1 records them
(each expectation first observed on prefect==3.9.1)."""

from __future__ import annotations

import threading

import pytest

from millstream import flow, get_client, task
from millstream.exceptions import UpstreamTaskError
from millstream.states import State


def _task_state_names(task_run_id: object) -> list[str]:
    with get_client(sync_client=True) as client:
        return [s.name or "" for s in client.read_task_run_states(task_run_id)]


def _flow_state_names(flow_run_id: object) -> list[str]:
    with get_client(sync_client=True) as client:
        return [s.name or "" for s in client.read_flow_run_states(flow_run_id)]


def test_retry_histories_name_states_as_prefect():
    # prefect 3.9.1: task, no delay: Pending, Running, Retrying, Retrying, Completed; task
    # with a delay: Pending, Running, AwaitingRetry, Retrying, Completed; flow: Pending,
    # Running, AwaitingRetry, Running, Completed.
    calls = {"now": 0, "later": 0, "flow": 0}

    @task(retries=2)
    def immediately() -> str:
        calls["now"] += 1
        if calls["now"] < 3:
            raise ValueError("again")
        return "ok"

    @task(retries=1, retry_delay_seconds=0.01)
    def later() -> str:
        calls["later"] += 1
        if calls["later"] < 2:
            raise ValueError("again")
        return "ok"

    @flow(retries=1)
    def flaky_flow() -> tuple[State, State]:
        calls["flow"] += 1
        if calls["flow"] < 2:
            raise ValueError("flow again")
        return immediately(return_state=True), later(return_state=True)

    final = flaky_flow(return_state=True)
    now_state, later_state = final.data
    assert _task_state_names(now_state.state_details.task_run_id) == [
        "Pending",
        "Running",
        "Retrying",
        "Retrying",
        "Completed",
    ]
    assert _task_state_names(later_state.state_details.task_run_id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    assert _flow_state_names(final.state_details.flow_run_id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Running",
        "Completed",
    ]


def test_a_subflow_waits_for_its_wait_for_futures():
    # prefect 3.9.1: child(wait_for=[f]) runs after f finished: (2, True), order child, after.
    never = threading.Event()
    order: list[str] = []

    @task
    def upstream() -> int:
        # Holds the upstream back: a child that did not wait would record itself first.
        never.wait(0.2)
        order.append("upstream")
        return 1

    @flow
    def child() -> int:
        order.append("child")
        return 2

    @flow
    def parent() -> int:
        future = upstream.submit()
        value = child(wait_for=[future])
        order.append("after")
        return value

    assert parent() == 2
    assert order == ["upstream", "child", "after"]


def test_a_subflow_whose_wait_for_failed_does_not_run():
    # prefect 3.9.1: the child is left Pending 'NotReady' "Upstream task run '<id>' did not
    # reach a 'COMPLETED' state." and never runs.
    ran: list[int] = []

    @task
    def bad() -> None:
        raise ValueError("x")

    @flow
    def child() -> int:
        ran.append(1)
        return 2

    @flow
    def parent() -> State:
        return child(wait_for=[bad.submit()], return_state=True)

    @flow
    def parent_calls() -> int:
        return child(wait_for=[bad.submit()])

    not_ready = parent(return_state=True).data
    assert (not_ready.type.value, not_ready.name) == ("PENDING", "NotReady")
    assert "did not reach a 'COMPLETED' state" in (not_ready.message or "")
    with pytest.raises(UpstreamTaskError, match="did not reach a 'COMPLETED' state"):
        parent_calls()
    assert ran == []


def test_a_top_level_flow_accepts_wait_for():
    @flow
    def top() -> int:
        return 3

    assert top(wait_for=[]) == 3
