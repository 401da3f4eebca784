"""The argparse tree of the ``millstream`` command: its subcommands, options and handlers."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# The handlers are looked up on their modules when the parser is built (not imported by name),
# so that a test can replace one with monkeypatch.setattr(<module>, "cmd_...", ...).
from millstream.cli import concurrency, db, deployments, runs, task_worker, variables

__all__ = [
    "DESCRIPTION",
    "build_parser",
]

# What ``add_subparsers`` returns: a class argparse keeps private, generic only to type checkers.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DESCRIPTION = (
    "The ``millstream`` command: list and inspect runs, follow logs, manage variables, recover."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``millstream`` command."""
    parser = argparse.ArgumentParser(prog="millstream", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_runs(commands)
    _add_serve(commands)
    _add_deployments(commands)
    _add_variables(commands)
    _add_db(commands)
    _add_concurrency(commands)
    _add_task_worker(commands)
    return parser


def _add_runs(commands: _Commands) -> None:
    """``runs ls|inspect|logs|delete|cancel``."""
    group = commands.add_parser("runs", help="flow runs").add_subparsers(dest="sub", required=True)
    ls = group.add_parser("ls", help="list flow runs, newest first")
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
    ls.set_defaults(handler=runs.cmd_runs_ls)
    inspect_ = group.add_parser("inspect", help="states and task runs of a flow run")
    inspect_.add_argument("id")
    inspect_.add_argument("--json", action="store_true")
    inspect_.set_defaults(handler=runs.cmd_runs_inspect)
    logs = group.add_parser("logs", help="log lines of a flow run")
    logs.add_argument("id")
    logs.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    logs.add_argument(
        "--timeout", type=float, default=3600.0, help="stop following after this many seconds"
    )
    logs.set_defaults(handler=runs.cmd_runs_logs)
    delete = group.add_parser("delete", help="delete a flow run, its task runs and logs")
    delete.add_argument("id")
    delete.set_defaults(handler=runs.cmd_runs_delete)
    cancel = group.add_parser("cancel", help="cancel a flow run (in whichever process runs it)")
    cancel.add_argument("id")
    cancel.set_defaults(handler=runs.cmd_runs_cancel)


def _add_serve(commands: _Commands) -> None:
    """``serve TARGET``."""
    serve_cmd = commands.add_parser("serve", help="serve a flow as a deployment (a worker)")
    serve_cmd.add_argument("target", help="path/to/file.py:flow_function")
    serve_cmd.add_argument("--name", help="deployment name (default: the flow's name)")
    schedule = serve_cmd.add_mutually_exclusive_group()
    schedule.add_argument("--cron", help="cron schedule, e.g. '*/5 * * * *'")
    schedule.add_argument("--interval", type=float, help="interval schedule in seconds")
    serve_cmd.add_argument("--limit", type=int, default=None, help="concurrent runs at most")
    serve_cmd.add_argument("--webserver", action="store_true", help="serve the local HTTP API")
    serve_cmd.set_defaults(handler=deployments.cmd_serve)


def _add_deployments(commands: _Commands) -> None:
    """``deployments ls|run``."""
    group = commands.add_parser("deployments", help="deployments").add_subparsers(
        dest="sub", required=True
    )
    d_ls = group.add_parser("ls")
    d_ls.add_argument("--json", action="store_true")
    d_ls.set_defaults(handler=deployments.cmd_deployments_ls)
    d_run = group.add_parser("run", help="trigger a run of FLOW/DEPLOYMENT")
    d_run.add_argument("name")
    d_run.add_argument("-p", "--param", action="append", default=[], help="key=value (JSON)")
    d_run.add_argument("--watch", action="store_true", help="wait until the run ends")
    d_run.set_defaults(handler=deployments.cmd_deployments_run)


def _add_variables(commands: _Commands) -> None:
    """``variables ls|get|set|unset``."""
    group = commands.add_parser("variables", help="variables").add_subparsers(
        dest="sub", required=True
    )
    v_ls = group.add_parser("ls")
    v_ls.add_argument("--json", action="store_true")
    v_ls.set_defaults(handler=variables.cmd_variables_ls)
    v_get = group.add_parser("get")
    v_get.add_argument("name")
    v_get.set_defaults(handler=variables.cmd_variables_get)
    v_set = group.add_parser("set")
    v_set.add_argument("name")
    v_set.add_argument("value", help="JSON, or plain text stored as a string")
    v_set.add_argument("--overwrite", action="store_true")
    v_set.add_argument("--tag", action="append", default=[])
    v_set.set_defaults(handler=variables.cmd_variables_set)
    v_unset = group.add_parser("unset")
    v_unset.add_argument("name")
    v_unset.set_defaults(handler=variables.cmd_variables_unset)


def _add_db(commands: _Commands) -> None:
    """``db path|vacuum`` and ``recover``."""
    group = commands.add_parser("db", help="the database file").add_subparsers(
        dest="sub", required=True
    )
    group.add_parser("path").set_defaults(handler=db.cmd_db_path)
    group.add_parser("vacuum").set_defaults(handler=db.cmd_db_vacuum)
    rec = commands.add_parser("recover", help="resume flow runs whose process died")
    rec.add_argument("--lease", type=float, default=None, help="heartbeat age (s) for other hosts")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler=db.cmd_recover)


def _add_concurrency(commands: _Commands) -> None:
    """``gcl create|ls|inspect|update|delete`` and ``concurrency-limit create|ls|inspect|
    reset|delete``."""
    group = commands.add_parser(
        "gcl", aliases=["global-concurrency-limit"], help="global concurrency and rate limits"
    ).add_subparsers(dest="sub", required=True)
    create = group.add_parser("create", help="create a global limit")
    create.add_argument("name")
    create.add_argument("--limit", "-l", type=int, required=True, help="slots at most")
    create.add_argument("--slot-decay-per-second", type=float, help="decay, for rate limits")
    create.add_argument("--disable", action="store_true", help="create it inactive")
    create.set_defaults(handler=concurrency.cmd_gcl_create)
    ls = group.add_parser("ls", help="list global limits")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=concurrency.cmd_gcl_ls)
    inspect_ = group.add_parser("inspect", help="one global limit")
    inspect_.add_argument("name")
    inspect_.add_argument("--json", action="store_true")
    inspect_.set_defaults(handler=concurrency.cmd_gcl_inspect)
    update = group.add_parser("update", help="change a global limit")
    update.add_argument("name")
    update.add_argument("--limit", "-l", type=int)
    update.add_argument("--active-slots", type=int)
    update.add_argument("--slot-decay-per-second", type=float)
    switch = update.add_mutually_exclusive_group()
    switch.add_argument("--enable", action="store_true")
    switch.add_argument("--disable", action="store_true")
    update.set_defaults(handler=concurrency.cmd_gcl_update)
    delete = group.add_parser("delete", help="delete a global limit")
    delete.add_argument("name")
    delete.set_defaults(handler=concurrency.cmd_gcl_delete)

    tags = commands.add_parser(
        "concurrency-limit", help="task-run concurrency limits by tag"
    ).add_subparsers(dest="sub", required=True)
    t_create = tags.add_parser("create", help="limit the task runs with a tag")
    t_create.add_argument("tag")
    t_create.add_argument("concurrency_limit", type=int)
    t_create.set_defaults(handler=concurrency.cmd_tag_limit_create)
    t_ls = tags.add_parser("ls", help="list tag limits")
    t_ls.add_argument("--json", action="store_true")
    t_ls.set_defaults(handler=concurrency.cmd_tag_limit_ls)
    t_inspect = tags.add_parser("inspect", help="a tag limit and its holders")
    t_inspect.add_argument("tag")
    t_inspect.add_argument("--json", action="store_true")
    t_inspect.set_defaults(handler=concurrency.cmd_tag_limit_inspect)
    t_reset = tags.add_parser("reset", help="free every slot of a tag limit")
    t_reset.add_argument("tag")
    t_reset.set_defaults(handler=concurrency.cmd_tag_limit_reset)
    t_delete = tags.add_parser("delete", help="delete a tag limit")
    t_delete.add_argument("tag")
    t_delete.set_defaults(handler=concurrency.cmd_tag_limit_delete)


def _add_task_worker(commands: _Commands) -> None:
    """``task-worker TARGET... [--limit N] [--timeout S]``."""
    worker = commands.add_parser("task-worker", help="run tasks queued with Task.delay()")
    worker.add_argument("targets", nargs="+", help="path/to/file.py:task_function")
    worker.add_argument("--limit", type=int, default=10, help="runs at once at most (10)")
    worker.add_argument("--timeout", type=float, default=None, help="stop after this many s")
    worker.set_defaults(handler=task_worker.cmd_task_worker)
