"""Objects the client returns: flows, runs, states, log lines, variables; deployment options."""

import enum

import msgspec

from millstream._engine.model.artifacts import Artifact, ArtifactCollection
from millstream._engine.model.records import FlowRecord as Flow
from millstream._engine.model.records import FlowRun, LogRecord, TaskRun, TaskRunResult
from millstream._engine.model.states import State, StateDetails, StateType
from millstream.variables import Variable

# Prefect calls a log line a Log.
Log = LogRecord


class ConcurrencyLimitStrategy(enum.StrEnum):
    """What a deployment run over its deployment's concurrency limit does."""

    ENQUEUE = "ENQUEUE"  # wait for a slot (Prefect's default)
    CANCEL_NEW = "CANCEL_NEW"  # the new run is cancelled


class ConcurrencyLimitConfig(msgspec.Struct, kw_only=True):
    """``to_deployment(concurrency_limit=ConcurrencyLimitConfig(limit=2, ...))``."""

    limit: int
    collision_strategy: ConcurrencyLimitStrategy = ConcurrencyLimitStrategy.ENQUEUE
    grace_period_seconds: int | None = None


class ConcurrencyOptions(msgspec.Struct, kw_only=True):
    """A deployment's ``concurrency_options``: what a run over its limit does."""

    collision_strategy: ConcurrencyLimitStrategy = ConcurrencyLimitStrategy.ENQUEUE
    grace_period_seconds: int | None = None


__all__ = [
    "Artifact",
    "ArtifactCollection",
    "ConcurrencyLimitConfig",
    "ConcurrencyLimitStrategy",
    "ConcurrencyOptions",
    "Flow",
    "FlowRun",
    "Log",
    "State",
    "StateDetails",
    "StateType",
    "TaskRun",
    "TaskRunResult",
    "Variable",
]
