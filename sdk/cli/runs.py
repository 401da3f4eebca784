"""The ``runs`` commands: list, inspect, follow the logs of, delete and cancel flow runs."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from typing import Any

from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.states import StateType
from millstream._tables import duration, render_table, when
from millstream.cli.output import EXIT_OK, LOG_SETTLE_SECONDS, UsageError, as_json, log_line
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
            r.state_name or "",
            when(r.start_time),
            duration(r.start_time, r.end_time),
        ]
        for r in runs
    ]
    print(render_table(["ID", "FLOW", "NAME", "STATE", "STARTED", "DURATION"], rows))
    return EXIT_OK


def cmd_runs_inspect(args: argparse.Namespace) -> int:
    """``runs inspect``: a flow run, its states, its task runs and why it failed."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(args.id)
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
        body["task_runs"] = [{**_run_dict(t), "traceback": _traceback(t)} for t in tasks]
        print(as_json(body))
        return EXIT_OK
    print(f"Flow run {run.name} ({run.id})")
    print(f"  flow: {run.flow_name}   state: {run.state_name}   run count: {run.run_count}")
    print(f"  parameters: {as_json(run.parameters)}   tags: {', '.join(run.tags) or '-'}")
    print(f"  started: {when(run.start_time)}   duration: {duration(run.start_time, run.end_time)}")
    print("States:")
    print(
        render_table(
            ["TIME", "STATE", "MESSAGE"],
            [[when(s.timestamp), s.name or "", (s.message or "")[:80]] for s in states],
        )
    )
    print("Task runs:")
    print(
        render_table(
            ["ID", "NAME", "STATE", "RUNS", "STARTED", "DURATION"],
            [
                [
                    str(t.id),
                    t.name,
                    t.state_name or "",
                    str(t.run_count),
                    when(t.start_time),
                    duration(t.start_time, t.end_time),
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
            print(f"{what} {one.state_name}: {one.state.message or ''}")
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
    with get_client(sync_client=True) as client:
        run_id = client.read_flow_run(args.id).id
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
            for line in lines:
                print(log_line(line))
            sys.stdout.flush()
            seen += len(lines)
            if not args.follow or done:
                return EXIT_OK
            if time.monotonic() >= deadline:
                print(f"(stopped following after {args.timeout:g} s)", file=sys.stderr)
                return EXIT_OK
            time.sleep(args.interval)


def cmd_runs_delete(args: argparse.Namespace) -> int:
    """``runs delete``: a flow run, with its task runs and logs."""
    with get_client(sync_client=True) as client:
        client.delete_flow_run(args.id)
    print(f"Deleted flow run {args.id}")
    return EXIT_OK


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    """``runs cancel``: cancel a flow run, in whichever process runs it."""
    with get_client(sync_client=True) as client:
        state = client.cancel_flow_run(args.id)
    print(f"Flow run {args.id}: {state.name}")
    return EXIT_OK
