"""Log lines reach the store from the log thread as epoch seconds: stored as the same
microseconds a ``datetime`` of that instant would be (no datetime built per line)."""

from __future__ import annotations

import datetime as dt
import random
import uuid

from millstream._engine.model.records import LogRecord
from millstream._engine.store.rows import log_line_row, log_row


def test_a_line_stored_from_its_creation_time_matches_one_stored_from_a_datetime():
    gen = random.Random(7)
    flow_id, task_id = uuid.uuid4(), uuid.uuid4()
    created_values = [gen.uniform(0, 2_000_000_000) for _ in range(10_000)]
    # Ties at half a microsecond and values just under a whole second.
    created_values += [1_700_000_000.0000005, 1_700_000_000.9999996, 1_700_000_001.0]
    for created in created_values:
        from_thread = log_line_row(flow_id, task_id, 20, "millstream", "m", created)
        record = LogRecord(
            flow_run_id=flow_id,
            task_run_id=task_id,
            level=20,
            name="millstream",
            message="m",
            timestamp=dt.datetime.fromtimestamp(created, dt.UTC),
        )
        from_record = log_row(record)
        assert from_thread[:5] == from_record[:5]
        assert abs(from_thread[5] - from_record[5]) <= 1, created


def test_ids_are_stored_as_bytes_and_missing_ids_as_null():
    row = log_line_row(None, None, 30, "x", "y", 1.5)
    # The last column: the extra fields (NULL: the line has none).
    assert row == (None, None, 30, "x", "y", 1_500_000, None)
    run_id = uuid.uuid4()
    assert log_line_row(run_id, None, 30, "x", "y", 0.0)[0] == run_id.bytes
