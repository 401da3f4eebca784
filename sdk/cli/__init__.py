"""The ``millstream`` command: list and inspect runs, follow logs, manage variables, recover.

Built on the standard library's argparse (the project keeps its core dependencies to four).
Exit codes: 0 ok, 1 not found (or a watched run did not complete), 2 bad usage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from millstream._engine.exceptions import MillstreamError, ObjectNotFound
from millstream.cli.output import EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_USAGE, UsageError
from millstream.cli.parser import build_parser

__all__ = ["build_parser", "main"]


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
