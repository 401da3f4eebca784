"""Objects the client returns: flows, runs, states, log lines, variables; deployment options."""

import msgspec

from millstream._engine.model.artifacts import Artifact, ArtifactCollection
from millstream._engine.model.records import FlowRecord as Flow
from millstream._engine.model.records import FlowRun, LogRecord, TaskRun, TaskRunResult
from millstream._engine.model.states import State, StateDetails, StateType
from millstream.client.schemas.concurrency import (
    ConcurrencyLimit,
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
    GlobalConcurrencyLimit,
)
from millstream.variables import Variable

# Prefect calls a log line a Log.
Log = LogRecord


class ConcurrencyOptions(msgspec.Struct, kw_only=True):
    """A deployment's ``concurrency_options``: what a run over its limit does."""

    collision_strategy: ConcurrencyLimitStrategy = ConcurrencyLimitStrategy.ENQUEUE
    grace_period_seconds: int | None = None


__all__ = [
    "Artifact",
    "ArtifactCollection",
    "ConcurrencyLimit",
    "ConcurrencyLimitConfig",
    "ConcurrencyLimitStrategy",
    "ConcurrencyOptions",
    "Flow",
    "FlowRun",
    "GlobalConcurrencyLimit",
    "Log",
    "State",
    "StateDetails",
    "StateType",
    "TaskRun",
    "TaskRunResult",
    "Variable",
]
