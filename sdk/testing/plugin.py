"""The pytest plugin (entry point ``pytest11``): fixtures for testing flows.

- ``millstream_harness``: a hermetic engine for one test (its home is under the test's
  ``tmp_path``, kept by pytest for a look after a failure).
- ``millstream_session_harness``: one hermetic engine shared by the whole session (per
  pytest-xdist worker); quicker when tests need not be isolated from each other.
- ``millstream_runs``: a ``RunReader`` of the database in force (flow runs, task runs, states,
  logs), for asserting on what a test's flows recorded.
- ``millstream_clock``: a ``FastClock`` for the test: retry delays, schedules and sleeps take
  no time while the recorded timestamps move on.
- ``millstream_frozen_clock``: a ``FrozenClock``: time stands still until ``advance()``.

No fixture is autouse: a project opts in, e.g. in its ``conftest.py``::

    @pytest.fixture(autouse=True)
    def _millstream(millstream_harness):
        yield millstream_harness
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Millstream is imported by the fixtures, not here: the plugin is loaded by every pytest run in
# an environment that has millstream installed, and costs those runs nothing.
if TYPE_CHECKING:
    from millstream._engine.clock import FastClock, FrozenClock
    from millstream.testing import MillstreamTestHarness, RunReader

__all__ = [
    "millstream_clock",
    "millstream_frozen_clock",
    "millstream_harness",
    "millstream_runs",
    "millstream_session_harness",
]


@pytest.fixture
def millstream_harness(tmp_path: Path) -> Iterator[MillstreamTestHarness]:
    """A hermetic Millstream engine on a database of this test's own."""
    from millstream.testing import millstream_test_harness

    with millstream_test_harness(home=tmp_path / "millstream-home") as harness:
        yield harness


@pytest.fixture(scope="session")
def millstream_session_harness(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MillstreamTestHarness]:
    """A hermetic Millstream engine shared by every test of the session (of this worker)."""
    from millstream.testing import millstream_test_harness

    with millstream_test_harness(home=tmp_path_factory.mktemp("millstream-home")) as harness:
        yield harness


@pytest.fixture
def millstream_runs() -> RunReader:
    """Reads back the runs recorded in the database in force (use it with a harness)."""
    from millstream.testing import RunReader

    return RunReader()


@pytest.fixture
def millstream_clock() -> Iterator[FastClock]:
    """A fast clock for the test: every sleep (retry delays too) returns at once."""
    from millstream._engine.clock import FastClock, use_clock

    clock = FastClock()
    with use_clock(clock):
        yield clock


@pytest.fixture
def millstream_frozen_clock() -> Iterator[FrozenClock]:
    """A frozen clock for the test: time moves only on ``advance(seconds)``."""
    from millstream._engine.clock import FrozenClock, use_clock

    clock = FrozenClock()
    with use_clock(clock):
        yield clock
