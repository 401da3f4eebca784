"""Filters for client reads, under Prefect's names (``FlowRunFilter(state=...)``, …).

Each filter narrows a read; criteria left at None add nothing, and all the criteria given (in
one filter and across the filters of one read) must match. Ids may be UUIDs or their strings.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from millstream._engine.model.states import StateType

Ids = Sequence[uuid.UUID | str]


class _Filter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the filter objects: keyword-only, and unknown names are rejected."""


class FlowFilterId(_Filter):
    """Flows whose id is any of ``any_``."""

    any_: Ids | None = None


class FlowFilterName(_Filter):
    """Flows whose name is any of ``any_``, or contains ``like_`` (any case)."""

    any_: Sequence[str] | None = None
    like_: str | None = None


class FlowFilter(_Filter):
    """Which flows (for run reads: runs of which flows): by id or name.

    ``tags`` is accepted for Prefect compatibility; flows carry no tags in Millstream, so
    using it raises ``NotSupportedError``.
    """

    id: FlowFilterId | None = None
    name: FlowFilterName | None = None
    tags: Any = None


class FlowRunFilterId(_Filter):
    """Flow runs whose id is any of ``any_`` and none of ``not_any_``."""

    any_: Ids | None = None
    not_any_: Ids | None = None


class FlowRunFilterName(_Filter):
    """Flow runs whose name is any of ``any_``, or contains ``like_`` (any case)."""

    any_: Sequence[str] | None = None
    like_: str | None = None


class FlowRunFilterTags(_Filter):
    """Flow runs carrying all of ``all_``, any of ``any_``; ``is_null_``: no tags at all."""

    all_: Sequence[str] | None = None
    any_: Sequence[str] | None = None
    is_null_: bool | None = None


class FlowRunFilterDeploymentId(_Filter):
    """Flow runs of any of the deployments ``any_``; ``is_null_``: not from a deployment."""

    any_: Ids | None = None
    is_null_: bool | None = None


class FlowRunFilterStateType(_Filter):
    """Flow runs whose current state type is any of ``any_`` and none of ``not_any_``."""

    any_: Sequence[StateType] | None = None
    not_any_: Sequence[StateType] | None = None


class FlowRunFilterStateName(_Filter):
    """Flow runs whose current state name (``"Late"``, ``"Retrying"``…) is any of ``any_``
    and none of ``not_any_``."""

    any_: Sequence[str] | None = None
    not_any_: Sequence[str] | None = None


class FlowRunFilterState(_Filter):
    """Flow runs by their current state: type and/or name."""

    type: FlowRunFilterStateType | None = None
    name: FlowRunFilterStateName | None = None


class FlowRunFilterFlowVersion(_Filter):
    """Flow runs of any of the flow versions ``any_``."""

    any_: Sequence[str] | None = None


class FlowRunFilterStartTime(_Filter):
    """Flow runs that started at or before ``before_`` / at or after ``after_``;
    ``is_null_``: never started."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None
    is_null_: bool | None = None


class FlowRunFilterEndTime(_Filter):
    """Flow runs that ended at or before ``before_`` / at or after ``after_``;
    ``is_null_``: not ended."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None
    is_null_: bool | None = None


class FlowRunFilterExpectedStartTime(_Filter):
    """Flow runs expected to start in a window (a run called directly was expected when it
    was created)."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None


class FlowRunFilterNextScheduledStartTime(_Filter):
    """Scheduled flow runs due in a window."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None


class FlowRunFilterParentFlowRunId(_Filter):
    """Subflow runs of any of the flow runs ``any_``."""

    any_: Ids | None = None


class FlowRunFilterParentTaskRunId(_Filter):
    """Subflow runs started by any of the task runs ``any_``; ``is_null_``: runs not started
    by a task run."""

    any_: Ids | None = None
    is_null_: bool | None = None


class FlowRunFilterIdempotencyKey(_Filter):
    """Flow runs whose idempotency key is any of ``any_`` and none of ``not_any_``."""

    any_: Sequence[str] | None = None
    not_any_: Sequence[str] | None = None


class FlowRunFilter(_Filter):
    """Which flow runs: by id, name, tags, state, times, lineage, deployment.

    ``work_queue_name`` and ``created_by`` are accepted for Prefect compatibility; they name
    server concepts, so using them raises ``NotSupportedError``.
    """

    id: FlowRunFilterId | None = None
    name: FlowRunFilterName | None = None
    tags: FlowRunFilterTags | None = None
    deployment_id: FlowRunFilterDeploymentId | None = None
    state: FlowRunFilterState | None = None
    flow_version: FlowRunFilterFlowVersion | None = None
    start_time: FlowRunFilterStartTime | None = None
    end_time: FlowRunFilterEndTime | None = None
    expected_start_time: FlowRunFilterExpectedStartTime | None = None
    next_scheduled_start_time: FlowRunFilterNextScheduledStartTime | None = None
    parent_flow_run_id: FlowRunFilterParentFlowRunId | None = None
    parent_task_run_id: FlowRunFilterParentTaskRunId | None = None
    idempotency_key: FlowRunFilterIdempotencyKey | None = None
    work_queue_name: Any = None
    created_by: Any = None


class TaskRunFilterId(_Filter):
    """Task runs whose id is any of ``any_``."""

    any_: Ids | None = None


class TaskRunFilterName(_Filter):
    """Task runs whose name is any of ``any_``, or contains ``like_`` (any case)."""

    any_: Sequence[str] | None = None
    like_: str | None = None


class TaskRunFilterTags(_Filter):
    """Task runs carrying all of ``all_``; ``is_null_``: no tags at all."""

    all_: Sequence[str] | None = None
    is_null_: bool | None = None


class TaskRunFilterStateType(_Filter):
    """Task runs whose current state type is any of ``any_``."""

    any_: Sequence[StateType] | None = None


class TaskRunFilterStateName(_Filter):
    """Task runs whose current state name is any of ``any_``."""

    any_: Sequence[str] | None = None


class TaskRunFilterState(_Filter):
    """Task runs by their current state: type and/or name."""

    type: TaskRunFilterStateType | None = None
    name: TaskRunFilterStateName | None = None


class TaskRunFilterStartTime(_Filter):
    """Task runs that started in a window; ``is_null_``: never started."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None
    is_null_: bool | None = None


class TaskRunFilterEndTime(_Filter):
    """Task runs that ended in a window; ``is_null_``: not ended."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None
    is_null_: bool | None = None


class TaskRunFilterSubFlowRuns(_Filter):
    """Task runs that started a subflow run (``exists_=True``) or did not (False)."""

    exists_: bool | None = None


class TaskRunFilterFlowRunId(_Filter):
    """Task runs of any of the flow runs ``any_``; ``is_null_``: run outside any flow."""

    any_: Ids | None = None
    is_null_: bool | None = None


class TaskRunFilter(_Filter):
    """Which task runs: by id, name, tags, state, times, subflows, flow run."""

    id: TaskRunFilterId | None = None
    name: TaskRunFilterName | None = None
    tags: TaskRunFilterTags | None = None
    state: TaskRunFilterState | None = None
    start_time: TaskRunFilterStartTime | None = None
    end_time: TaskRunFilterEndTime | None = None
    subflow_runs: TaskRunFilterSubFlowRuns | None = None
    flow_run_id: TaskRunFilterFlowRunId | None = None


class DeploymentFilterId(_Filter):
    """Deployments whose id is any of ``any_`` and none of ``not_any_``."""

    any_: Ids | None = None
    not_any_: Ids | None = None


class DeploymentFilterName(_Filter):
    """Deployments whose own name (not the flow's) is any of ``any_``, or contains ``like_``
    (any case)."""

    any_: Sequence[str] | None = None
    like_: str | None = None


class DeploymentFilterTags(_Filter):
    """Deployments carrying all of ``all_``, any of ``any_``; ``is_null_``: no tags."""

    all_: Sequence[str] | None = None
    any_: Sequence[str] | None = None
    is_null_: bool | None = None


class DeploymentFilter(_Filter):
    """Which deployments (for run reads: runs of which deployments): by id, name, tags.

    ``work_queue_name`` and ``concurrency_limit`` are accepted for Prefect compatibility;
    they name server concepts, so using them raises ``NotSupportedError``.
    """

    id: DeploymentFilterId | None = None
    name: DeploymentFilterName | None = None
    tags: DeploymentFilterTags | None = None
    work_queue_name: Any = None
    concurrency_limit: Any = None


class LogFilterLevel(_Filter):
    """Log lines at level ``ge_`` or above and ``le_`` or below (``logging.INFO`` is 20)."""

    ge_: int | None = None
    le_: int | None = None


class LogFilterTimestamp(_Filter):
    """Log lines written at or before ``before_`` / at or after ``after_``."""

    before_: dt.datetime | None = None
    after_: dt.datetime | None = None


class LogFilterFlowRunId(_Filter):
    """Log lines of any of the flow runs ``any_``."""

    any_: Ids | None = None


class LogFilterTaskRunId(_Filter):
    """Log lines of any of the task runs ``any_``; ``is_null_``: not from a task run."""

    any_: Ids | None = None
    is_null_: bool | None = None


class LogFilterTextSearch(_Filter):
    """Log lines whose message contains ``query`` (any case)."""

    query: str | None = None


class LogFilter(_Filter):
    """Which log lines: by level, time, flow run, task run, text."""

    level: LogFilterLevel | None = None
    timestamp: LogFilterTimestamp | None = None
    flow_run_id: LogFilterFlowRunId | None = None
    task_run_id: LogFilterTaskRunId | None = None
    text: LogFilterTextSearch | None = None


# -- artifacts ------------------------------------------------------------------------------
class ArtifactFilterId(_Filter):
    """Artifacts whose id is any of ``any_``."""

    any_: Ids | None = None


class ArtifactFilterKey(_Filter):
    """Artifacts whose key is any of ``any_``, matches the SQL pattern ``like_`` (``%`` and
    ``_`` as wildcards), or (``exists_``) has a key at all."""

    any_: Sequence[str] | None = None
    like_: str | None = None
    exists_: bool | None = None


class ArtifactFilterFlowRunId(_Filter):
    """Artifacts of any of these flow runs."""

    any_: Ids | None = None


class ArtifactFilterTaskRunId(_Filter):
    """Artifacts of any of these task runs."""

    any_: Ids | None = None


class ArtifactFilterType(_Filter):
    """Artifacts of any of the types ``any_`` and none of ``not_any_``."""

    any_: Sequence[str] | None = None
    not_any_: Sequence[str] | None = None


class ArtifactFilter(_Filter):
    """Which artifacts: by id, key, run or type."""

    id: ArtifactFilterId | None = None
    key: ArtifactFilterKey | None = None
    flow_run_id: ArtifactFilterFlowRunId | None = None
    task_run_id: ArtifactFilterTaskRunId | None = None
    type: ArtifactFilterType | None = None


class ArtifactCollectionFilterLatestId(_Filter):
    """Keys whose newest artifact is any of ``any_``."""

    any_: Ids | None = None


class ArtifactCollectionFilter(_Filter):
    """Which keys' newest artifacts: by the newest's id, key, run or type."""

    latest_id: ArtifactCollectionFilterLatestId | None = None
    key: ArtifactFilterKey | None = None
    flow_run_id: ArtifactFilterFlowRunId | None = None
    task_run_id: ArtifactFilterTaskRunId | None = None
    type: ArtifactFilterType | None = None


__all__ = [
    "ArtifactCollectionFilter",
    "ArtifactCollectionFilterLatestId",
    "ArtifactFilter",
    "ArtifactFilterFlowRunId",
    "ArtifactFilterId",
    "ArtifactFilterKey",
    "ArtifactFilterTaskRunId",
    "ArtifactFilterType",
    "DeploymentFilter",
    "DeploymentFilterId",
    "DeploymentFilterName",
    "DeploymentFilterTags",
    "FlowFilter",
    "FlowFilterId",
    "FlowFilterName",
    "FlowRunFilter",
    "FlowRunFilterDeploymentId",
    "FlowRunFilterEndTime",
    "FlowRunFilterExpectedStartTime",
    "FlowRunFilterFlowVersion",
    "FlowRunFilterId",
    "FlowRunFilterIdempotencyKey",
    "FlowRunFilterName",
    "FlowRunFilterNextScheduledStartTime",
    "FlowRunFilterParentFlowRunId",
    "FlowRunFilterParentTaskRunId",
    "FlowRunFilterStartTime",
    "FlowRunFilterState",
    "FlowRunFilterStateName",
    "FlowRunFilterStateType",
    "FlowRunFilterTags",
    "LogFilter",
    "LogFilterFlowRunId",
    "LogFilterLevel",
    "LogFilterTaskRunId",
    "LogFilterTextSearch",
    "LogFilterTimestamp",
    "TaskRunFilter",
    "TaskRunFilterEndTime",
    "TaskRunFilterFlowRunId",
    "TaskRunFilterId",
    "TaskRunFilterName",
    "TaskRunFilterStartTime",
    "TaskRunFilterState",
    "TaskRunFilterStateName",
    "TaskRunFilterStateType",
    "TaskRunFilterSubFlowRuns",
    "TaskRunFilterTags",
]
