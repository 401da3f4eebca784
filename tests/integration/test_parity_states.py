"""Flows and tasks that return states, and state results, as Prefect 3.9.1 does them.

Each expectation was first observed on prefect==3.9.1 (the comment says what it did).
"""

from __future__ import annotations

import pytest

from millstream import flow, task
from millstream.exceptions import (
    Abort,
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    PausedRun,
    UnfinishedRun,
)
from millstream.states import (
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    State,
)


@task
def ok(x: int = 1) -> int:
    return x


@task
def bad() -> None:
    raise ValueError("boom")


def test_a_returned_task_state_is_aggregated_and_the_call_gives_the_state():
    # prefect 3.9.1: flow state Completed 'All states completed.'; the call returns the
    # task's State; a failed one makes the flow Failed '1/1 states failed.' and the call
    # raises the task's exception.
    @flow
    def good() -> State:
        return ok(return_state=True)

    @flow
    def failing() -> State:
        return bad(return_state=True)

    final = good(return_state=True)
    assert (final.type.value, final.message) == ("COMPLETED", "All states completed.")
    given = good()
    assert isinstance(given, State) and given.result() == 1
    failed = failing(return_state=True)
    assert (failed.type.value, failed.message) == ("FAILED", "1/1 states failed.")
    with pytest.raises(ValueError, match=r"boom"):
        failing()
    # result(raise_on_failure=False) of the aggregate is the returned state itself
    inner = failed.result(raise_on_failure=False)
    assert isinstance(inner, State) and inner.is_failed()


def test_a_returned_future_counts_as_its_state():
    # prefect 3.9.1: `return t.submit()` behaves as returning the task's final state.
    @flow
    def one_future() -> object:
        return ok.submit(3)

    @flow
    def one_bad_future() -> object:
        return bad.submit()

    given = one_future()
    assert isinstance(given, State) and given.result() == 3
    state = one_bad_future(return_state=True)
    assert (state.type.value, state.message) == ("FAILED", "1/1 states failed.")


def test_returned_collections_of_states_fail_if_any_failed_and_come_back_whole():
    # prefect 3.9.1: '2/3 states failed.' (Crashed counts as failed), '1/2 states cancelled.'
    # (cancelled wins); the call returns the collection without raising; result() raises the
    # first failure's exception.
    @flow
    def three() -> tuple[State, ...]:
        return (ok(return_state=True), bad(return_state=True), bad(return_state=True))

    @flow
    def with_cancelled() -> list[State]:
        return [ok(return_state=True), Cancelled()]

    @flow
    def crash_and_fail() -> list[State]:
        return [Crashed(), Failed()]

    state = three(return_state=True)
    assert (state.type.value, state.message) == ("FAILED", "2/3 states failed.")
    returned = three()
    assert isinstance(returned, tuple) and [s.type.value for s in returned] == [
        "COMPLETED",
        "FAILED",
        "FAILED",
    ]
    with pytest.raises(ValueError, match=r"boom"):
        state.result()
    cancelled = with_cancelled(return_state=True)
    assert (cancelled.type.value, cancelled.message) == ("CANCELLED", "1/2 states cancelled.")
    with pytest.raises(CancelledRun, match=r"Run cancelled."):
        cancelled.result()
    mixed = crash_and_fail(return_state=True)
    assert (mixed.type.value, mixed.message) == ("FAILED", "2/2 states failed.")
    with pytest.raises(CrashedRun, match=r"Run crashed."):
        mixed.result()


def test_returned_futures_in_a_list_and_dicts_of_states_are_data():
    # prefect 3.9.1: [f1, f2] all completed -> 'All states completed.', the call returns the
    # states; a dict of states (or a list mixing values) is plain data: Completed.
    @flow
    def futures() -> list[object]:
        return [ok.submit(1), ok.submit(2)]

    @flow
    def a_dict() -> dict[str, State]:
        return {"a": ok(return_state=True), "b": bad(return_state=True)}

    @flow
    def mixed() -> list[object]:
        return [ok(return_state=True), 3]

    assert futures(return_state=True).message == "All states completed."
    assert [s.result() for s in futures()] == [1, 2]
    assert a_dict(return_state=True).is_completed()
    assert a_dict()["b"].is_failed()
    assert mixed(return_state=True).is_completed()
    assert mixed()[1] == 3
    assert empty_list() == []


@flow
def empty_list() -> list[int]:
    return []


def test_a_state_made_by_hand_is_the_final_state_as_given():
    # prefect 3.9.1: Failed(message='by hand') -> the flow is Failed 'by hand', the call raises
    # FailedRun('by hand'); Completed(data=5) -> 5; Cancelled/Crashed likewise raise.
    @flow
    def gives(kind: str) -> State:
        return {
            "failed": Failed(message="by hand"),
            "completed": Completed(message="done", data=5),
            "cancelled": Cancelled(message="nope"),
            "crashed": Crashed(message="crash"),
        }[kind]

    assert gives("failed", return_state=True).message == "by hand"
    with pytest.raises(FailedRun, match=r"by hand"):
        gives("failed")
    assert gives("completed") == 5
    assert gives("completed", return_state=True).message == "done"
    with pytest.raises(CancelledRun, match=r"nope"):
        gives("cancelled")
    with pytest.raises(CrashedRun, match=r"crash"):
        gives("crashed")


def test_a_subflow_state_returned_is_aggregated():
    # prefect 3.9.1: returning child(return_state=True) of a failed child -> '1/1 states
    # failed.' and the call raises the child's exception.
    @flow
    def child() -> State:
        return Failed(message="child said no")

    @flow
    def parent() -> State:
        return child(return_state=True)

    assert parent(return_state=True).message == "1/1 states failed."
    with pytest.raises(FailedRun, match=r"child said no"):
        parent()


def test_a_returned_non_final_state_is_refused_with_abort():
    # prefect 3.9.1: returning Pending() raises Abort "This run is in a RUNNING state and
    # cannot transition to a PENDING state." (We record the run Failed, the call raises.)
    @flow
    def pending() -> State:
        return Pending()

    with pytest.raises(Abort, match=r"cannot transition to a PENDING state"):
        pending()
    assert pending(return_state=True).is_failed()


def test_returned_failed_states_are_retried_and_fire_failure_hooks():
    # prefect 3.9.1: a flow returning Failed with retries=2 runs 3 times; on_failure runs for
    # a returned Failed and for an aggregated failure; a returned Cancelled runs no hook;
    # a returned Cancelling runs on_cancellation and the run ends Cancelling.
    calls: list[int] = []
    fired: list[tuple[str, str]] = []

    @flow(retries=2)
    def again() -> State:
        calls.append(1)
        return Failed(message="again")

    def hook(name: str):  # type: ignore[no-untyped-def]
        return lambda flow_, run, state: fired.append((name, state.type.value))

    @flow(
        on_failure=[hook("fail")],
        on_completion=[hook("done")],
        on_cancellation=[hook("cancel")],
        on_crashed=[hook("crash")],
    )
    def hooked(kind: str) -> object:
        if kind == "agg":
            return [bad(return_state=True)]
        return {"cancelled": Cancelled(), "cancelling": Cancelling(), "crashed": Crashed()}[kind]

    assert again(return_state=True).is_failed() and len(calls) == 3
    seen = {}
    for kind in ("agg", "cancelled", "cancelling", "crashed"):
        fired.clear()
        seen[kind] = (hooked(kind, return_state=True).type.value, list(fired))
    assert seen == {
        "agg": ("FAILED", [("fail", "FAILED")]),
        "cancelled": ("CANCELLED", []),
        "cancelling": ("CANCELLING", [("cancel", "CANCELLING")]),
        "crashed": ("CRASHED", [("crash", "CRASHED")]),
    }


def test_tasks_returning_states_follow_the_same_rules():
    # prefect 3.9.1: a task returning [Completed(data=1), Failed('x')] ends Failed
    # '1/2 states failed.', called directly it gives back the list; a task returning a task
    # state ends 'All states completed.'; a task returning Failed is retried.
    runs: list[int] = []

    @task
    def gives_list() -> list[State]:
        return [Completed(data=1), Failed(message="x")]

    @task(retries=2)
    def gives_failed() -> State:
        runs.append(1)
        return Failed(message="task manual")

    @task
    def gives_task_state() -> State:
        return ok(return_state=True)

    @flow
    def run_them() -> tuple[State, State, object, State]:
        return (
            gives_list(return_state=True),
            gives_task_state(return_state=True),
            gives_list(),
            gives_failed(return_state=True),
        )

    listed, nested, direct, failed = run_them(return_state=True).data
    assert (listed.type.value, listed.message) == ("FAILED", "1/2 states failed.")
    assert nested.message == "All states completed."
    assert isinstance(direct, list) and direct[1].message == "x"
    assert failed.message == "task manual" and len(runs) == 3


def test_results_of_states_made_by_hand():
    # prefect 3.9.1 texts: MissingResult for a hand-made Completed without data; FailedRun
    # 'Run failed.' / the string data; PausedRun 'Run is paused, its result is not
    # available.'; UnfinishedRun 'Run is in PENDING state, its result is not available.'
    with pytest.raises(MissingResult, match=r"State data is missing"):
        Completed().result()
    assert isinstance(Failed().result(raise_on_failure=False), FailedRun)
    with pytest.raises(FailedRun, match=r"^Run failed.$"):
        Failed().result()
    with pytest.raises(FailedRun, match=r"^text$"):
        Failed(data="text").result()
    with pytest.raises(CancelledRun, match=r"^c$"):
        Cancelled(message="c").result()
    with pytest.raises(CrashedRun, match=r"^Run crashed.$"):
        Crashed().result()
    with pytest.raises(PausedRun, match=r"^Run is paused, its result is not available.$"):
        Paused(message="wait").result()
    with pytest.raises(
        UnfinishedRun, match=r"^Run is in PENDING state, its result is not available.$"
    ):
        Pending().result()
    assert Completed(data=3).result() == 3


def test_interrupts_propagate_even_with_return_state():
    # prefect 3.9.1: SystemExit / KeyboardInterrupt raised in a task or flow propagate to the
    # caller even with return_state=True (the run is recorded Crashed).
    @task
    def exits() -> None:
        raise SystemExit(3)

    @flow
    def calls_exiting_task() -> State:
        return exits(return_state=True)

    @flow
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit):
        calls_exiting_task(return_state=True)
    with pytest.raises(KeyboardInterrupt):
        interrupted(return_state=True)
    assert ok(2) == 2  # the engine survived
