"""The ``millstream`` command: list and inspect runs, follow logs, manage variables, recover.

Built on the standard library's argparse (the project keeps its core dependencies to four;
argparse is well kept and, made strict in ``parser``, suggests the closest names for a typo).
Exit codes: 0 ok, 1 not found (or a watched run did not complete, or nothing to cancel),
2 bad usage. Output piped into a command that stops reading (``| head``) ends quietly.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from millstream.cli.parser import build_parser

__all__ = ["build_parser", "main"]


_COMMAND_MODULES = frozenset({"completion", "db", "deployments", "runs", "variables"})


def __getattr__(name: str) -> Any:
    # The command modules are imported when a command runs; `millstream.cli.runs` still works.
    if name in _COMMAND_MODULES:
        return importlib.import_module(f"millstream.cli.{name}")
    raise AttributeError(f"module 'millstream.cli' has no attribute {name!r}")


def _handler(spec: str | Callable[[Any], int]) -> Callable[[Any], int]:
    # "module:function" names a handler in millstream.cli, imported now (and looked up on its
    # module, so monkeypatch.setattr on it is honoured); a callable is used as it is.
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    found: Callable[[Any], int] = getattr(importlib.import_module(f"millstream.cli.{module}"), name)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported once a command is to run: `millstream --help` and usage errors load only
    # argparse and the parser (the output helpers bring msgspec and the engine's records).
    from millstream._engine.exceptions import MillstreamError, ObjectNotFound
    from millstream.cli.output import EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_USAGE, UsageError

    try:
        code: int = _handler(args.handler)(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say. Later flushes (at exit) would
        # raise again, so stdout is pointed at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
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
