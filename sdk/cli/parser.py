"""The argparse tree of the ``millstream`` command: its subcommands, options and handlers.

The parser is the standard library's argparse (the core dependencies are fixed at four, and
argparse is well kept), made stricter: no abbreviated options (``allow_abbrev=False`` on every
parser), and a mistyped subcommand or option gets the closest known names (difflib) in its
error. Handlers are named ``"module:function"`` and imported only when their command runs, so
that ``millstream --help`` imports no client code.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterator
from typing import Any, NoReturn, TypeAlias, cast

__all__ = [
    "DESCRIPTION",
    "build_parser",
]

# What ``add_subparsers`` returns: a class argparse keeps private, generic only to type checkers.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DESCRIPTION = (
    "The millstream command: list and inspect runs, follow logs, serve and trigger "
    "deployments, manage variables, recover."
)
EPILOG = "Exit codes: 0 ok, 1 not found (or a run did not complete), 2 bad usage."

_CHOICE = re.compile(r"invalid choice: '?([^' ]+?)'? \(choose from (.*)\)")
_UNKNOWN = re.compile(r"unrecognized arguments: (.*)")


class _Parser(argparse.ArgumentParser):
    """argparse with no prefix matching and suggestions for a mistyped name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error, with "did you mean ...?" when a name is close."""
        hint = _suggestion(self, message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    choice = _CHOICE.search(message)
    if choice:
        given = choice[1]
        known = [c.strip().strip("'") for c in choice[2].split(",")]
        close = difflib.get_close_matches(given, known, n=1, cutoff=0.5)
        return f"; did you mean {close[0]!r}?" if close else ""
    unknown = _UNKNOWN.search(message)
    if unknown:
        flags = sorted({o for p in _parsers(parser) for a in p._actions for o in a.option_strings})
        hints = []
        for word in unknown[1].split():
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.6)
                if close:
                    hints.append((word, close[0]))
        if len(hints) == 1:
            return f"; did you mean {hints[0][1]!r}?"
        shown = ", ".join(f"{close!r} for {word!r}" for word, close in hints)
        return f"; did you mean {shown}?" if hints else ""
    return ""


class _Version(argparse.Action):
    """``--version``: the installed distribution's version (read only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("millstream")
        except PackageNotFoundError:
            text = "unknown (not installed)"
        print(f"millstream {text}")
        parser.exit()


def _group(
    commands: _Commands, name: str, *, help: str, aliases: list[str] | None = None
) -> _Commands:
    """A command group (``millstream NAME SUB ...``): one of its subcommands is required."""
    parser = commands.add_parser(name, help=help, aliases=aliases or [])
    return parser.add_subparsers(dest="sub", required=True)


def _simple(
    group: _Commands,
    name: str,
    handler: str,
    *positionals: str,
    help: str | None = None,
    json: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand of plain positional arguments (and ``--json`` when ``json``)."""
    # argparse lists a subcommand given ``help=None`` among the documented ones: pass it only
    # when there is one.
    sub = group.add_parser(name) if help is None else group.add_parser(name, help=help)
    for positional in positionals:
        sub.add_argument(positional)
    if json:
        sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=handler)
    return sub


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``millstream`` command."""
    parser = _Parser(prog="millstream", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action=_Version)
    # Every sub-parser is a _Parser (argparse makes them of the parent's class); the groups'
    # functions take the plain type, which other command groups use too.
    commands = cast(
        _Commands, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    )
    _add_runs(commands)
    _add_serve(commands)
    _add_deployments(commands)
    _add_variables(commands)
    _add_db(commands)
    _add_artifacts(commands)
    _add_dashboard(commands)
    _add_completion(commands)
    _add_concurrency(commands)
    _add_task_worker(commands)
    return parser


def _add_runs(commands: _Commands) -> None:
    """``runs ls|inspect|logs|delete|cancel``."""
    group = _group(commands, "runs", help="flow runs")
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
    ls.set_defaults(handler="runs:cmd_runs_ls")
    inspect_ = group.add_parser("inspect", help="states and task runs of a flow run")
    inspect_.add_argument("id", help="a flow run id, or the start of one")
    inspect_.add_argument("--json", action="store_true")
    inspect_.set_defaults(handler="runs:cmd_runs_inspect")
    logs = group.add_parser("logs", help="log lines of a flow run")
    logs.add_argument("id")
    logs.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    logs.add_argument(
        "--timeout", type=float, default=3600.0, help="stop following after this many seconds"
    )
    logs.add_argument("--json", action="store_true", help="one JSON object a line")
    logs.set_defaults(handler="runs:cmd_runs_logs")
    _simple(
        group,
        "delete",
        "runs:cmd_runs_delete",
        "id",
        help="delete a flow run, its task runs and logs",
    )
    _simple(
        group,
        "cancel",
        "runs:cmd_runs_cancel",
        "id",
        help="cancel a flow run (in whichever process runs it)",
    )


def _add_serve(commands: _Commands) -> None:
    """``serve TARGET``."""
    serve_cmd = commands.add_parser("serve", help="serve a flow as a deployment (a worker)")
    serve_cmd.add_argument("target", help="path/to/file.py:flow_function")
    serve_cmd.add_argument("--name", help="deployment name (default: the flow's name)")
    schedule = serve_cmd.add_mutually_exclusive_group()
    schedule.add_argument("--cron", help="cron schedule, e.g. '*/5 * * * *'")
    schedule.add_argument("--interval", type=float, help="interval schedule in seconds")
    serve_cmd.add_argument(
        "--timezone", help="the time zone of --cron, e.g. Europe/Paris (default UTC)"
    )
    serve_cmd.add_argument("--limit", type=int, default=None, help="concurrent runs at most")
    serve_cmd.add_argument("--webserver", action="store_true", help="serve the local HTTP API")
    serve_cmd.set_defaults(handler="deployments:cmd_serve")


def _add_deployments(commands: _Commands) -> None:
    """``deployments ls|run``."""
    group = _group(commands, "deployments", help="deployments")
    d_ls = group.add_parser("ls", help="list deployments and their schedules")
    d_ls.add_argument("--json", action="store_true", help="JSON for scripts")
    d_ls.set_defaults(handler="deployments:cmd_deployments_ls")
    d_run = group.add_parser("run", help="trigger a run of FLOW/DEPLOYMENT")
    d_run.add_argument("name")
    d_run.add_argument("-p", "--param", action="append", default=[], help="key=value (JSON)")
    d_run.add_argument("--watch", action="store_true", help="wait until the run ends")
    d_run.set_defaults(handler="deployments:cmd_deployments_run")


def _add_variables(commands: _Commands) -> None:
    """``variables ls|get|set|unset``."""
    group = _group(commands, "variables", help="variables")
    _simple(group, "ls", "variables:cmd_variables_ls", json=True)
    _simple(group, "get", "variables:cmd_variables_get", "name")
    v_set = group.add_parser("set")
    v_set.add_argument("name")
    v_set.add_argument("value", help="JSON, or plain text stored as a string")
    v_set.add_argument("--overwrite", action="store_true")
    v_set.add_argument("--tag", action="append", default=[])
    v_set.set_defaults(handler="variables:cmd_variables_set")
    _simple(group, "unset", "variables:cmd_variables_unset", "name")


def _add_db(commands: _Commands) -> None:
    """``db path|migrate|vacuum|check`` and ``recover``."""
    group = _group(commands, "db", help="the database (file or PostgreSQL)")
    group.add_parser("path").set_defaults(handler="db:cmd_db_path")
    group.add_parser("migrate").set_defaults(handler="db:cmd_db_migrate")
    group.add_parser("vacuum").set_defaults(handler="db:cmd_db_vacuum")
    group.add_parser("check", help="check the file for damage").set_defaults(
        handler="db:cmd_db_check"
    )
    rec = commands.add_parser("recover", help="resume flow runs whose process died")
    rec.add_argument("--lease", type=float, default=None, help="heartbeat age (s) for other hosts")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler="db:cmd_recover")


def _add_artifacts(commands: _Commands) -> None:
    """``artifacts ls|inspect``."""
    group = _group(commands, "artifacts", help="artifacts of runs")
    a_ls = group.add_parser("ls", help="the newest artifact of each key")
    a_ls.add_argument("--all", action="store_true", help="every artifact, keyless ones too")
    a_ls.add_argument("--limit", type=int, default=None, help="at most this many")
    a_ls.add_argument("--json", action="store_true", help="JSON for scripts")
    a_ls.set_defaults(handler="artifacts:cmd_artifacts_ls")
    a_inspect = group.add_parser("inspect", help="every version of an artifact key")
    a_inspect.add_argument("key")
    a_inspect.add_argument("--limit", type=int, default=10, help="at most this many versions")
    a_inspect.add_argument("--json", action="store_true", help="JSON for scripts")
    a_inspect.set_defaults(handler="artifacts:cmd_artifacts_inspect")


def _add_dashboard(commands: _Commands) -> None:
    """``dashboard [--host H] [--port P]``."""
    dash = commands.add_parser("dashboard", help="serve the web dashboard (extra: ui)")
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dash.add_argument("--port", type=int, default=4200, help="port (default 4200)")
    dash.set_defaults(handler="dashboard:cmd_dashboard")


def _add_completion(commands: _Commands) -> None:
    """``completion bash|zsh|tcsh`` (the ``cli`` extra: shtab)."""
    comp = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description='Print a completion script: eval "$(millstream completion bash)"',
    )
    comp.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    comp.set_defaults(handler="completion:cmd_completion")


def _add_concurrency(commands: _Commands) -> None:
    """``gcl create|ls|inspect|update|delete`` and ``concurrency-limit create|ls|inspect|
    reset|delete``."""
    group = _group(
        commands,
        "gcl",
        help="global concurrency and rate limits",
        aliases=["global-concurrency-limit"],
    )
    create = group.add_parser("create", help="create a global limit")
    create.add_argument("name")
    create.add_argument("--limit", "-l", type=int, required=True, help="slots at most")
    create.add_argument("--slot-decay-per-second", type=float, help="decay, for rate limits")
    create.add_argument("--disable", action="store_true", help="create it inactive")
    create.set_defaults(handler="concurrency:cmd_gcl_create")
    _simple(group, "ls", "concurrency:cmd_gcl_ls", help="list global limits", json=True)
    _simple(
        group, "inspect", "concurrency:cmd_gcl_inspect", "name", help="one global limit", json=True
    )
    update = group.add_parser("update", help="change a global limit")
    update.add_argument("name")
    update.add_argument("--limit", "-l", type=int)
    update.add_argument("--active-slots", type=int)
    update.add_argument("--slot-decay-per-second", type=float)
    switch = update.add_mutually_exclusive_group()
    switch.add_argument("--enable", action="store_true")
    switch.add_argument("--disable", action="store_true")
    update.set_defaults(handler="concurrency:cmd_gcl_update")
    _simple(group, "delete", "concurrency:cmd_gcl_delete", "name", help="delete a global limit")

    tags = _group(commands, "concurrency-limit", help="task-run concurrency limits by tag")
    t_create = tags.add_parser("create", help="limit the task runs with a tag")
    t_create.add_argument("tag")
    t_create.add_argument("concurrency_limit", type=int)
    t_create.set_defaults(handler="concurrency:cmd_tag_limit_create")
    _simple(tags, "ls", "concurrency:cmd_tag_limit_ls", help="list tag limits", json=True)
    for sub, handler, help_ in (
        ("inspect", "cmd_tag_limit_inspect", "a tag limit and its holders"),
        ("reset", "cmd_tag_limit_reset", "free every slot of a tag limit"),
        ("delete", "cmd_tag_limit_delete", "delete a tag limit"),
    ):
        _simple(tags, sub, f"concurrency:{handler}", "tag", help=help_, json=sub == "inspect")


def _add_task_worker(commands: _Commands) -> None:
    """``task-worker TARGET... [--limit N] [--timeout S]``."""
    worker = commands.add_parser("task-worker", help="run tasks queued with Task.delay()")
    worker.add_argument("targets", nargs="+", help="path/to/file.py:task_function")
    worker.add_argument("--limit", type=int, default=10, help="runs at once at most (10)")
    worker.add_argument("--timeout", type=float, default=None, help="stop after this many s")
    worker.set_defaults(handler="task_worker:cmd_task_worker")
