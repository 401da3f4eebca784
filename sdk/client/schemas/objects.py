"""Objects the client returns: flows, runs, states, log lines, variables."""

from millstream._engine.model.records import FlowRecord as Flow
from millstream._engine.model.records import FlowRun, LogRecord, TaskRun
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

__all__ = [
    "ConcurrencyLimit",
    "ConcurrencyLimitConfig",
    "ConcurrencyLimitStrategy",
    "Flow",
    "FlowRun",
    "GlobalConcurrencyLimit",
    "Log",
    "State",
    "StateDetails",
    "StateType",
    "TaskRun",
    "Variable",
]
