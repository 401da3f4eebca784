"""The pure state machine: the State record, its constructors, and every transition decision."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

# The engine's clock (real unless a test installs one): every recorded timestamp uses it.
from millstream._engine.clock import now as now
from millstream._engine.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    PausedRun,
    UnfinishedRun,
)
from millstream._engine.model.ids import new_id, rng


class StateType(enum.StrEnum):
    """The type of a state; named states (Cached, Retrying, …) share one of these."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"

    def __str__(self) -> str:
        return self.value


_DEFAULT_NAMES = {t: t.value.capitalize() for t in StateType}

TERMINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


class StateDetails(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Facts attached to a state: which run it belongs to, when it is scheduled, its cache key."""

    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None
    child_flow_run_id: uuid.UUID | None = None
    scheduled_time: dt.datetime | None = None
    cache_key: str | None = None
    cache_expiration: dt.datetime | None = None
    retriable: bool | None = None
    refresh_cache: bool | None = None
    pause_timeout: dt.datetime | None = None
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    untrackable_result: bool = False
    # The formatted traceback of the exception a Failed or Crashed state was made from: kept
    # with the state (and its stored row) so the failure can be read back after the process.
    traceback: str | None = None


# types.GenericAlias, reached without importing ``types`` (the model imports only pure modules).
_GenericAlias: Any = type(list[int])


class State(msgspec.Struct, kw_only=True):
    """One state of a flow or task run.

    ``data`` holds the live result while the run is in memory (the return value, or the
    exception for a failed run); a state read back from the database holds a result reference
    that ``result()`` decodes.
    """

    type: StateType
    name: str | None = None
    message: str | None = None
    timestamp: dt.datetime = msgspec.field(default_factory=now)
    data: Any = None
    state_details: StateDetails = msgspec.field(default_factory=StateDetails)
    id: uuid.UUID = msgspec.field(default_factory=new_id)

    def __post_init__(self) -> None:
        if type(self.type) is not StateType:
            self.type = StateType(self.type)
        if self.name is None:
            self.name = _DEFAULT_NAMES[self.type]

    # Hashable as in Prefect (by run ids, timestamp and type), and subscriptable for
    # annotations: ``State[int]``.
    def __hash__(self) -> int:
        details = self.state_details
        return hash((details.flow_run_id, details.task_run_id, self.timestamp, self.type))

    def __class_getitem__(cls, item: Any) -> Any:
        return _GenericAlias(cls, item)

    # -- predicates ---------------------------------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_TYPES

    # -- results ------------------------------------------------------------------------------
    def result(
        self, raise_on_failure: bool = True, fetch: bool = True, _sync: bool | None = None
    ) -> Any:
        """The state's result; raises the stored exception for a failed state.

        In async code (an async run's body, or a running event loop outside runs) it returns a
        coroutine to ``await``, as Prefect 3 does; in a sync run's body it returns the value
        even when its thread runs a loop. ``_sync=True``/``False`` forces one form and
        ``aresult()`` is the explicit async form.
        """
        if not (async_context() if _sync is None else not _sync):
            return state_result(self, raise_on_failure)
        return self.aresult(raise_on_failure=raise_on_failure)

    async def aresult(self, raise_on_failure: bool = True, fetch: bool = True) -> Any:
        """The state's result, in async code."""
        return state_result(self, raise_on_failure)

    def copy(self, **updates: Any) -> State:
        """A copy of this state with a new id and the given fields replaced."""
        fields = {f: getattr(self, f) for f in self.__struct_fields__ if f != "id"}
        fields.update(updates)
        return State(**fields)

    def __repr__(self) -> str:
        shown = _short_repr(self.data)
        return f"{self.name}(message={self.message!r}, type={self.type.value}, result={shown})"

    def __str__(self) -> str:
        """The short form Prefect logs: ``Completed()``, ``Failed('message')``,
        ``Cached(type=COMPLETED)``."""
        shown = [repr(self.message)] if self.message else []
        if self.name is not None and self.name.lower() != self.type.value.lower():
            shown.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(shown)})"


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# Whether a sync-compatible call here returns a coroutine. Orchestration installs the
# run-aware rule (``orchestrate.context.in_async_context``) when it is imported; the model
# cannot see runs itself.
async_context: Callable[[], bool] = _loop_running


def _short_repr(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 200 else text[:197] + "..."


class ResultLoader:
    """Loads a persisted result on demand; states read back from the database hold one."""

    def load(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _resolve_data(data: Any) -> Any:
    if isinstance(data, ResultLoader):
        return data.load()
    return data


_FAILED_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


def state_result(state: State, raise_on_failure: bool = True) -> Any:
    """The value of ``state``, or its exception (raised, or returned when not raising), by
    Prefect's rules: a paused or unfinished run has no result; a failed run's result, when not
    raising, is its data (its exception, or the states it returned)."""
    kind = state.type
    if kind is StateType.COMPLETED:
        data = state.data
        if data is None and _made_by_hand(state):
            raise MissingResult(
                "State data is missing. Typically, this occurs when result persistence is "
                "disabled and the state has been retrieved from the API."
            )
        return data.load() if isinstance(data, ResultLoader) else data
    if kind in _FAILED_TYPES:
        if raise_on_failure:
            raise get_state_exception(state)
        data = _resolve_data(state.data)
        return get_state_exception(state) if data is None else data
    if kind is StateType.PAUSED:
        exc: BaseException = PausedRun("Run is paused, its result is not available.")
    else:
        exc = UnfinishedRun(f"Run is in {kind.value} state, its result is not available.")
    if raise_on_failure:
        raise exc
    return exc


def raise_interrupt(state: State) -> State:
    """``state``, unless it is a run crashed by an interrupt (KeyboardInterrupt, SystemExit, a
    termination signal): that is raised, as Prefect does even for ``return_state=True``."""
    if state.type is StateType.CRASHED:
        data = state.data
        if isinstance(data, BaseException) and not isinstance(
            data, Exception | asyncio.CancelledError
        ):
            raise data
    return state


def _made_by_hand(state: State) -> bool:
    # A state no run recorded: a run's own Completed state with no data means None.
    details = state.state_details
    return details.task_run_id is None and details.flow_run_id is None


def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (Prefect's rules: its
    exception; a string or no data becomes FailedRun/CrashedRun/CancelledRun; returned states
    give the first failed one's)."""
    if state.type not in _FAILED_TYPES:
        raise ValueError(f"Expected failed or crashed state got {state!r}.")
    wrapper, default = _WRAPPERS[state.type]
    data = _resolve_data(state.data)
    if isinstance(data, BaseException):
        return data
    if isinstance(data, str):
        return wrapper(data)
    if isinstance(data, State):
        return get_state_exception(data)
    if isinstance(data, list | tuple | set) and data and all(isinstance(s, State) for s in data):
        for inner in data:
            if inner.type in _FAILED_TYPES:
                return get_state_exception(inner)
        raise ValueError("Failed state result was an iterable of states but none were failed.")
    return wrapper(state.message or default)


_WRAPPERS: dict[StateType, tuple[type[BaseException], str]] = {
    StateType.FAILED: (FailedRun, "Run failed."),
    StateType.CRASHED: (CrashedRun, "Run crashed."),
    StateType.CANCELLED: (CancelledRun, "Run cancelled."),
}


def raise_state_exception(state: State) -> None:
    """Raise the exception of a failed, crashed or cancelled state; do nothing otherwise."""
    if state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        raise get_state_exception(state)


# -- constructors -----------------------------------------------------------------------------
def _make(type_: StateType, default_name: str | None, cls_kwargs: dict[str, Any]) -> State:
    if default_name is not None and cls_kwargs.get("name") is None:
        cls_kwargs["name"] = default_name
    details = cls_kwargs.pop("state_details", None)
    if isinstance(details, dict):
        details = StateDetails(**details)
    return State(type=type_, state_details=details or StateDetails(), **cls_kwargs)


def Completed(**kwargs: Any) -> State:
    """A Completed state."""
    return _make(StateType.COMPLETED, None, kwargs)


def Running(**kwargs: Any) -> State:
    """A Running state."""
    return _make(StateType.RUNNING, None, kwargs)


def Failed(**kwargs: Any) -> State:
    """A Failed state."""
    return _make(StateType.FAILED, None, kwargs)


def Crashed(**kwargs: Any) -> State:
    """A Crashed state."""
    return _make(StateType.CRASHED, None, kwargs)


def Cancelled(**kwargs: Any) -> State:
    """A Cancelled state."""
    return _make(StateType.CANCELLED, None, kwargs)


def Cancelling(**kwargs: Any) -> State:
    """A Cancelling state."""
    return _make(StateType.CANCELLING, None, kwargs)


def Pending(**kwargs: Any) -> State:
    """A Pending state."""
    return _make(StateType.PENDING, None, kwargs)


def Paused(
    timeout_seconds: float | None = None,
    pause_expiration_time: dt.datetime | None = None,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State:
    """A Paused state, optionally with the time it stops waiting."""
    state = _make(StateType.PAUSED, None, kwargs)
    if timeout_seconds is not None and pause_expiration_time is not None:
        raise ValueError("Give at most one of timeout_seconds and pause_expiration_time")
    if timeout_seconds is not None:
        pause_expiration_time = now() + dt.timedelta(seconds=timeout_seconds)
    if pause_expiration_time is not None:
        state.state_details.pause_timeout = pause_expiration_time
    if pause_key is not None:
        state.state_details.pause_key = pause_key
    return state


def Suspended(**kwargs: Any) -> State:
    """A Suspended state (a Paused state that releases its process)."""
    kwargs.setdefault("name", "Suspended")
    return Paused(**kwargs)


def Scheduled(scheduled_time: dt.datetime | None = None, **kwargs: Any) -> State:
    """A Scheduled state for ``scheduled_time`` (now if not given)."""
    state = _make(StateType.SCHEDULED, None, kwargs)
    if scheduled_time is not None and scheduled_time.tzinfo is None:
        raise ValueError(f"scheduled_time must be timezone-aware, got {scheduled_time!r}")
    state.state_details.scheduled_time = (
        scheduled_time or state.state_details.scheduled_time or now()
    )
    return state


def AwaitingRetry(scheduled_time: dt.datetime | None = None, **kwargs: Any) -> State:
    """A Scheduled state named AwaitingRetry: the run waits for its retry delay."""
    kwargs.setdefault("name", "AwaitingRetry")
    return Scheduled(scheduled_time=scheduled_time, **kwargs)


def AwaitingConcurrencySlot(scheduled_time: dt.datetime | None = None, **kwargs: Any) -> State:
    """A Scheduled state named AwaitingConcurrencySlot."""
    kwargs.setdefault("name", "AwaitingConcurrencySlot")
    return Scheduled(scheduled_time=scheduled_time, **kwargs)


def Late(scheduled_time: dt.datetime | None = None, **kwargs: Any) -> State:
    """A Scheduled state named Late: its scheduled time has passed."""
    kwargs.setdefault("name", "Late")
    return Scheduled(scheduled_time=scheduled_time, **kwargs)


def Retrying(**kwargs: Any) -> State:
    """A Running state named Retrying."""
    kwargs.setdefault("name", "Retrying")
    return Running(**kwargs)


# -- retry delays and failure states (the decisions are in model.transitions) ------------------
RetryDelay = float | Sequence[float] | Callable[[int], Any] | None


def resolve_retry_delays(retry_delay_seconds: Any, retries: int) -> float | list[float]:
    """Normalise ``retry_delay_seconds``: a callable is called with ``retries`` once."""
    value = retry_delay_seconds(retries) if callable(retry_delay_seconds) else retry_delay_seconds
    if value is None:
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"retry_delay_seconds must be >= 0, got {value!r}")
        return float(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        delays = [float(v) for v in value]
        if any(d < 0 for d in delays):
            raise ValueError(f"retry_delay_seconds must be >= 0, got {value!r}")
        if len(delays) > 50:
            raise ValueError("Can not configure more than 50 retry delays per task.")
        return delays
    raise TypeError(
        f"retry_delay_seconds must be a number, a list of numbers or a callable, got {value!r}"
    )


def retry_delay(delays: float | list[float], attempt: int, jitter_factor: float | None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based), jitter included."""
    if isinstance(delays, list):
        if not delays:
            base = 0.0
        else:
            base = delays[min(attempt, len(delays)) - 1]
    else:
        base = delays
    if jitter_factor:
        # Spread around the configured delay, never below zero, at most (1 + factor) times it.
        base = rng.uniform(max(0.0, base * (1 - jitter_factor)), base * (1 + jitter_factor))
    return base


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """A ``retry_delay_seconds`` callable: ``retries -> [f, 2f, 4f, …]``."""
    if backoff_factor < 0:
        raise ValueError(f"backoff_factor must be >= 0, got {backoff_factor!r}")

    def retry_backoff_callable(retries: int) -> list[float]:
        # Prefect caps the list at 50 entries; so do we, to keep delays bounded.
        return [backoff_factor * 2**r for r in range(min(retries, 50))]

    return retry_backoff_callable


# A traceback longer than this keeps its head and its tail (where the error is), so that one
# runaway recursion cannot bloat every row that carries the state.
_TRACEBACK_MAX_CHARS = 16_000


def format_traceback(exc: BaseException) -> str:
    """``exc`` with its traceback as text (what a failed state keeps), bounded in size."""
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    if len(text) <= _TRACEBACK_MAX_CHARS:
        return text
    half = _TRACEBACK_MAX_CHARS // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n... ({cut} characters of the traceback left out) ...\n{text[-half:]}"


def failed_from_exception(exc: BaseException, kind: str) -> State:
    """The state a run body's exception turns into (``kind`` is "Task run" or "Flow run")."""
    if isinstance(exc, TimeoutError) and getattr(exc, "_millstream_timeout", False):
        return Failed(name="TimedOut", message=f"{kind} exceeded timeout of {exc}", data=exc)
    if not isinstance(exc, Exception):
        return crashed_from_exception(exc, kind)
    if kind == "Task run":
        message = f"Task run encountered an exception {type(exc).__name__}: {exc}"
    else:
        message = f"Flow run encountered an exception: {type(exc).__name__}: {exc}"
    state = Failed(message=message, data=exc)
    state.state_details.traceback = format_traceback(exc)
    return state


def crashed_from_exception(exc: BaseException, kind: str) -> State:
    """The state a BaseException (KeyboardInterrupt, SystemExit, a signal) turns into."""
    if isinstance(exc, asyncio.CancelledError):
        # Stopped from outside: its traceback is the runtime's, not the run's.
        return Crashed(message=f"{kind} was cancelled by the runtime environment.", data=exc)
    message = f"{kind} crashed: {type(exc).__name__}: {exc}".rstrip(": ")
    state = Crashed(message=message, data=exc)
    state.state_details.traceback = format_traceback(exc)
    return state


def timed_out(kind: str, seconds: float, exc: BaseException) -> State:
    """A Failed state named TimedOut for a run that exceeded ``seconds``."""
    return Failed(
        name="TimedOut", message=f"{kind} exceeded timeout of {seconds:g} second(s)", data=exc
    )
