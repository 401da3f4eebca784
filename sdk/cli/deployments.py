"""The ``serve`` command (a flow served as a deployment) and the ``deployments`` commands."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

import msgspec

from millstream._engine.model.records import FlowRun
from millstream._engine.settings import get_current_settings
from millstream.cli.loading import load_target
from millstream.cli.output import (
    EXIT_OK,
    EXIT_RUN_NOT_COMPLETED,
    LOG_SETTLE_SECONDS,
    UsageError,
    as_json,
    log_line,
    table,
)
from millstream.client.orchestration import get_client
from millstream.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

__all__ = [
    "cmd_deployments_ls",
    "cmd_deployments_run",
    "cmd_serve",
]


def _load_flow(target: str) -> Any:
    """``path/to/file.py:flow_fn`` or ``package.module:flow_fn`` -> the Flow object."""
    obj = load_target(target, "flow")
    if not hasattr(obj, "to_deployment"):
        raise UsageError(f"{target!r} is not a flow")
    return obj


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: serve a flow as a deployment (a worker) until stopped."""
    from millstream.deployments import serve

    if args.timezone and not args.cron:
        raise UsageError("--timezone applies to a --cron schedule")
    flow_obj = _load_flow(args.target)
    options: dict[str, Any] = {}
    if args.cron and args.timezone:
        options["schedules"] = [{"cron": args.cron, "timezone": args.timezone}]
    elif args.cron:
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
    """``-p key=value`` pairs -> parameters: each value JSON, or plain text as a string."""
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
    """``deployments ls``: the deployments and their schedules, as a table or JSON."""
    from millstream._engine.serve import deployments as engine_deployments
    from millstream._engine.store import get_store
    from millstream._sync import run_sync

    store = get_store(get_current_settings().database_path)

    async def read() -> Any:
        await store.ensure_open()
        return await engine_deployments.read_all(store)

    records = run_sync(lambda _executor: read())
    if args.json:
        print(as_json([{"full_name": r.full_name, **msgspec.structs.asdict(r)} for r in records]))
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
    print(table(["DEPLOYMENT", "ID", "STATUS", "SCHEDULES"], rows))
    return EXIT_OK


def cmd_deployments_run(args: argparse.Namespace) -> int:
    """``deployments run``: trigger a run of a deployment; with ``--watch``, wait for its end."""
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
    if age < LOG_SETTLE_SECONDS:
        time.sleep(LOG_SETTLE_SECONDS - age)
    with get_client(sync_client=True) as client:
        errors = client.read_logs(
            LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run.id]),
                level=LogFilterLevel(ge_=logging.ERROR),
            )
        )
    details.extend(log_line(line) for line in errors)
    return details
