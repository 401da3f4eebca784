"""``python -m millstream.cli``: the ``millstream`` command."""

import sys

from millstream.cli import main

sys.exit(main())
