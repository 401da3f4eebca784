"""The ``millstream`` command: list and inspect runs, follow logs, manage variables, recover.

Built on the standard library's argparse (the project keeps its core dependencies to four).
Exit codes: 0 ok, 1 not found (or a watched run did not complete), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from millstream._engine.exceptions import MillstreamError, ObjectNotFound
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.states import StateType
from millstream._engine.settings import get_current_settings
from millstream._engine.store.sqlite import vacuum
from millstream._tables import duration, render_table, when
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
    LogFilterLevel,
)
from millstream.client.schemas.sorting import TaskRunSort

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
# `deployments run --watch` of a run that ends Failed, Crashed or Cancelled: 1, as Prefect's.
EXIT_RUN_NOT_COMPLETED = 1
EXIT_INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl-C
# How long after a run's final state ``runs logs --follow`` keeps reading: the run's last
# lines and its hooks' lines are committed just after that state.
_LOG_SETTLE_SECONDS = 1.0


class UsageError(Exception):
    """A command line that parses but makes no sense (a bad value)."""


def _since(text: str) -> dt.datetime:
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
    try:
        return StateType(text.upper())
    except ValueError:
        raise UsageError(
            f"--state {text!r}: use one of {', '.join(t.value.lower() for t in StateType)}"
        ) from None


def _json(value: Any) -> str:
    return msgspec.json.encode(value, enc_hook=str).decode()


def _run_dict(run: FlowRun | TaskRun) -> dict[str, Any]:
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
        print(_json([_run_dict(r) for r in runs]))
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
        print(_json(body))
        return EXIT_OK
    print(f"Flow run {run.name} ({run.id})")
    print(f"  flow: {run.flow_name}   state: {run.state_name}   run count: {run.run_count}")
    print(f"  parameters: {_json(run.parameters)}   tags: {', '.join(run.tags) or '-'}")
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
    import logging

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
            # that state is _LOG_SETTLE_SECONDS old: the read that follows then gets them all.
            state = client.read_flow_run(run_id).state
            done = (
                state is not None
                and state.is_final()
                and (dt.datetime.now(dt.UTC) - state.timestamp).total_seconds()
                >= _LOG_SETTLE_SECONDS
            )
            # Lines come in commit order, so the next page starts where the last one ended.
            lines = client.read_logs(only_this_run, offset=seen)
            for line in lines:
                level = logging.getLevelName(line.level)
                print(f"{when(line.timestamp)} {level:<8} {line.name}: {line.message}")
            sys.stdout.flush()
            seen += len(lines)
            if not args.follow or done:
                return EXIT_OK
            if time.monotonic() >= deadline:
                print(f"(stopped following after {args.timeout:g} s)", file=sys.stderr)
                return EXIT_OK
            time.sleep(args.interval)


def cmd_runs_delete(args: argparse.Namespace) -> int:
    with get_client(sync_client=True) as client:
        client.delete_flow_run(args.id)
    print(f"Deleted flow run {args.id}")
    return EXIT_OK


def cmd_variables_ls(args: argparse.Namespace) -> int:
    with get_client(sync_client=True) as client:
        variables = client.read_variables()
    if args.json:
        print(_json([{"name": v.name, "value": v.value, "tags": v.tags} for v in variables]))
        return EXIT_OK
    rows = [[v.name, _short(_json(v.value), 60), ", ".join(v.tags)] for v in variables]
    print(render_table(["NAME", "VALUE", "TAGS"], rows))
    return EXIT_OK


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_variables_get(args: argparse.Namespace) -> int:
    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(args.name)
    if variable is None:
        raise ObjectNotFound(f"Variable {args.name!r} not found")
    print(_json(variable.value))
    return EXIT_OK


def cmd_variables_set(args: argparse.Namespace) -> int:
    from millstream.variables import Variable

    try:
        value = json.loads(args.value)
    except json.JSONDecodeError:
        value = args.value  # plain text is stored as a string
    try:
        Variable.set(args.name, value, tags=args.tag, overwrite=args.overwrite)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    print(f"Set variable {args.name!r}")
    return EXIT_OK


def cmd_variables_unset(args: argparse.Namespace) -> int:
    from millstream.variables import Variable

    if not Variable.unset(args.name):
        raise ObjectNotFound(f"Variable {args.name!r} not found")
    print(f"Unset variable {args.name!r}")
    return EXIT_OK


def cmd_db_path(args: argparse.Namespace) -> int:
    print(get_current_settings().database_path)
    return EXIT_OK


def cmd_db_vacuum(args: argparse.Namespace) -> int:
    path = get_current_settings().database_path
    if not path.exists():
        raise ObjectNotFound(f"No database at {path}")
    before = path.stat().st_size
    vacuum(path)
    print(f"Vacuumed {path}: {before} -> {path.stat().st_size} bytes")
    return EXIT_OK


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    with get_client(sync_client=True) as client:
        state = client.cancel_flow_run(args.id)
    print(f"Flow run {args.id}: {state.name}")
    return EXIT_OK


def _load_flow(target: str) -> Any:
    """``path/to/file.py:flow_fn`` or ``package.module:flow_fn`` -> the Flow object."""
    import importlib
    import importlib.util
    from pathlib import Path

    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise UsageError(f"{target!r}: give the flow as path/to/file.py:flow_function")
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.is_file():
                raise UsageError(f"{target!r}: file {where!r} not found")
            sys.path.insert(0, str(path.parent))
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{target!r}: cannot load the flow: {exc}") from None
    if not hasattr(obj, "to_deployment"):
        raise UsageError(f"{target!r} is not a flow")
    return obj


def cmd_serve(args: argparse.Namespace) -> int:
    from millstream.deployments import serve

    flow_obj = _load_flow(args.target)
    options: dict[str, Any] = {}
    if args.cron:
        options["cron"] = args.cron
    if args.interval is not None:
        if args.interval <= 0:
            raise UsageError(f"--interval must be positive, got {args.interval}")
        options["interval"] = args.interval
    serve(
        flow_obj.to_deployment(args.name or flow_obj.name, **options),
        limit=args.limit,
        webserver=args.webserver,
    )
    return EXIT_OK


def _parameters(pairs: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-p {pair!r}: write parameters as key=value")
        try:
            parameters[key] = json.loads(raw)
        except json.JSONDecodeError:
            parameters[key] = raw  # plain text is a string
    return parameters


def cmd_deployments_ls(args: argparse.Namespace) -> int:
    from millstream._engine.serve import deployments as engine_deployments
    from millstream._engine.store import get_store
    from millstream._sync import run_sync

    store = get_store(get_current_settings().database_path)

    async def read() -> Any:
        await store.ensure_open()
        return await engine_deployments.read_all(store)

    records = run_sync(lambda _executor: read())
    if args.json:
        print(_json([{"full_name": r.full_name, **msgspec.structs.asdict(r)} for r in records]))
        return EXIT_OK
    rows = [
        [
            r.full_name,
            str(r.id),
            "paused" if r.paused else "active",
            ", ".join(
                s.cron or (f"every {s.interval:g}s" if s.interval else s.rrule or "")
                for s in r.schedules
            )
            or "-",
        ]
        for r in records
    ]
    print(render_table(["DEPLOYMENT", "ID", "SCHEDULES", "WHEN"], rows))
    return EXIT_OK


def cmd_deployments_run(args: argparse.Namespace) -> int:
    from millstream._engine.exceptions import ParameterTypeError
    from millstream._sync import run_sync
    from millstream.deployments import arun_deployment

    parameters = _parameters(args.param)
    try:
        run = run_sync(
            lambda _executor: arun_deployment(
                args.name, parameters=parameters, timeout=None if args.watch else 0
            )
        )
    except ParameterTypeError as exc:
        raise UsageError(str(exc)) from None
    print(f"Flow run {run.name} ({run.id}): {run.state_name}")
    if not args.watch or run.state is None or run.state.is_completed():
        return EXIT_OK
    # As Prefect's `deployment run --watch`: a run that did not complete fails the command.
    ending = f": {run.state.message}" if run.state.message else "."
    print(f"Flow run finished in state {run.state_name!r}{ending}", file=sys.stderr)
    for text in _failure_details(run):
        print(text, file=sys.stderr)
    return EXIT_RUN_NOT_COMPLETED


def _failure_details(run: FlowRun) -> list[str]:
    """The recorded exception of a run that did not complete, and its error log lines (where
    tracebacks are logged)."""
    import logging
    import traceback

    from millstream._engine.exceptions import CancelledRun, CrashedRun, FailedRun
    from millstream._engine.model.states import get_state_exception

    assert run.state is not None
    details: list[str] = []
    try:
        exc: BaseException | None = get_state_exception(run.state)
    except Exception as load_error:  # a recorded exception that cannot be loaded here
        details.append(f"(its recorded exception cannot be loaded: {load_error})")
        exc = None
    # The engine's stand-ins only repeat the state message: only a real exception is news.
    if exc is not None and not isinstance(exc, FailedRun | CrashedRun | CancelledRun):
        details.append("".join(traceback.format_exception(exc)).rstrip("\n"))
    # A run's last lines are committed just after its final state.
    age = (dt.datetime.now(dt.UTC) - run.state.timestamp).total_seconds()
    if age < _LOG_SETTLE_SECONDS:
        time.sleep(_LOG_SETTLE_SECONDS - age)
    with get_client(sync_client=True) as client:
        errors = client.read_logs(
            LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run.id]),
                level=LogFilterLevel(ge_=logging.ERROR),
            )
        )
    details.extend(
        f"{when(line.timestamp)} {logging.getLevelName(line.level):<8} {line.name}: {line.message}"
        for line in errors
    )
    return details


def cmd_recover(args: argparse.Namespace) -> int:
    from millstream.recovery import recover

    report = recover(lease_seconds=args.lease)
    if args.json:
        print(_json(report))
    else:
        print(
            f"Resumed {len(report.resumed)} flow run(s), marked {len(report.crashed)} crashed, "
            f"skipped {len(report.skipped)}"
        )
        for run_id in report.resumed:
            print(f"  resumed {run_id}")
        for run_id in report.crashed:
            print(f"  crashed {run_id} (cannot be resumed)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``millstream`` command."""
    parser = argparse.ArgumentParser(prog="millstream", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    runs = commands.add_parser("runs", help="flow runs").add_subparsers(dest="sub", required=True)
    ls = runs.add_parser("ls", help="list flow runs, newest first")
    ls.add_argument("--flow", action="append", help="only runs of this flow (repeatable)")
    ls.add_argument(
        "--state",
        action="append",
        default=[],
        help="only runs in this state type: completed, failed, ... (repeatable)",
    )
    ls.add_argument("--since", help="only runs started since (30m, 2h, 7d or ISO time)")
    ls.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    ls.add_argument("--json", action="store_true", help="JSON for scripts")
    ls.set_defaults(handler=cmd_runs_ls)
    inspect_ = runs.add_parser("inspect", help="states and task runs of a flow run")
    inspect_.add_argument("id")
    inspect_.add_argument("--json", action="store_true")
    inspect_.set_defaults(handler=cmd_runs_inspect)
    logs = runs.add_parser("logs", help="log lines of a flow run")
    logs.add_argument("id")
    logs.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    logs.add_argument(
        "--timeout", type=float, default=3600.0, help="stop following after this many seconds"
    )
    logs.set_defaults(handler=cmd_runs_logs)
    delete = runs.add_parser("delete", help="delete a flow run, its task runs and logs")
    delete.add_argument("id")
    delete.set_defaults(handler=cmd_runs_delete)
    cancel = runs.add_parser("cancel", help="cancel a flow run (in whichever process runs it)")
    cancel.add_argument("id")
    cancel.set_defaults(handler=cmd_runs_cancel)

    serve_cmd = commands.add_parser("serve", help="serve a flow as a deployment (a worker)")
    serve_cmd.add_argument("target", help="path/to/file.py:flow_function")
    serve_cmd.add_argument("--name", help="deployment name (default: the flow's name)")
    when = serve_cmd.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron schedule, e.g. '*/5 * * * *'")
    when.add_argument("--interval", type=float, help="interval schedule in seconds")
    serve_cmd.add_argument("--limit", type=int, default=None, help="concurrent runs at most")
    serve_cmd.add_argument("--webserver", action="store_true", help="serve the local HTTP API")
    serve_cmd.set_defaults(handler=cmd_serve)

    deps = commands.add_parser("deployments", help="deployments").add_subparsers(
        dest="sub", required=True
    )
    d_ls = deps.add_parser("ls")
    d_ls.add_argument("--json", action="store_true")
    d_ls.set_defaults(handler=cmd_deployments_ls)
    d_run = deps.add_parser("run", help="trigger a run of FLOW/DEPLOYMENT")
    d_run.add_argument("name")
    d_run.add_argument("-p", "--param", action="append", default=[], help="key=value (JSON)")
    d_run.add_argument("--watch", action="store_true", help="wait until the run ends")
    d_run.set_defaults(handler=cmd_deployments_run)

    variables = commands.add_parser("variables", help="variables").add_subparsers(
        dest="sub", required=True
    )
    v_ls = variables.add_parser("ls")
    v_ls.add_argument("--json", action="store_true")
    v_ls.set_defaults(handler=cmd_variables_ls)
    v_get = variables.add_parser("get")
    v_get.add_argument("name")
    v_get.set_defaults(handler=cmd_variables_get)
    v_set = variables.add_parser("set")
    v_set.add_argument("name")
    v_set.add_argument("value", help="JSON, or plain text stored as a string")
    v_set.add_argument("--overwrite", action="store_true")
    v_set.add_argument("--tag", action="append", default=[])
    v_set.set_defaults(handler=cmd_variables_set)
    v_unset = variables.add_parser("unset")
    v_unset.add_argument("name")
    v_unset.set_defaults(handler=cmd_variables_unset)

    db = commands.add_parser("db", help="the database file").add_subparsers(
        dest="sub", required=True
    )
    db.add_parser("path").set_defaults(handler=cmd_db_path)
    db.add_parser("vacuum").set_defaults(handler=cmd_db_vacuum)

    rec = commands.add_parser("recover", help="resume flow runs whose process died")
    rec.add_argument("--lease", type=float, default=None, help="heartbeat age (s) for other hosts")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler=cmd_recover)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except ObjectNotFound as exc:
        print(f"Not found: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        # Ctrl-C while following logs (or waiting on a run) is a normal way to stop.
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MillstreamError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
