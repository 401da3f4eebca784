"""The ``runs`` commands: list, inspect, follow the logs of, delete and cancel flow runs."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
import uuid
from typing import Any

from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.states import StateType
from millstream._engine.settings import get_current_settings
from millstream._tables import duration, when
from millstream.cli.output import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    LOG_SETTLE_SECONDS,
    UsageError,
    as_json,
    log_line,
    log_line_dict,
    moment,
    state_text,
    table,
)
from millstream.client.orchestration import get_client
from millstream.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from millstream.client.schemas.sorting import TaskRunSort

__all__ = [
    "cmd_runs_cancel",
    "cmd_runs_delete",
    "cmd_runs_inspect",
    "cmd_runs_logs",
    "cmd_runs_ls",
]


def _since(text: str) -> dt.datetime:
    """``--since``: a duration back from now (30m, 2h, 7d) or an ISO time (UTC if naive)."""
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if match:
        amount, unit = int(match[1]), match[2]
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a duration like 30m, 2h, 7d or an ISO timestamp"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _state_type(text: str) -> StateType:
    """``--state``: a state type, in any case."""
    try:
        return StateType(text.upper())
    except ValueError:
        raise UsageError(
            f"--state {text!r}: use one of {', '.join(t.value.lower() for t in StateType)}"
        ) from None


def _run_dict(run: FlowRun | TaskRun) -> dict[str, Any]:
    """A flow or task run as ``--json`` shows it."""
    return {
        "id": str(run.id),
        "name": run.name,
        **(
            {"flow_name": run.flow_name}
            if isinstance(run, FlowRun)
            else {"task_name": run.task_name, "flow_run_id": run.flow_run_id}
        ),
        "state": run.state_name,
        "state_type": run.state_type.value if run.state_type else None,
        "run_count": run.run_count,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "parameters": run.parameters,
        "tags": run.tags,
    }


def cmd_runs_ls(args: argparse.Namespace) -> int:
    """``runs ls``: the flow runs, newest first, as a table or JSON."""
    flow_filter = FlowFilter(name=FlowFilterName(any_=args.flow)) if args.flow else None
    types = [_state_type(text) for text in args.state]
    run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)) if types else None,
        start_time=FlowRunFilterStartTime(after_=_since(args.since)) if args.since else None,
    )
    if args.limit < 0:
        raise UsageError(f"--limit must be >= 0, got {args.limit}")
    path = get_current_settings().database_path
    if not path.exists():
        # Reading must not create a database where none was (a typo in MILLSTREAM_HOME, say).
        print(f"No database at {path} yet: no runs.", file=sys.stderr)
        print("[]" if args.json else "(none)")
        return EXIT_OK
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=flow_filter, flow_run_filter=run_filter, limit=args.limit
        )
    if args.json:
        print(as_json([_run_dict(r) for r in runs]))
        return EXIT_OK
    rows = [
        [
            str(r.id),
            r.flow_name,
            r.name,
            state_text(r.state_name, r.state_type),
            moment(r.start_time),
            duration(r.start_time, r.end_time),
        ]
        for r in runs
    ]
    print(table(["ID", "FLOW", "NAME", "STATE", "STARTED", "DURATION"], rows))
    return EXIT_OK


def _find_run(client: Any, given: str) -> FlowRun:
    """A flow run by its id or the start of one (at least 4 characters, unambiguous)."""
    try:
        return client.read_flow_run(uuid.UUID(given))  # type: ignore[no-any-return]
    except ValueError:
        pass
    from millstream._engine.exceptions import ObjectNotFound

    prefix = given.lower()
    found = []
    if len(prefix) >= 4 and re.fullmatch(r"[0-9a-f-]+", prefix):
        found = [r for r in client.read_flow_runs() if str(r.id).startswith(prefix)]
    if not found:
        raise ObjectNotFound(
            f"no flow run has the id {given!r} or an id starting with it (4+ characters)"
        )
    if len(found) > 1:
        shown = ", ".join(str(r.id) for r in found[:5])
        raise UsageError(f"{given!r} is the start of {len(found)} flow run ids: {shown}")
    return found[0]  # type: ignore[no-any-return]


def _preview(run: FlowRun | TaskRun) -> str:
    """A short look at a completed run's result, when it was kept ('-' otherwise)."""
    from millstream._engine.model.states import ResultLoader

    state = run.state
    if state is None or not state.is_completed() or state.data is None:
        return "-"
    try:
        value = state.data.load() if isinstance(state.data, ResultLoader) else state.data
        text = repr(value)
    except Exception as exc:
        text = f"(cannot be loaded here: {type(exc).__name__})"
    return text if len(text) <= 40 else text[:37] + "..."


def cmd_runs_inspect(args: argparse.Namespace) -> int:
    """``runs inspect``: a flow run, its states, its task runs in order and why it failed."""
    with get_client(sync_client=True) as client:
        run = _find_run(client, args.id)
        states = client.read_flow_run_states(run.id)
        # In the order they were created: the order the flow called them.
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    if args.json:
        body = _run_dict(run)
        body["states"] = [
            {
                "type": s.type.value,
                "name": s.name,
                "message": s.message,
                "timestamp": s.timestamp,
                "traceback": s.state_details.traceback,
            }
            for s in states
        ]
        body["traceback"] = _traceback(run)
        body["result_preview"] = _preview(run)
        body["task_runs"] = [
            {
                **_run_dict(t),
                "duration": duration(t.start_time, t.end_time),
                "traceback": _traceback(t),
                "result_preview": _preview(t),
            }
            for t in tasks
        ]
        print(as_json(body))
        return EXIT_OK
    print(f"Flow run {run.name} ({run.id})")
    shown_state = state_text(run.state_name, run.state_type)
    print(f"  flow: {run.flow_name}   state: {shown_state}   run count: {run.run_count}")
    print(f"  parameters: {as_json(run.parameters)}   tags: {', '.join(run.tags) or '-'}")
    print(
        f"  started: {moment(run.start_time)}   duration: {duration(run.start_time, run.end_time)}"
    )
    print(f"  result: {_preview(run)}")
    print("States:")
    print(
        table(
            ["TIME", "STATE", "MESSAGE"],
            [
                [when(s.timestamp), state_text(s.name, s.type), (s.message or "")[:80]]
                for s in states
            ],
        )
    )
    print("Task runs:")
    print(
        table(
            ["ID", "NAME", "STATE", "RUNS", "STARTED", "DURATION", "RESULT"],
            [
                [
                    str(t.id),
                    t.name,
                    state_text(t.state_name, t.state_type),
                    str(t.run_count),
                    when(t.start_time),
                    duration(t.start_time, t.end_time),
                    _preview(t),
                ]
                for t in tasks
            ],
        )
    )
    # Why it failed: the tracebacks kept with the failed states (the flow run's, then its
    # task runs').
    failed: list[tuple[str, FlowRun | TaskRun]] = [(f"Flow run {run.name!r}", run)]
    failed += [(f"Task run {t.name!r}", t) for t in tasks]
    for what, one in failed:
        text = _traceback(one)
        if text is not None and one.state is not None:
            print(f"{what} {state_text(one.state_name, one.state_type)}: {one.state.message or ''}")
            print(text)
    return EXIT_OK


def _traceback(run: FlowRun | TaskRun) -> str | None:
    """The traceback kept with a run's current (failed or crashed) state, if any."""
    return run.state.state_details.traceback if run.state is not None else None


def cmd_runs_logs(args: argparse.Namespace) -> int:
    """``runs logs``: a flow run's log lines, with ``--follow`` until it ends."""
    if args.interval <= 0 or args.timeout < 0:
        raise UsageError("--interval must be > 0 and --timeout >= 0")
    seen = 0
    deadline = time.monotonic() + args.timeout
    labels: dict[uuid.UUID, str] = {}
    with get_client(sync_client=True) as client:
        run_id = _find_run(client, args.id).id
        only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
        while True:
            # The state is read before the lines. A run's last lines (and its hooks' lines)
            # are committed just after its final state, so the run counts as done only once
            # that state is LOG_SETTLE_SECONDS old: the read that follows then gets them all.
            state = client.read_flow_run(run_id).state
            done = (
                state is not None
                and state.is_final()
                and (dt.datetime.now(dt.UTC) - state.timestamp).total_seconds()
                >= LOG_SETTLE_SECONDS
            )
            # Lines come in commit order, so the next page starts where the last one ended.
            lines = client.read_logs(only_this_run, offset=seen)
            if any(line.task_run_id and line.task_run_id not in labels for line in lines):
                labels.update(_task_names(client, run_id))
            for line in lines:
                label = labels.get(line.task_run_id) if line.task_run_id else None
                print(as_json(log_line_dict(line, label)) if args.json else log_line(line, label))
            sys.stdout.flush()
            seen += len(lines)
            if not args.follow or done:
                return EXIT_OK
            if time.monotonic() >= deadline:
                print(f"(stopped following after {args.timeout:g} s)", file=sys.stderr)
                return EXIT_OK
            time.sleep(args.interval)


def _task_names(client: Any, run_id: uuid.UUID) -> dict[uuid.UUID, str]:
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {t.id: t.name for t in tasks}


def cmd_runs_delete(args: argparse.Namespace) -> int:
    """``runs delete``: a flow run, with its task runs and logs."""
    with get_client(sync_client=True) as client:
        client.delete_flow_run(args.id)
    print(f"Deleted flow run {args.id}")
    return EXIT_OK


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    """``runs cancel``: cancel a flow run, in whichever process runs it."""
    with get_client(sync_client=True) as client:
        run = _find_run(client, args.id)
        if run.state is not None and run.state.is_final():
            # Nothing to stop: say so and fail, so that a script notices.
            print(
                f"Flow run {run.name} ({run.id}) already finished in state "
                f"{run.state_name}: nothing to cancel",
                file=sys.stderr,
            )
            return EXIT_NOT_FOUND
        state = client.cancel_flow_run(run.id)
    print(f"Flow run {run.name} ({run.id}): {state_text(state.name, state.type)}")
    return EXIT_OK
