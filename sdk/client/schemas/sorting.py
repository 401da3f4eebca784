"""Sort orders for client reads, under Prefect's names."""

from __future__ import annotations

import enum


class FlowRunSort(enum.StrEnum):
    """How flow runs are ordered."""

    ID_DESC = "ID_DESC"
    START_TIME_ASC = "START_TIME_ASC"
    START_TIME_DESC = "START_TIME_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    END_TIME_DESC = "END_TIME_DESC"


class TaskRunSort(enum.StrEnum):
    """How task runs are ordered."""

    ID_DESC = "ID_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    END_TIME_DESC = "END_TIME_DESC"


class LogSort(enum.StrEnum):
    """How log lines are ordered."""

    TIMESTAMP_ASC = "TIMESTAMP_ASC"
    TIMESTAMP_DESC = "TIMESTAMP_DESC"


__all__ = ["FlowRunSort", "LogSort", "TaskRunSort"]
