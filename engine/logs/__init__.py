"""Logs: run loggers, print capture, rendering and the sink into the store."""

from millstream._engine.logs import capture as capture  # installs print capture on import
from millstream._engine.logs.configure import configure
from millstream._engine.logs.loggers import (
    RunLogger,
    flow_line_enabled,
    flow_run_line,
    get_logger,
    get_run_logger,
    replay_lines,
    task_line_enabled,
    task_run_line,
)
from millstream._engine.logs.render import ConsoleRenderer
from millstream._engine.logs.sink import flush, run_finished
from millstream._engine.logs.targets import (
    CAP_LOGGER,
    CAP_SETTING,
    FLOW_RUNS,
    ROOT,
    TASK_RUNS,
    RemoteTarget,
    disable_run_logger,
    remote_target,
)

__all__ = [
    "CAP_LOGGER",
    "CAP_SETTING",
    "FLOW_RUNS",
    "ROOT",
    "TASK_RUNS",
    "ConsoleRenderer",
    "RemoteTarget",
    "RunLogger",
    "configure",
    "disable_run_logger",
    "flow_line_enabled",
    "flow_run_line",
    "flush",
    "get_logger",
    "get_run_logger",
    "remote_target",
    "replay_lines",
    "run_finished",
    "task_line_enabled",
    "task_run_line",
]
