"""Filters for client reads, under Prefect's names (``FlowRunFilter(state=...)``, …)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from engine.states import StateType


class _Filter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the filter objects."""


class FlowFilterId(_Filter):
    any_: list[uuid.UUID] | None = None


class FlowFilterName(_Filter):
    any_: list[str] | None = None
    like_: str | None = None


class FlowFilter(_Filter):
    """Which flows: by id or name."""

    id: FlowFilterId | None = None
    name: FlowFilterName | None = None


class FlowRunFilterId(_Filter):
    any_: list[uuid.UUID] | None = None
    not_any_: list[uuid.UUID] | None = None


class FlowRunFilterName(_Filter):
    any_: list[str] | None = None
    like_: str | None = None


class FlowRunFilterTags(_Filter):
    all_: list[str] | None = None
    any_: list[str] | None = None
    is_null_: bool | None = None


class FlowRunFilterStateType(_Filter):
    any_: list[StateType] | None = None
    not_any_: list[StateType] | None = None


class FlowRunFilterStateName(_Filter):
    any_: list[str] | None = None
    not_any_: list[str] | None = None


class FlowRunFilterState(_Filter):
    type: FlowRunFilterStateType | None = None
    name: FlowRunFilterStateName | None = None


class FlowRunFilterStartTime(_Filter):
    before_: dt.datetime | None = None
    after_: dt.datetime | None = None
    is_null_: bool | None = None


class FlowRunFilterExpectedStartTime(_Filter):
    before_: dt.datetime | None = None
    after_: dt.datetime | None = None


class FlowRunFilterParentFlowRunId(_Filter):
    any_: list[uuid.UUID] | None = None


class FlowRunFilterDeploymentId(_Filter):
    any_: list[uuid.UUID] | None = None
    is_null_: bool | None = None


class FlowRunFilter(_Filter):
    """Which flow runs: by id, name, tags, state, start time, parent, deployment."""

    id: FlowRunFilterId | None = None
    name: FlowRunFilterName | None = None
    tags: FlowRunFilterTags | None = None
    state: FlowRunFilterState | None = None
    start_time: FlowRunFilterStartTime | None = None
    expected_start_time: FlowRunFilterExpectedStartTime | None = None
    parent_flow_run_id: FlowRunFilterParentFlowRunId | None = None
    deployment_id: FlowRunFilterDeploymentId | None = None


class TaskRunFilterId(_Filter):
    any_: list[uuid.UUID] | None = None


class TaskRunFilterName(_Filter):
    any_: list[str] | None = None
    like_: str | None = None


class TaskRunFilterStateType(_Filter):
    any_: list[StateType] | None = None


class TaskRunFilterState(_Filter):
    type: TaskRunFilterStateType | None = None
    name: FlowRunFilterStateName | None = None


class TaskRunFilterFlowRunId(_Filter):
    any_: list[uuid.UUID] | None = None
    is_null_: bool | None = None


class TaskRunFilterStartTime(_Filter):
    before_: dt.datetime | None = None
    after_: dt.datetime | None = None


class TaskRunFilter(_Filter):
    """Which task runs: by id, name, state, flow run, start time."""

    id: TaskRunFilterId | None = None
    name: TaskRunFilterName | None = None
    state: TaskRunFilterState | None = None
    flow_run_id: TaskRunFilterFlowRunId | None = None
    start_time: TaskRunFilterStartTime | None = None


class DeploymentFilterId(_Filter):
    any_: list[uuid.UUID] | None = None


class DeploymentFilter(_Filter):
    """Which deployments (flow runs are matched on their deployment id)."""

    id: DeploymentFilterId | None = None


class LogFilterFlowRunId(_Filter):
    any_: list[uuid.UUID] | None = None


class LogFilterTaskRunId(_Filter):
    any_: list[uuid.UUID] | None = None


class LogFilterLevel(_Filter):
    ge_: int | None = None
    le_: int | None = None


class LogFilter(_Filter):
    """Which log lines: by flow run, task run, level."""

    flow_run_id: LogFilterFlowRunId | None = None
    task_run_id: LogFilterTaskRunId | None = None
    level: LogFilterLevel | None = None


__all__ = [
    "DeploymentFilter",
    "DeploymentFilterId",
    "FlowFilter",
    "FlowFilterId",
    "FlowFilterName",
    "FlowRunFilter",
    "FlowRunFilterDeploymentId",
    "FlowRunFilterExpectedStartTime",
    "FlowRunFilterId",
    "FlowRunFilterName",
    "FlowRunFilterParentFlowRunId",
    "FlowRunFilterStartTime",
    "FlowRunFilterState",
    "FlowRunFilterStateName",
    "FlowRunFilterStateType",
    "FlowRunFilterTags",
    "LogFilter",
    "LogFilterFlowRunId",
    "LogFilterLevel",
    "LogFilterTaskRunId",
    "TaskRunFilter",
    "TaskRunFilterFlowRunId",
    "TaskRunFilterId",
    "TaskRunFilterName",
    "TaskRunFilterStartTime",
    "TaskRunFilterState",
    "TaskRunFilterStateType",
]
