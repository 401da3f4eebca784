"""The log thread: renders queued lines, caps each run's rows and hands them to the store."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
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
from millstream._engine.store.sqlite import Q, Store

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
        "flow_hex",
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
        self.flow_hex = target.flow_run_id.hex if target.flow_run_id is not None else None
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


def _marker_update(cap: _Cap, dropped: int) -> Callable[[Any], None]:
    # The marker is the run's last row under CAP_LOGGER: the (flow_run_id, id) and
    # (task_run_id, id) indexes find it without a scan.
    if cap.flow_run_id is not None:
        where, run = "flow_run_id = ?", cap.flow_run_id.hex
    else:
        assert cap.task_run_id is not None
        where, run = "flow_run_id IS NULL AND task_run_id = ?", cap.task_run_id.hex
    sql = (
        "UPDATE log SET message = ? WHERE id = (SELECT id FROM log WHERE "
        f"{where} AND name = ? ORDER BY id DESC LIMIT 1)"
    )
    params = (_dropped_message(dropped, cap.limit), run, CAP_LOGGER)

    def update(conn: Any) -> None:
        conn.execute(sql, params)

    return update


# A stored line: flow run id, task run id (hex or None), level, logger name, message, timestamp.
Row = tuple[str | None, str | None, int, str, str, str]


class _Stamps:
    """Row timestamps as the store keeps them (fixed-width UTC text, ``...T12:00:00.000000Z``),
    from a line's creation time: a ``datetime`` per line cost more than the rest of its row.

    The microseconds are rounded as ``datetime.fromtimestamp`` rounds them (half to even on
    the fraction); the date and time of day are formatted once per second.
    """

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second: int | None = None
        self.prefix = ""

    def text(self, created: float) -> str:
        """The stored timestamp of a line created at ``created`` (seconds since the epoch)."""
        fraction, whole = math.modf(created)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            whole, micros = whole + 1.0, micros - 1_000_000
        elif micros < 0:
            whole, micros = whole - 1.0, micros + 1_000_000
        second = int(whole)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{micros:06d}Z"


def _insert_rows(rows: list[Row]) -> Callable[[Any], None]:
    # Ready rows in one call of the store's writer: no record per line to build there and
    # take apart again (ids and timestamps are already the stored text).
    def insert(conn: Any) -> None:
        conn.executemany(Q["insert_log"], rows)

    return insert


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
        self.stamps = _Stamps()

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
        flow_hex: str | None = None
        stamp = self.stamps.text
        for entry in batch:
            target, level, name, message, created, exc_text, _, where = entry
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
                flow_hex = cap.flow_hex
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
                task_id = cap.task_run_id
                rows.setdefault(cap.store, []).append(
                    (
                        flow_hex,
                        task_id.hex if task_id is not None else None,
                        logging.WARNING,
                        CAP_LOGGER,
                        _dropped_message(1, cap.limit),
                        stamp(created),
                    )
                )
                continue
            task_id = target.task_run_id
            kept.append(
                (
                    # The cap is the flow run's: its id is the target's (None outside flows).
                    flow_hex,
                    task_id.hex if task_id is not None else None,
                    level,
                    name,
                    f"{message}\n{exc_text}" if exc_text else message,
                    stamp(created),
                )
            )
        for store, store_rows in rows.items():
            if store_rows:
                store.put_call(_insert_rows(store_rows))
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
        (store or cap.store).put_call(_marker_update(cap, cap.dropped))

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
