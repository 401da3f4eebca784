"""The ``dashboard`` command: serve the web dashboard over the current database."""

from __future__ import annotations

import argparse

from millstream.cli.output import EXIT_OK, UsageError

__all__ = ["cmd_dashboard"]


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``dashboard``: serve ``millstream.dashboard.app()`` with uvicorn until interrupted."""
    from millstream.dashboard import serve

    try:
        serve(host=args.host, port=args.port)
    except (ValueError, ImportError) as exc:  # a refused bind, or the 'ui' extra missing
        raise UsageError(str(exc)) from None
    return EXIT_OK
