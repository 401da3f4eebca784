"""Cancelling live flow runs: requests reach the process running them through the database.

``client.cancel_flow_run`` marks a running flow run Cancelling; the store's writer in the
process that runs it sees that on its next poll and calls ``request``. An async flow's
orchestration task is cancelled at once; a sync body stops at its next task boundary (a task
call raises ``FlowRunCancelled``). Either way the run ends Cancelled and its on_cancellation
hooks run.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from millstream._engine.store import watch_cancellations


class FlowRunCancelled(BaseException):
    """Raised at a task boundary of a flow run that was asked to stop.

    A BaseException so that user code catching ``Exception`` does not swallow it.
    """


class _Live:
    __slots__ = ("flag", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object] | None) -> None:
        self.loop = loop
        self.task = task
        self.flag = False


_live: dict[uuid.UUID, _Live] = {}
_lock = threading.Lock()


def register(flow_run_id: uuid.UUID, cancel_task: bool) -> None:
    """Make ``flow_run_id`` cancellable from any thread (by cancelling the current task when
    ``cancel_task``, else only by the flag checked at task boundaries)."""
    loop = asyncio.get_running_loop()
    with _lock:
        _live[flow_run_id] = _Live(loop, asyncio.current_task() if cancel_task else None)


def unregister(flow_run_id: uuid.UUID) -> None:
    """The run ended."""
    with _lock:
        _live.pop(flow_run_id, None)


def request(flow_run_id: uuid.UUID) -> bool:
    """Ask a live flow run of this process to stop (False if it is not live here)."""
    with _lock:
        live = _live.get(flow_run_id)
    if live is None or live.flag:
        return live is not None
    live.flag = True
    if live.task is not None:
        try:
            live.loop.call_soon_threadsafe(live.task.cancel)
        except RuntimeError:  # the loop is closing: the run is ending anyway
            pass
    return True


def requested(flow_run_id: uuid.UUID) -> bool:
    """Whether a stop was asked for this flow run."""
    live = _live.get(flow_run_id)
    return live is not None and live.flag


def live_ids() -> list[uuid.UUID]:
    """Flow runs of this process that can be cancelled."""
    with _lock:
        return list(_live)


watch_cancellations(live_ids, request)
