"""Objects the client returns: runs, flows, states, log lines, variables."""

from engine.records import FlowRecord as Flow
from engine.records import FlowRun, LogRecord, TaskRun
from engine.states import State, StateDetails, StateType

Log = LogRecord

__all__ = ["Flow", "FlowRun", "Log", "State", "StateDetails", "StateType", "TaskRun"]
