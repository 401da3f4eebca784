"""The ``millstream`` command: list and inspect runs, follow logs, manage variables, recover."""

from millstream.cli.runs import build_parser, main

__all__ = ["build_parser", "main"]
