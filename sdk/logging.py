"""Run loggers: ``get_run_logger`` in flows and tasks, ``get_logger``, ``disable_run_logger``."""

from millstream._engine.logs import disable_run_logger, get_logger, get_run_logger

__all__ = ["disable_run_logger", "get_logger", "get_run_logger"]
