"""Task runners: where submitted task runs execute."""

from engine.task_runners import TaskRunner, ThreadPoolTaskRunner

__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]
