"""Objects the client returns: flows, runs, states, log lines, variables."""

from millstream._engine.model.artifacts import Artifact, ArtifactCollection
from millstream._engine.model.records import FlowRecord as Flow
from millstream._engine.model.records import FlowRun, LogRecord, TaskRun, TaskRunResult
from millstream._engine.model.states import State, StateDetails, StateType
from millstream.variables import Variable

# Prefect calls a log line a Log.
Log = LogRecord

__all__ = [
    "Artifact",
    "ArtifactCollection",
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
