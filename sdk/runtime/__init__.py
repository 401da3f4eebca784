"""Attributes of the current run, read as module attributes: ``sdk.runtime.flow_run.name``."""

from sdk.runtime import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
