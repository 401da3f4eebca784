"""The ``variables`` commands: list, get, set and unset variables."""

from __future__ import annotations

import argparse
import json

from millstream._engine.exceptions import ObjectNotFound
from millstream._tables import render_table
from millstream.cli.output import EXIT_OK, UsageError, as_json
from millstream.client.orchestration import get_client

__all__ = [
    "cmd_variables_get",
    "cmd_variables_ls",
    "cmd_variables_set",
    "cmd_variables_unset",
]


def cmd_variables_ls(args: argparse.Namespace) -> int:
    """``variables ls``: every variable, as a table or JSON."""
    with get_client(sync_client=True) as client:
        variables = client.read_variables()
    if args.json:
        print(as_json([{"name": v.name, "value": v.value, "tags": v.tags} for v in variables]))
        return EXIT_OK
    rows = [[v.name, _short(as_json(v.value), 60), ", ".join(v.tags)] for v in variables]
    print(render_table(["NAME", "VALUE", "TAGS"], rows))
    return EXIT_OK


def _short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``...`` where it was cut."""
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_variables_get(args: argparse.Namespace) -> int:
    """``variables get``: a variable's value, as JSON."""
    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(args.name)
    if variable is None:
        raise ObjectNotFound(f"Variable {args.name!r} not found")
    print(as_json(variable.value))
    return EXIT_OK


def cmd_variables_set(args: argparse.Namespace) -> int:
    """``variables set``: set a variable from JSON (or plain text, stored as a string)."""
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
    """``variables unset``: delete a variable."""
    from millstream.variables import Variable

    if not Variable.unset(args.name):
        raise ObjectNotFound(f"Variable {args.name!r} not found")
    print(f"Unset variable {args.name!r}")
    return EXIT_OK
