"""Task runners: where the sync bodies of submitted task runs execute (a thread pool by default)."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any


class TaskRunner:
    """Base of the task runners: gives each flow run an executor for submitted sync bodies."""

    def __init__(self) -> None:
        self.name = type(self).__name__

    def acquire(self) -> concurrent.futures.Executor:
        """An executor for one flow run's submitted sync task bodies."""
        raise NotImplementedError

    def release(self, executor: concurrent.futures.Executor) -> None:
        """Give back what ``acquire`` returned when the flow run ends."""

    def max_concurrency(self) -> int | None:
        """A bound on concurrently running submitted task runs (None: no bound)."""
        return None

    def duplicate(self) -> TaskRunner:
        """A fresh runner with the same configuration."""
        return type(self)()


class ThreadPoolTaskRunner(TaskRunner):
    """Runs submitted sync task bodies on a thread pool; async tasks run as coroutines.

    ``max_workers`` bounds both: at most that many submitted task runs of one flow run are
    running at once. Without it, sync bodies share a process-wide pool.
    """

    _shared: concurrent.futures.ThreadPoolExecutor | None = None
    _shared_lock = threading.Lock()

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
        self.max_workers = max_workers

    def acquire(self) -> concurrent.futures.Executor:
        if self.max_workers is not None:
            return concurrent.futures.ThreadPoolExecutor(
                self.max_workers, thread_name_prefix="millstream-task"
            )
        cls = ThreadPoolTaskRunner
        if cls._shared is None:
            with cls._shared_lock:
                if cls._shared is None:
                    cls._shared = concurrent.futures.ThreadPoolExecutor(
                        thread_name_prefix="millstream-task"
                    )
        return cls._shared

    def release(self, executor: concurrent.futures.Executor) -> None:
        if executor is not ThreadPoolTaskRunner._shared:
            executor.shutdown(wait=False)

    def max_concurrency(self) -> int | None:
        return self.max_workers

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.max_workers == self.max_workers

    def __hash__(self) -> int:
        return hash((type(self), self.max_workers))

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers!r})"


_default = ThreadPoolTaskRunner()


def default_task_runner() -> TaskRunner:
    """The runner a flow uses when it names none."""
    return _default
