"""Objects the client returns: flows, runs, states, log lines, variables."""

from engine.records import FlowRecord as Flow
from engine.records import FlowRun, LogRecord, TaskRun
from engine.states import State, StateDetails, StateType
from sdk.variables import Variable

# Prefect calls a log line a Log.
Log = LogRecord

__all__ = ["Flow", "FlowRun", "Log", "State", "StateDetails", "StateType", "TaskRun", "Variable"]
