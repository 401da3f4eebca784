"""The pure state machine: constructors, predicates, results, transitions, retry delays."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from millstream._engine.exceptions import CancelledRun, CrashedRun, FailedRun, UnfinishedRun
from millstream._engine.model import states as st


def test_state_types_have_name_values():
    assert [t.value for t in st.StateType] == [
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "CRASHED",
        "PAUSED",
        "CANCELLING",
    ]


@pytest.mark.parametrize(
    ("ctor", "type_", "name"),
    [
        (st.Completed, st.StateType.COMPLETED, "Completed"),
        (st.Failed, st.StateType.FAILED, "Failed"),
        (st.Running, st.StateType.RUNNING, "Running"),
        (st.Pending, st.StateType.PENDING, "Pending"),
        (st.Cancelled, st.StateType.CANCELLED, "Cancelled"),
        (st.Cancelling, st.StateType.CANCELLING, "Cancelling"),
        (st.Crashed, st.StateType.CRASHED, "Crashed"),
        (st.Paused, st.StateType.PAUSED, "Paused"),
        (st.Suspended, st.StateType.PAUSED, "Suspended"),
        (st.Scheduled, st.StateType.SCHEDULED, "Scheduled"),
        (st.AwaitingRetry, st.StateType.SCHEDULED, "AwaitingRetry"),
        (st.AwaitingConcurrencySlot, st.StateType.SCHEDULED, "AwaitingConcurrencySlot"),
        (st.Late, st.StateType.SCHEDULED, "Late"),
        (st.Retrying, st.StateType.RUNNING, "Retrying"),
    ],
)
def test_constructors_give_type_and_name(ctor, type_, name):
    state = ctor(message="m")
    assert (state.type, state.name, state.message) == (type_, name, "m")
    assert state.timestamp.tzinfo is not None


def test_constructor_kwargs_data_name_and_details():
    state = st.Completed(data=5, name="Cached", state_details={"cache_key": "k"})
    assert (state.result(), state.name, state.state_details.cache_key) == (5, "Cached", "k")


def test_scheduled_time_must_be_aware_and_defaults_to_now():
    before = st.now()
    assert st.Scheduled().state_details.scheduled_time >= before
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert st.Scheduled(scheduled_time=when).state_details.scheduled_time == when
    with pytest.raises(ValueError, match="timezone-aware"):
        st.Scheduled(scheduled_time=dt.datetime(2030, 1, 1))


def test_paused_timeout_sets_pause_deadline():
    state = st.Paused(timeout_seconds=60)
    assert state.state_details.pause_timeout > st.now()


def test_predicates():
    assert st.Completed().is_completed() and st.Completed().is_final()
    assert st.Failed().is_failed() and st.Crashed().is_crashed()
    assert st.Cancelled().is_cancelled() and st.Cancelling().is_cancelling()
    assert st.Paused().is_paused() and st.Pending().is_pending()
    assert st.Running().is_running() and st.Scheduled().is_scheduled()
    assert not st.Running().is_final()


def test_result_raises_stored_exception_or_returns_it():
    exc = KeyError("k")
    state = st.Failed(data=exc)
    with pytest.raises(KeyError):
        state.result()
    assert state.result(raise_on_failure=False) is exc


@pytest.mark.parametrize(
    ("ctor", "error"),
    [(st.Failed, FailedRun), (st.Crashed, CrashedRun), (st.Cancelled, CancelledRun)],
)
def test_failed_state_without_exception_raises_run_errors(ctor, error):
    with pytest.raises(error):
        ctor(message="why").result()
    assert isinstance(st.get_state_exception(ctor()), error)
    with pytest.raises(error):
        st.raise_state_exception(ctor())


def test_raise_state_exception_is_silent_for_completed():
    assert st.raise_state_exception(st.Completed()) is None


def test_result_of_unfinished_state():
    with pytest.raises(UnfinishedRun):
        st.Running().result()


def test_result_in_async_code_is_awaitable():
    async def main():
        return await st.Completed(data=3).result()

    assert asyncio.run(main()) == 3


def test_exception_of_a_state_holding_failed_states():
    inner = st.Failed(data=ValueError("inner"))
    outer = st.Failed(data=[st.Completed(data=1), inner])
    assert isinstance(st.get_state_exception(outer), ValueError)


def test_retry_delays():
    assert st.resolve_retry_delays(None, 3) == 0.0
    assert st.resolve_retry_delays(2, 3) == 2.0
    assert st.resolve_retry_delays([1, 2], 3) == [1.0, 2.0]
    assert st.resolve_retry_delays(st.exponential_backoff(1), 3) == [1, 2, 4]
    assert st.retry_delay([1.0, 2.0], 1, None) == 1.0
    # A list shorter than the retries repeats its last delay.
    assert st.retry_delay([1.0, 2.0], 5, None) == 2.0
    with pytest.raises(ValueError, match="-1"):
        st.resolve_retry_delays(-1, 1)
    with pytest.raises(TypeError, match="retry_delay_seconds"):
        st.resolve_retry_delays("soon", 1)


def test_jitter_stays_within_its_band():
    for _ in range(200):
        delay = st.retry_delay(10.0, 1, 0.5)
        assert 5.0 <= delay <= 15.0


def test_exception_to_state():
    failed = st.failed_from_exception(ValueError("v"), "Task run")
    assert failed.is_failed() and "ValueError: v" in (failed.message or "")
    crashed = st.failed_from_exception(KeyboardInterrupt(), "Flow run")
    assert crashed.is_crashed()
    timed = st.timed_out("Task run", 1.5, TimeoutError())
    assert (timed.type, timed.name) == (st.StateType.FAILED, "TimedOut")


def test_str_is_prefects_short_form_for_log_lines():
    from millstream._engine.model.states import (
        AwaitingRetry,
        Completed,
        Failed,
        Pending,
        State,
        StateType,
    )

    assert str(Completed()) == "Completed()"
    assert str(Completed(message="")) == "Completed()"
    assert str(Failed(message="Task run encountered an exception ValueError: boom")) == (
        "Failed('Task run encountered an exception ValueError: boom')"
    )
    assert str(State(type=StateType.COMPLETED, name="Cached")) == "Cached(type=COMPLETED)"
    assert str(Failed(name="TimedOut", message="slow")) == "TimedOut('slow', type=FAILED)"
    assert str(AwaitingRetry()) == "AwaitingRetry(type=SCHEDULED)"
    assert str(Pending(name="NotReady", message="m")) == "NotReady('m', type=PENDING)"
    # repr stays the full form
    assert repr(Completed(data=1)) == "Completed(message=None, type=COMPLETED, result=1)"


def test_failed_states_from_exceptions_keep_their_traceback():
    from millstream._engine.model.states import (
        crashed_from_exception,
        failed_from_exception,
        format_traceback,
    )

    def boom() -> None:
        raise ValueError("boom")

    try:
        boom()
    except ValueError as exc:
        state = failed_from_exception(exc, "Task run")
    tb = state.state_details.traceback
    assert tb is not None and tb.endswith("ValueError: boom") and "in boom" in tb
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        crashed = crashed_from_exception(exc, "Flow run")
    assert crashed.state_details.traceback is not None
    assert crashed.state_details.traceback.endswith("KeyboardInterrupt")
    # A runaway traceback keeps its head and its tail, bounded.
    try:
        raise ValueError("x" * 100_000)
    except ValueError as exc:
        long = format_traceback(exc)
    assert len(long) < 17_000 and "characters of the traceback left out" in long
