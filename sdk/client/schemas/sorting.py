"""Sort orders for client reads, under Prefect's names (``FlowRunSort.START_TIME_DESC``, …)."""

from __future__ import annotations

import enum


class FlowRunSort(enum.StrEnum):
    """How flow runs are ordered (without a sort: newest first)."""

    ID_DESC = "ID_DESC"
    START_TIME_ASC = "START_TIME_ASC"
    START_TIME_DESC = "START_TIME_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    NEXT_SCHEDULED_START_TIME_ASC = "NEXT_SCHEDULED_START_TIME_ASC"
    END_TIME_DESC = "END_TIME_DESC"


class TaskRunSort(enum.StrEnum):
    """How task runs are ordered (without a sort: newest first)."""

    ID_DESC = "ID_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    NEXT_SCHEDULED_START_TIME_ASC = "NEXT_SCHEDULED_START_TIME_ASC"
    END_TIME_DESC = "END_TIME_DESC"
    DURATION_DESC = "DURATION_DESC"
    DURATION_ASC = "DURATION_ASC"


class FlowSort(enum.StrEnum):
    """How flows are ordered (without a sort: by name)."""

    CREATED_DESC = "CREATED_DESC"
    UPDATED_DESC = "UPDATED_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"


class LogSort(enum.StrEnum):
    """How log lines are ordered (without a sort: in the order they were recorded)."""

    TIMESTAMP_ASC = "TIMESTAMP_ASC"
    TIMESTAMP_DESC = "TIMESTAMP_DESC"


class ArtifactSort(enum.StrEnum):
    """How artifacts are ordered (without a sort: newest first)."""

    CREATED_DESC = "CREATED_DESC"
    UPDATED_DESC = "UPDATED_DESC"
    ID_DESC = "ID_DESC"
    KEY_DESC = "KEY_DESC"
    KEY_ASC = "KEY_ASC"


# The newest artifact of each key sorts the same ways.
ArtifactCollectionSort = ArtifactSort

__all__ = [
    "ArtifactCollectionSort",
    "ArtifactSort",
    "FlowRunSort",
    "FlowSort",
    "LogSort",
    "TaskRunSort",
]
