"""The log thread: renders queued lines, caps each run's rows and hands them to the store."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from typing import Any

from millstream._engine.logs.render import Renderer, _render_line, _state
from millstream._engine.logs.targets import (
    _KEEP,
    _SHOW,
    CAP_LOGGER,
    CAP_SETTING,
    Entry,
    _Target,
    _targets,
)
from millstream._engine.store import Store

# How long the log thread lets a burst gather before rendering it: one console write and one
# hand-over to the store per batch instead of one per line, still prompt for a human watching.
_GROUP_DELAY = 0.01
_BATCH = 4_096
# While lines of a run are being dropped, its "N lines dropped" row is rewritten at most this
# often (seconds); the exact count lands when the run ends, or this long after the flood stops.
_REPORT_EVERY = 1.0
_MAX_CAPS = 4_096


# -- the log thread: render, cap, hand over to the store ------------------------------------------
class _Cap:
    """Lines of one run so far, and how many were dropped past its limit.

    When the limit is reached one row is written at once, saying how many lines were dropped
    (so the cap needs no help from the engine). It stays the run's last row and is rewritten
    with the growing count: at most once a second during a flood, a second after the flood
    stops, when the run ends (``run_finished``) and at process exit.
    """

    __slots__ = (
        "count",
        "dropped",
        "flow_run_id",
        "last_report",
        "limit",
        "reported",
        "store",
        "task_run_id",
    )

    def __init__(self, target: _Target) -> None:
        # The marker is a row of the run the cap counts for: the flow run (not the task whose
        # line happened to be the first one dropped), or the task run outside any flow.
        self.flow_run_id = target.flow_run_id
        self.task_run_id = target.task_run_id if target.flow_run_id is None else None
        self.store = target.store
        self.limit = target.limit
        self.count = 0
        self.dropped = 0
        self.reported = 0
        self.last_report = 0.0


def _dropped_message(dropped: int, limit: int) -> str:
    lines = "log line of this run was" if dropped == 1 else "log lines of this run were"
    return (
        f"{dropped} {lines} dropped: the limit of {limit} lines per run was reached ({CAP_SETTING})"
    )


# A stored line: flow run id, task run id, level, logger name, message, created (epoch
# seconds), extra fields (None: none).
Row = tuple[uuid.UUID | None, uuid.UUID | None, int, str, str, float, dict[str, Any] | None]


class _Sink:
    """The queue of log lines, and the one thread per process that renders and stores them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh: no queued lines, no thread, no bookkeeping (in a forked child)."""
        self.queue: collections.deque[Entry] = collections.deque()
        self.wake = threading.Event()
        self.lock = threading.RLock()  # one drainer at a time keeps lines in order
        self.pending = False
        self.thread: threading.Thread | None = None
        self.caps: collections.OrderedDict[uuid.UUID, _Cap] = collections.OrderedDict()
        self.dirty: set[_Cap] = set()

    def put(self, entry: Entry) -> None:
        """Queue a line (from any thread); the caller does no I/O."""
        self.queue.append(entry)
        if not self.pending:
            self.pending = True
            if self.thread is None:
                self._start()
            self.wake.set()

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                thread = threading.Thread(target=self._main, name="millstream-logs", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no new threads at interpreter exit: write right here
                    self.drain()
                    return
                self.thread = thread

    def _main(self) -> None:
        while True:
            self.wake.wait(_REPORT_EVERY if self.dirty else None)
            time.sleep(_GROUP_DELAY)
            # Cleared before draining: a line queued from now on wakes the next round.
            self.wake.clear()
            self.pending = False
            try:
                self.drain()
            except Exception as exc:  # the log thread must live on; say what went wrong
                _report_failure(exc)

    def drain(self) -> None:
        """Render and store every queued line (on the calling thread)."""
        with self.lock:
            queue = self.queue
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
                self._process(batch)
            now = time.monotonic()
            for cap in list(self.dirty):
                if now - cap.last_report >= _REPORT_EVERY:
                    self.report(cap)

    def _process(self, batch: list[Entry]) -> None:
        renderer, json_lines = _state.renderer, _state.json_lines
        text: list[str] = []
        rows: dict[Store, list[Row]] = {}
        last_key: uuid.UUID | None = None
        last_store: Store | None = None
        cap: _Cap | None = None
        kept: list[Row] = []
        flow_id: uuid.UUID | None = None
        for entry in batch:
            target, level, name, message, created, exc_text, extra, where = entry
            if where & _SHOW:
                try:
                    text.append(_render_line(renderer, json_lines, entry))
                except Exception as exc:  # an extra field whose repr raises, say
                    text.append(f"{message} (this log line could not be rendered: {exc!r})\n")
            if target is None or not where & _KEEP:
                continue
            # Lines come in runs of one flow run (a flood, or its tasks one after the other):
            # its cap and rows are looked up once (by identity: UUID hashing is Python code).
            if target.key is not last_key or cap is None:
                last_key = target.key
                cap = self._cap(target)
                flow_id = cap.flow_run_id
            if target.store is not last_store:
                last_store = target.store
                kept = rows.setdefault(last_store, [])
            cap.count += 1
            if cap.count > cap.limit:
                cap.dropped += 1
                if cap.dropped > 1:
                    self.dirty.add(cap)
                    continue
                # The first dropped line: its place goes to the marker row, counted later.
                cap.reported = 1
                cap.last_report = time.monotonic()
                text.append(_cap_notice(renderer, json_lines, target, cap.limit))
                rows.setdefault(cap.store, []).append(
                    (
                        flow_id,
                        cap.task_run_id,
                        logging.WARNING,
                        CAP_LOGGER,
                        _dropped_message(1, cap.limit),
                        created,
                        None,
                    )
                )
                continue
            kept.append(
                (
                    # The cap is the flow run's: its id is the target's (None outside flows).
                    flow_id,
                    target.task_run_id,
                    level,
                    name,
                    f"{message}\n{exc_text}" if exc_text else message,
                    created,
                    extra,
                )
            )
        for store, store_rows in rows.items():
            if store_rows:
                store.put_log_lines(store_rows)
        if text:
            _write("".join(text))

    def _cap(self, target: _Target) -> _Cap:
        cap = self.caps.get(target.key)
        if cap is None:
            cap = self.caps[target.key] = _Cap(target)
            if len(self.caps) > _MAX_CAPS:
                # The oldest run whose end was never announced: final count, then forget it.
                _, oldest = self.caps.popitem(last=False)
                self.report(oldest)
        else:
            self.caps.move_to_end(target.key)
        return cap

    def report(self, cap: _Cap, store: Store | None = None) -> None:
        """Rewrite the run's "N lines dropped" row with the current count, if it grew."""
        self.dirty.discard(cap)
        if cap.dropped <= cap.reported:
            return
        cap.reported = cap.dropped
        cap.last_report = time.monotonic()
        # The marker is the run's last row under CAP_LOGGER.
        (store or cap.store).put_dropped_marker(
            cap.flow_run_id, cap.task_run_id, CAP_LOGGER, _dropped_message(cap.dropped, cap.limit)
        )

    def forget(self, run_id: uuid.UUID, store: Store | None) -> None:
        """Write a finished run's final dropped count and drop its bookkeeping."""
        with self.lock:
            cap = self.caps.pop(run_id, None)
            if cap is not None:
                self.report(cap, store)
            _targets.pop(run_id, None)

    def finish_all(self) -> None:
        """Write every outstanding dropped count (at process exit)."""
        with self.lock:
            for cap in list(self.dirty):
                self.report(cap)


def _cap_notice(renderer: Renderer, json_lines: bool, target: _Target, limit: int) -> str:
    message = (
        f"This run reached the limit of {limit} stored log lines ({CAP_SETTING}); "
        "further lines are shown but not stored"
    )
    entry: Entry = (target, logging.WARNING, CAP_LOGGER, message, time.time(), None, None, _SHOW)
    return _render_line(renderer, json_lines, entry)


def _write(text: str) -> None:
    stream = sys.stderr  # looked up per batch: it may have been replaced (pytest's capsys)
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stream: the lines are still stored


def _report_failure(exc: BaseException) -> None:
    with contextlib.suppress(Exception):
        stream = sys.__stderr__
        if stream is not None:
            stream.write(f"millstream: writing log lines failed: {exc!r}\n")


_sink = _Sink()


def flush() -> None:
    """Render and hand to the store every log line queued so far (on the calling thread)."""
    _sink.drain()


def run_finished(run_id: uuid.UUID, store: Store | None = None) -> None:
    """Tell the logs that a run ended: its queued lines are written out and, if lines of it
    were dropped, its last row gets the final count.

    For a flow run, and a task run outside any flow, before the run's flush point: what the run
    logged is then on the console, and durable once the store is flushed. ``store`` is the
    run's store (by default the one its lines went to).
    """
    _sink.drain()
    _sink.forget(run_id, store)


def _at_exit() -> None:
    # Registered after the store's close_all (imported above), so it runs first: the last
    # lines and counts are queued while the store can still write them.
    with contextlib.suppress(Exception):
        _sink.drain()
        _sink.finish_all()


atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    # The child has no log thread; the parent's queued lines are the parent's to write.
    # Reset in place: the other log modules hold this very object.
    _sink.reset()
    _targets.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
