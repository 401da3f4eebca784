"""``python -m millstream``: the command line (the same as the ``millstream`` command)."""

from millstream.cli import main

raise SystemExit(main())
