"""A store's liveness timer: heartbeats for live runs and the poll for Cancelling ones.

One small daemon thread per store, apart from the writer (which only drains its queue).
Heartbeats are queued through the store like any write; the poll reads on this thread's own
read-only connection. Both intervals are read every cycle, so a worker may change them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from millstream._engine import clock

if TYPE_CHECKING:
    from millstream._engine.store.core import Store

_cancellation_watch: tuple[Callable[[], list[uuid.UUID]], Callable[[uuid.UUID], object]] | None = (
    None
)


def watch_cancellations(
    live_ids: Callable[[], list[uuid.UUID]], request: Callable[[uuid.UUID], object]
) -> None:
    """Have stores poll for Cancelling runs among ``live_ids()`` and ``request`` their stop.

    Orchestration registers itself here (the store knows nothing of running flows).
    """
    global _cancellation_watch
    _cancellation_watch = (live_ids, request)


def request_stop(run_id: uuid.UUID) -> None:
    """Ask the live flow run ``run_id`` of this process to stop (it lost its lease)."""
    watch = _cancellation_watch
    if watch is not None:
        watch[1](run_id)


class LivenessTimer:
    """Heartbeats ``store.live_runs`` every ``store.heartbeat_seconds`` and delivers
    cancellations every ``store.poll_seconds``, on a thread of its own."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="millstream-liveness", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it finishes the step it is in)."""
        self._stop.set()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(5.0)

    def _main(self) -> None:
        store = self._store
        last_beat = time.monotonic()
        next_poll = time.monotonic() + store.poll_seconds
        # Never sleep longer than this: a worker may lower the intervals after the timer
        # started (a heartbeat interval read once would outlive a shorter lease).
        while not self._stop.wait(
            max(
                0.0,
                min(last_beat + store.heartbeat_seconds, next_poll, time.monotonic() + 1.0)
                - time.monotonic(),
            )
        ):
            try:
                if time.monotonic() >= last_beat + store.heartbeat_seconds:
                    last_beat = time.monotonic()
                    self._beat()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + store.poll_seconds
                    self._deliver_cancellations()
            except Exception:
                # A locked or vanished file now is tried again next cycle; the timer must live.
                continue

    def _beat(self) -> None:
        # Other hosts tell a live run from an orphan by this stamp (same host: by pid).
        live = list(self._store.live_runs)
        if live:
            self._store.put_heartbeat(live, clock.now())

    def _deliver_cancellations(self) -> None:
        # Another process may have asked a run of ours to stop (state Cancelling).
        watch = _cancellation_watch
        if watch is None:
            return
        live_ids, request = watch
        live = live_ids()
        if not live:
            return
        for run_id in self._store.cancelling_among(live):
            request(run_id)
