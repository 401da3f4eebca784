"""The log thread's ready rows: byte-for-byte what the store would have made of a record."""

from __future__ import annotations

import datetime as dt
import random

from millstream._engine.logs.sink import _Stamps
from millstream._engine.store.sqlite import _ts


def test_row_timestamps_match_the_stores_text_for_the_same_creation_time():
    rng = random.Random(1234)
    stamps = _Stamps()
    # Whole seconds, half-microsecond ties, the edge just under a second, and random times in
    # order (as lines arrive: the per-second prefix is reused) and out of order.
    times = [1_700_000_000.0, 1_700_000_000.0000005, 1_700_000_000.9999996, 0.0, 86_399.9999999]
    times += sorted(1_700_000_000 + rng.random() * 5 for _ in range(5_000))
    times += [rng.uniform(0, 4_000_000_000) for _ in range(5_000)]
    for created in times:
        expected = _ts(dt.datetime.fromtimestamp(created, dt.UTC))
        assert stamps.text(created) == expected, created
