"""Testing flows: a hermetic engine on a temporary database, and readers of what it recorded.

``millstream_test_harness()`` is Prefect's ``prefect_test_harness()`` for the embedded engine: a
context manager (``with`` or ``async with``) inside which every flow and task run is recorded
in a database of its own, in a temporary directory, with the home directory never touched. It
costs a few milliseconds (no server is started); on leaving it the store's threads are stopped,
the settings and environment are put back and the temporary directory is removed. Each pytest
process (pytest-xdist worker) has its own, so ``pytest -n auto`` is safe.

The pytest plugin (``millstream.testing.plugin``, registered through the ``pytest11`` entry
point) gives the fixtures ``millstream_harness`` (per test), ``millstream_session_harness``
(per session), ``millstream_runs`` (reads runs back) and ``millstream_clock`` /
``millstream_frozen_clock`` (retry delays, schedules and sleeps without waiting).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from millstream._engine import logs
from millstream._engine.clock import Clock, FastClock, FrozenClock, use_clock
from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.model.records import FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State
from millstream._engine.settings import Settings, get_current_settings, temporary_settings
from millstream._engine.store import close_store, get_store, open_store_paths

__all__ = [
    "FastClock",
    "FrozenClock",
    "MillstreamTestHarness",
    "RunReader",
    "millstream_test_harness",
    "use_clock",
]

# Exported while a harness is active so that subprocesses (and threads started outside the
# harness's context) record into the same temporary database.
_ENV = ("MILLSTREAM_HOME", "MILLSTREAM_DATABASE_PATH")


class MillstreamTestHarness:
    """A hermetic engine for the duration of a ``with`` / ``async with`` block.

    ``home``: the directory to use (kept afterwards); by default a new temporary directory,
    removed on exit. ``settings``: more settings for the block (dotted or ``MILLSTREAM_*``
    names). ``clock``: a clock to install for the block (``FastClock()``: retry delays and
    sleeps take no time; ``FrozenClock()``: time moves only when advanced).
    ``export_environment``: where the harness points ``MILLSTREAM_HOME`` and
    ``MILLSTREAM_DATABASE_PATH`` at its directory. True (the default): in ``os.environ`` for
    the block (restored after), seen by every thread and subprocess; a test may still change
    them as it would outside a harness. False: only in the settings context of the block
    (``temporary_settings``; asyncio tasks and the engine's runs started inside it see it,
    whatever the environment says), leaving ``os.environ`` alone. ``prepare_database``: put
    an empty, migrated database in place on entry (copied from one made once per process: a
    harness then starts in about a millisecond); False leaves the file to be created on first
    use, as outside a harness.
    """

    def __init__(
        self,
        *,
        home: str | os.PathLike[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        export_environment: bool = True,
        prepare_database: bool = True,
    ) -> None:
        self._prepare = prepare_database
        self._given_home = Path(home) if home is not None else None
        self._settings = dict(settings or {})
        self._clock = clock
        self._export = export_environment
        self._stack: contextlib.ExitStack | None = None
        self._before: set[Path] = set()
        self.home = Path()
        self.database_path = Path()

    @property
    def settings(self) -> Settings:
        """The settings in force inside the block."""
        return get_current_settings()

    @property
    def clock(self) -> Clock | None:
        """The clock installed for the block (None: the real one)."""
        return self._clock

    @property
    def runs(self) -> RunReader:
        """Reads back what the block recorded."""
        return RunReader()

    # -- entering and leaving -----------------------------------------------------------------
    def __enter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this millstream_test_harness() is already entered")
        stack = contextlib.ExitStack()
        try:
            self._enter(stack)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def _enter(self, stack: contextlib.ExitStack) -> None:
        if self._given_home is None:
            home = Path(tempfile.mkdtemp(prefix="millstream-test-"))
            stack.callback(shutil.rmtree, home, ignore_errors=True)
        else:
            home = self._given_home.expanduser().absolute()
            home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.database_path = home / "millstream.db"
        self._before = set(open_store_paths())
        # Registered first, so run last: once the settings and environment are put back, every
        # store opened in the block is flushed and stopped.
        stack.callback(self._close_stores)
        where = {"home": home, "database_path": self.database_path}
        if self._export:
            # Whatever the developer's shell exported is overwritten for the block; the settings
            # are read from the environment as outside a harness, so a test that changes
            # MILLSTREAM_DATABASE_PATH itself sees it honoured, in every thread and subprocess.
            stack.enter_context(
                _exported({name: str(where[key]) for name, key in zip(_ENV, where, strict=True)})
            )
            stack.enter_context(temporary_settings(self._settings))
        else:
            stack.enter_context(temporary_settings({**where, **self._settings}))
        self.database_path = get_current_settings().database_path
        if self._prepare and not self.database_path.exists():
            _copy_template(self.database_path)
        if self._clock is not None:
            stack.enter_context(use_clock(self._clock))

    def _close_stores(self) -> None:
        # Lines logged so far go to their stores first; then every store opened inside the block
        # is flushed and its writer and liveness threads stopped.
        logs.flush()
        for path in open_store_paths():
            if path not in self._before:
                close_store(path)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Stopping the store joins its writer thread, which waits only for this block's own
        # last writes (already flushed by every top-level run): a short, bounded block.
        self.__exit__(exc_type, exc, tb)


def millstream_test_harness(
    *,
    home: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    export_environment: bool = True,
    prepare_database: bool = True,
) -> MillstreamTestHarness:
    """A hermetic engine on a temporary database for a ``with`` or ``async with`` block.

    ::

        with millstream_test_harness() as harness:
            assert my_flow() == 3
            assert harness.runs.last_flow_run().state_name == "Completed"

    See ``MillstreamTestHarness`` for the arguments.
    """
    return MillstreamTestHarness(
        home=home,
        settings=settings,
        clock=clock,
        export_environment=export_environment,
        prepare_database=prepare_database,
    )


# A migrated, empty database made once per process and copied into each new harness: a copy
# takes well under a millisecond, creating the schema in a new file takes tens (its fsyncs).
_template: tuple[int, Path] | None = None
_template_lock = threading.Lock()


def _copy_template(target: Path) -> None:
    global _template
    with _template_lock:
        if _template is None or _template[0] != os.getpid():
            folder = Path(tempfile.mkdtemp(prefix="millstream-template-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = folder / "millstream.db"
            with temporary_settings({"database_path": path}):
                get_store(path).ensure_open_sync()
            close_store(path)  # the last connection closed: the WAL is checkpointed away
            _template = (os.getpid(), path)
        source = _template[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


@contextlib.contextmanager
def _exported(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_Run = TypeVar("_Run", FlowRun, TaskRun)
_OfRun = TypeVar("_OfRun", TaskRun, LogRecord)


def _oldest_first(runs: list[_Run]) -> list[_Run]:
    # The client reads newest first: reversed, runs created in the same microsecond keep
    # their order through the (stable) sort.
    runs.reverse()
    runs.sort(key=lambda r: (r.created is None, r.created))
    return runs


def _of_flow_run(items: list[_OfRun], flow_run_id: uuid.UUID | str | None) -> list[_OfRun]:
    """The ``items`` of one flow run (all of them when ``flow_run_id`` is None)."""
    if flow_run_id is None:
        return items
    wanted = uuid.UUID(str(flow_run_id))
    return [item for item in items if item.flow_run_id == wanted]


class RunReader:
    """What the current database recorded, read through the blocking client.

    Flow runs and task runs come oldest first (the order they were created in)."""

    def _client(self) -> Any:
        from millstream.client.orchestration import get_client

        return get_client(sync_client=True)

    def flow_runs(self, *, name: str | None = None, flow_name: str | None = None) -> list[FlowRun]:
        """Every flow run, oldest first; ``name`` / ``flow_name`` keep the matching ones."""
        with self._client() as client:
            runs: list[FlowRun] = _oldest_first(client.read_flow_runs())
        if name is not None:
            runs = [r for r in runs if r.name == name]
        if flow_name is not None:
            runs = [r for r in runs if r.flow_name == flow_name]
        return runs

    def last_flow_run(self) -> FlowRun:
        """The most recently created flow run (``LookupError`` when there is none)."""
        runs = self.flow_runs()
        if not runs:
            raise LookupError("no flow run was recorded in this database")
        return runs[-1]

    def flow_run(self, flow_run_id: uuid.UUID | str) -> FlowRun:
        """One flow run, by id."""
        with self._client() as client:
            run: FlowRun = client.read_flow_run(flow_run_id)
        return run

    def task_runs(self, flow_run_id: uuid.UUID | str | None = None) -> list[TaskRun]:
        """Task runs (of one flow run when given), oldest first."""
        with self._client() as client:
            runs: list[TaskRun] = client.read_task_runs()
        return _oldest_first(_of_flow_run(runs, flow_run_id))

    def states(self, run_id: uuid.UUID | str) -> list[State]:
        """Every state a flow run or task run went through, oldest first."""
        with self._client() as client:
            try:
                states: list[State] = client.read_flow_run_states(run_id)
            except ObjectNotFound:
                states = []
            if not states:
                states = client.read_task_run_states(run_id)
        return states

    def logs(self, flow_run_id: uuid.UUID | str | None = None) -> list[LogRecord]:
        """Log lines (of one flow run when given), in the order they were recorded."""
        with self._client() as client:
            lines: list[LogRecord] = client.read_logs()
        return _of_flow_run(lines, flow_run_id)
