"""The ``completion`` command: a shell completion script for ``millstream`` (shtab)."""

from __future__ import annotations

import argparse

from millstream.cli.output import EXIT_OK, UsageError

__all__ = ["cmd_completion"]


def cmd_completion(args: argparse.Namespace) -> int:
    """``completion SHELL``: print the completion script (the ``cli`` extra: shtab)."""
    try:
        import shtab
    except ImportError:
        raise UsageError(
            "shell completion needs the 'cli' extra: pip install 'millstream[cli]'"
        ) from None
    from millstream.cli.parser import build_parser

    print(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK
