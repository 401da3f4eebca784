"""Task runners: where submitted task runs execute."""

from millstream._engine.bridge.task_runners import TaskRunner, ThreadPoolTaskRunner

__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]
