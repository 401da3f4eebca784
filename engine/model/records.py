"""Records of what ran: flows, flow runs, task runs and log lines, as the store keeps them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from millstream._engine.model.states import State, StateType


class FlowRecord(msgspec.Struct, kw_only=True):
    """A flow known to the database (one row per flow name)."""

    id: uuid.UUID
    name: str
    created: dt.datetime | None = None


class _RunTimes:
    """What flow runs and task runs derive alike from their state and times."""

    __slots__ = ()
    state: State | None
    start_time: dt.datetime | None
    end_time: dt.datetime | None

    @property
    def state_type(self) -> StateType | None:
        """The type of the current state (None before the first state)."""
        return self.state.type if self.state is not None else None

    @property
    def state_name(self) -> str | None:
        """The name of the current state (None before the first state)."""
        return self.state.name if self.state is not None else None

    @property
    def total_run_time(self) -> dt.timedelta:
        """Time between start and end (zero while not started)."""
        if self.start_time is None:
            return dt.timedelta(0)
        end = self.end_time or dt.datetime.now(dt.UTC)
        return end - self.start_time


class FlowRun(msgspec.Struct, _RunTimes, kw_only=True):
    """One run of a flow: identity, inputs, lineage, timing and its current state."""

    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    flow_name: str
    flow_version: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: list[str] = msgspec.field(default_factory=list)
    parent_task_run_id: uuid.UUID | None = None
    parent_flow_run_id: uuid.UUID | None = None
    root_flow_run_id: uuid.UUID | None = None
    deployment_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    entrypoint: str | None = None
    run_count: int = 0
    state: State | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    expected_start_time: dt.datetime | None = None
    created: dt.datetime | None = None
    pid: int | None = None
    hostname: str | None = None
    heartbeat: dt.datetime | None = None
    # The parameters encoded type-faithfully (recovery re-runs the flow with them).
    parameters_blob: bytes | None = None
    # The lease epoch: raised by each claim of the run; writes of an older epoch are refused.
    epoch: int = 0


class TaskRun(msgspec.Struct, _RunTimes, kw_only=True):
    """One run of a task: its place in its flow run (task key, call index), inputs and state."""

    id: uuid.UUID
    name: str
    task_key: str
    task_name: str
    dynamic_key: str
    flow_run_id: uuid.UUID | None = None
    task_version: str | None = None
    cache_key: str | None = None
    cache_expiration: dt.datetime | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: list[str] = msgspec.field(default_factory=list)
    run_count: int = 0
    state: State | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    expected_start_time: dt.datetime | None = None
    created: dt.datetime | None = None
    # A digest of the task function's code (recovery reuses the result only for the same code).
    code_fingerprint: str | None = None
    # Upstream task runs whose futures or states were passed, by parameter ("wait_for" for
    # those waited for); stored with the run's row (None: no upstream runs, the usual case).
    input_links: dict[str, list[uuid.UUID]] | None = None

    @property
    def task_inputs(self) -> dict[str, list[TaskRunResult]]:
        """Prefect's ``task_inputs``: for each parameter, the upstream task runs it came from."""
        links = self.input_links or {}
        inputs = {
            name: [TaskRunResult(id=i) for i in links.get(name, ())] for name in self.parameters
        }
        if "wait_for" in links:
            inputs["wait_for"] = [TaskRunResult(id=i) for i in links["wait_for"]]
        return inputs


class TaskRunResult(msgspec.Struct, frozen=True, kw_only=True):
    """An upstream task run in ``TaskRun.task_inputs`` (Prefect's ``TaskRunResult``)."""

    input_type: str = "task_run"
    id: uuid.UUID


class LogRecord(msgspec.Struct, kw_only=True, array_like=True):
    """One log line of a run."""

    flow_run_id: uuid.UUID | None
    task_run_id: uuid.UUID | None
    level: int
    name: str
    message: str
    timestamp: dt.datetime
    id: int | None = None
    # The line's extra fields (``logger.info(..., extra={...})``, ``get_run_logger(**extra)``);
    # None when it has none.
    extra: dict[str, Any] | None = None
